"""X/Y/Z sweeps on the tiny pipeline: axes are checked like requests, the grid's cells carry their parameters,
Stop keeps what was drawn."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from aigc_demo.pipelines.evaluate import GRID_KEY, MAX_CELLS, EvaluatePipeline, save_grid, write_csv
from aigc_demo.pipelines.image import Interrupt

REQUEST = {"prompt": "a red cat", "seed": 5, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def evaluate(tiny_pipe):
    return EvaluatePipeline(tiny_pipe)


def run(evaluate, specs, interrupt=None, request=REQUEST):
    events = list(evaluate.sweep(request, specs, interrupt))
    return events[:-1], events[-1]


def test_axes_accept_lists_ranges_sizes_and_prompt_replacements(evaluate):
    x, y, z = evaluate.axes(
        REQUEST, [("num_inference_steps", "1-5 (+2)"), ("size", "32x32, 64"), ("prompt", "red, blue")]
    )
    assert x.values == (1, 3, 5) and y.values == ((32, 32), (64, 64)) and z.values == ("red", "blue")
    assert z.apply("blue", {"prompt": "a red cat"})["prompt"] == "a blue cat"


@pytest.mark.parametrize(
    "specs, words",
    [
        ([("", ""), ("", ""), ("", "")], "choose at least one axis"),
        ([("guidance_scale", " , ")], "guidance axis has no values"),
        ([("guidance_scale", "1, lots")], "guidance axis: guidance_scale must be a number"),
        ([("num_inference_steps", "0, 10")], "steps axis"),
        ([("seed", "1-100"), ("guidance_scale", "1-100"), ("", "")], "limit is 16"),
        (
            [("seed", "1-10"), ("num_inference_steps", "1-10"), ("guidance_scale", "1,2")],
            f"at most {MAX_CELLS}",
        ),
        ([("cfg", "1")], "unknown axis 'cfg'"),
        ([("prompt", "green, blue")], "'green' is not in the prompt"),
        ([("seed", "1"), ("seed", "2")], "different parameter"),
    ],
)
def test_bad_axes_get_a_clear_message(evaluate, specs, words):
    specs = (specs + [("", "")] * 3)[:3]
    with pytest.raises(ValueError, match=words):
        evaluate.axes(REQUEST, specs)


def test_a_sweep_draws_every_cell_and_its_grid_and_csv_say_which(evaluate, tmp_path):
    specs = [("seed", "1, 2"), ("guidance_scale", "1, 7"), ("", "")]
    progress, result = run(evaluate, specs)
    assert [p.done for p in progress] == [1, 2, 3, 4] and progress[-1].total == 4
    assert not result.stopped and len(result.cells) == 4 and len(result.grids) == 1
    for cell in result.cells:
        assert cell.parameters["seed"] == (1, 2)[cell.x]
        assert cell.parameters["guidance_scale"] == (1.0, 7.0)[cell.y]
        assert cell.parameters["prompt"] == "a red cat" and cell.parameters["num_inference_steps"] == 2
    # The same seed and settings give the same picture as the Image pipeline alone.
    alone = evaluate.image({**REQUEST, "seed": 2, "guidance_scale": 7.0}).images[0].image
    assert result.cells[3].image.tobytes() == alone.tobytes()
    grid = save_grid(result, 0, tmp_path)
    with Image.open(grid) as img:
        stored = json.loads(img.info[GRID_KEY])
        assert img.width > 2 * 128 and img.height > 2 * 128
    assert [(c["x"], c["y"], c["seed"], c["guidance_scale"]) for c in stored["cells"]] == [
        (0, 0, 1, 1.0), (1, 0, 2, 1.0), (0, 1, 1, 7.0), (1, 1, 2, 7.0),
    ]  # fmt: skip
    assert stored["sweep"] == {"x": "seed", "y": "guidance_scale", "z": None}
    rows = list(csv.DictReader(open(write_csv(result, tmp_path / "cells.csv"), encoding="utf-8")))
    assert [r["x_value"] for r in rows] == ["seed: 1", "seed: 2"] * 2 and rows[2]["guidance_scale"] == "7.0"


def test_stop_keeps_the_finished_cells(evaluate):
    interrupt = Interrupt()
    events = []
    for event in evaluate.sweep(REQUEST, [("seed", "1, 2, 3, 4"), ("", ""), ("", "")], interrupt):
        events.append(event)
        interrupt.set()  # after the first cell
    result = events[-1]
    assert result.stopped and len(result.cells) == 1 and len(result.grids) == 1
    assert "1 of 4 cells" in result.warnings[-1]


def test_measuring_nothing_is_refused(evaluate):
    with pytest.raises(ValueError, match="no pictures"):
        evaluate.measure([], [])
