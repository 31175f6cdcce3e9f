"""End to end on Evaluate: a sweep and the figures through gradio_client, on the real default models."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file
from PIL import Image


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def sweep(client):
    return client.predict(
        "red heart, in Twemoji style", "seed", "1, 2", "guidance_scale", "2, 6", "nothing", "",
        num_inference_steps=4, api_name="/evaluate_sweep",
    )  # fmt: skip


def test_a_sweep_returns_its_grid_cells_and_figures(client, sweep):
    files, info = sweep
    paths = [f["path"] if isinstance(f, dict) else f for f in files]
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["sweep-grid-1.png", "sweep-map.png", "sweep-cells.csv"]
    assert len(info["cells"]) == 4 and not info["stopped"]
    assert {(c["parameters"]["seed"], c["parameters"]["guidance_scale"]) for c in info["cells"]} == {
        (1, 2.0), (2, 2.0), (1, 6.0), (2, 6.0),
    }  # fmt: skip
    with Image.open(paths[0]) as grid:
        stored = json.loads(grid.info["aigc_studio_sweep"])
    assert len(stored["cells"]) == 4 and stored["sweep"]["x"] == "seed"
    figures = info["figures"]
    assert 0 < figures["prompt match"]["value"] <= 1 and figures["prompt match"]["n"] == 4
    assert figures["precision"]["n"] == 4 and figures["precision"]["value"] is not None
    assert figures["Fréchet distance"]["value"] is None and "too few" in figures["Fréchet distance"]["note"]
    assert client.predict(handle_file(paths[0]), api_name="/verify")["state"] == "valid"
    # The four cells on the Latent tab's corpus map, each with the training emoji nearest to it.
    placed = info["map"]["pictures"]
    assert len(placed) == 4 and all(p["nearest"] and p["distance"] >= 0 for p in placed)
    with Image.open(paths[1]) as corpus_map:
        assert corpus_map.size == (512, 512)
        assert json.loads(corpus_map.info["aigc_studio_map"])["map"]["pictures"] == placed


def test_pictures_on_the_corpus_map(client, tmp_path):
    red = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (220, 30, 40)).save(red)
    files, _ = client.predict("red heart, in Twemoji style", seed=3, api_name="/image_generate")
    heart = files[0]["path"] if isinstance(files[0], dict) else files[0]
    path, info = client.predict([handle_file(str(red)), handle_file(heart)], api_name="/evaluate_map")
    assert info["summary"].startswith("2 pictures on the corpus map")
    assert [p["on_map"] for p in info["pictures"]] == [True, True]
    assert "heart" in info["pictures"][1]["nearest"]
    assert client.predict(handle_file(path), api_name="/verify")["state"] == "valid"
    with pytest.raises(Exception, match="no pictures"):
        client.predict([], api_name="/evaluate_map")


def test_measuring_pictures_and_bad_sweeps(client, sweep, tmp_path):
    files, _ = sweep
    grid = files[0]["path"] if isinstance(files[0], dict) else files[0]
    figures = client.predict([handle_file(grid)] * 2, "red heart", api_name="/evaluate_images")
    assert figures["near-duplicates"]["value"] == 1.0  # the same picture twice
    (tmp_path / "not.png").write_bytes(b"no picture here")
    with pytest.raises(Exception, match="not.png is not a picture"):
        client.predict([handle_file(str(tmp_path / "not.png"))], api_name="/evaluate_images")
    with pytest.raises(Exception, match="at most 100"):
        client.predict(
            "a cat", "seed", "1-16", "num_inference_steps", "1-16", "nothing", "", api_name="/evaluate_sweep"
        )
    with pytest.raises(Exception, match="guidance axis has no values"):
        client.predict(
            "a cat", "guidance_scale", "", "nothing", "", "nothing", "", api_name="/evaluate_sweep"
        )


def test_two_text_settings_are_compared(client):
    out = client.predict(
        "Write a short poem about the sea.", 2, 48, 0, 0.7, 0.9, 1.3, 1.0, api_name="/evaluate_text"
    )
    assert set(out) == {"A", "B"} and out["B"]["temperature"] == 1.3
    for setting in out.values():
        assert len(setting["replies"]) == 2 and all(setting["replies"])
        figures = setting["figures"]
        assert figures["perplexity"]["value"] > 1 and figures["perplexity"]["n"] == 2
        assert 0 < figures["distinct-1"]["value"] <= 1 and figures["similarity"]["n"] == 2
    with pytest.raises(Exception, match="replies"):
        client.predict("a poem", 100, api_name="/evaluate_text")
