"""The Latent tab's handlers and API endpoints, called directly on a tiny random EmojiVAE and atlas.

The tab is built in a Blocks (not launched), so the handlers get the real components as keys, as Gradio
passes them; the API endpoints are called with the keyword arguments ``gr.api`` passes.
"""

from __future__ import annotations

import random
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from test_latent_pipeline import tiny_vae, write_atlas

from aigc_demo.config import LatentConfig
from aigc_demo.imaging import upscale
from aigc_demo.pipelines.latent import LatentPipeline
from aigc_demo.pipelines.latent_atlas import LatentAtlas
from aigc_demo.ui.latent_tab import LatentHandlers

DISPLAY = 64


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> LatentPipeline:
    folder = tmp_path_factory.mktemp("atlas")
    write_atlas(folder)
    return LatentPipeline(
        tiny_vae(), atlas=LatentAtlas.from_folder(folder), cfg=LatentConfig(threads=1, display_size=DISPLAY)
    )


@pytest.fixture(scope="module")
def tab(pipe):
    with gr.Blocks() as demo:
        handlers = LatentHandlers(pipe)
        handlers.build()
    handlers.demo = demo
    return handlers


def inputs(controls, **values) -> dict:
    """What Gradio passes a handler whose inputs are a set: {component: value}, here by parameter name."""
    return {controls[name]: value for name, value in values.items()}


def pixels(image) -> np.ndarray:
    if isinstance(image, dict):  # FileData from an API endpoint
        image = Image.open(image["path"])
    return np.asarray(image.convert("RGB"))


def select(index) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": None, "selected": True})


# ----------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------
def test_sample_honours_the_source(tab):
    def ui(source):
        data = inputs(tab.sample_controls, n=2, seed=5, temperature=1.0, source=source)
        out = tab.sample(data)
        assert "`5`" in out[tab.sample_info]
        return [pixels(img) for img in out[tab.samples]]

    corpus, prior = ui("corpus"), ui("prior")
    assert corpus[0].shape == (DISPLAY, DISPLAY, 3)
    assert not all(np.array_equal(c, p) for c, p in zip(corpus, prior, strict=True))

    files = {}
    for source in ("corpus", "prior"):
        images, info = tab.api_sample(n=2, seed=5, temperature=1.0, source=source)
        assert info == {"seed": 5, "n": 2, "temperature": 1.0, "source": source}
        files[source] = [pixels(f) for f in images]
        assert all(Path(f["path"]).suffix == ".png" for f in images)
    assert all(np.array_equal(a, b) for a, b in zip(files["corpus"], corpus, strict=True))
    assert not all(np.array_equal(c, p) for c, p in zip(files["corpus"], files["prior"], strict=True))


def test_a_random_seed_is_fresh_per_request(tab):
    seeds = []
    for _ in range(2):
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        seeds.append(tab.api_sample(n=1, seed=-1, temperature=1.0, source="prior")[1]["seed"])
    assert seeds[0] != seeds[1]


def test_sample_controls_come_from_the_schema(tab, pipe):
    c = tab.sample_controls
    assert (c["n"].minimum, c["n"].maximum, c["n"].value) == (1, pipe.cfg.max_samples, 16)
    assert c["temperature"].maximum == pipe.cfg.max_temperature
    assert c["source"].value == "posterior" and [v for _, v in c["source"].choices] == [
        "posterior",
        "corpus",
        "prior",
    ]
    assert tab.attribute_controls["strength"].minimum == -pipe.cfg.max_strength


# ----------------------------------------------------------------------------------------------------
# Picking an image
# ----------------------------------------------------------------------------------------------------
def test_a_corpus_pick_shows_one_image_labelled_as_its_decode(tab, pipe):
    out = tab.from_corpus([{"row": 3, "caption": "x"}], select(0))
    assert out[tab.original].visible is False
    assert out[tab.reconstruction].label.key == "latent_decode"
    assert np.array_equal(out[tab.latent], pipe.corpus_latent(3))
    assert "row 3" in out[tab.rec_info]
    assert all(out[s] == 0.0 for s in tab.sliders)
    assert np.array_equal(
        pixels(out[tab.steered]), pixels(upscale(pipe.decode(pipe.corpus_latent(3)), DISPLAY))
    )


def test_an_upload_shows_original_and_reconstruction(tab):
    upload = Image.new("RGB", (40, 40), "white")
    upload.paste((250, 200, 0), (10, 10, 30, 30))
    out = tab.from_upload({"background": upload, "layers": [], "composite": upload})
    assert out[tab.original].visible is True and out[tab.reconstruction].label.key == "latent_reconstruction"
    assert "PSNR" in out[tab.rec_info]
    with pytest.raises(gr.Error, match="Upload or draw"):
        tab.from_upload({"background": None, "layers": [], "composite": None})


def test_corpus_captions_are_short(tab):
    found = tab.search("cat")
    assert found["items"] and all(len(caption) <= 12 for _, caption in found["thumbs"])
    out = tab.search_ui("cat")
    assert out[tab.corpus_items] == found["items"]


def test_map_click(tab, pipe):
    out = tab.map_click(select([100, 200]))
    assert out[tab.map_info].count("\n- ") == 4  # five nearest items
    assert np.array_equal(out[tab.latent], pipe.pixel_to_latent(100, 200))
    assert all(out[s] == 0.0 for s in tab.sliders)
    # Every view of the current latent shows the spot, not the item picked before.
    assert out[tab.steered] is out[tab.map_image] and "latent_map_decode" in str(
        out[tab.reconstruction].label
    )
    assert out[tab.rec_info].startswith("a spot on the map, nearest **")
    with pytest.raises(gr.Error, match="outside"):
        tab.map_click(select([10_000, 0]))


# ----------------------------------------------------------------------------------------------------
# Steering, walking, attributes
# ----------------------------------------------------------------------------------------------------
def test_steer(tab, pipe):
    z = pipe.corpus_latent(2)
    zeros = [0.0] * len(tab.sliders)
    assert np.array_equal(pixels(tab.steer(z, *zeros)), pixels(upscale(pipe.decode(z), DISPLAY)))
    assert tab.steer(None, *zeros) is None
    moved = tab.api_steer(row=2, coefficients=[1.5])
    assert np.array_equal(pixels(moved), pixels(upscale(pipe.steer(z, [1.5]), DISPLAY)))
    with pytest.raises(gr.Error, match=r"coefficients\[0\] must be between -3.0 and 3.0, not 99"):
        tab.api_steer(row=0, coefficients=[99])
    with pytest.raises(gr.Error, match="row must be a whole number"):
        tab.api_steer(row="abc", coefficients=[])


@pytest.fixture()
def uploads():
    """A folder where Gradio keeps uploads: API handlers read files sent with the request, from there."""
    import shutil
    import tempfile

    from gradio.utils import get_upload_folder

    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=get_upload_folder()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_interpolate_between_rows_and_uploads(tab, pipe, uploads):
    a, b = pipe.corpus_latent(0), pipe.corpus_latent(5)
    data = {tab.latent: a, tab.latent_b: b, **inputs(tab.walk_controls, steps=4, method="lerp")}
    out = tab.interpolate(data)
    assert out[tab.strip].width == 4 * out[tab.strip].height
    assert Path(out[tab.gif]).suffix == ".gif" and Path(out[tab.mp4]).stat().st_size > 0
    with pytest.raises(gr.Error, match="Choose two images"):
        tab.interpolate({**data, tab.latent_b: None})

    strip, gif, mp4 = tab.api_interpolate(a_row=0, b_row=5, steps=3, method="slerp")
    assert Path(gif["path"]).is_file() and Path(mp4["path"]).suffix == ".mp4"
    by_rows = pixels(strip)
    upload = uploads / "upload.png"
    Image.new("RGB", (32, 32), (20, 120, 220)).save(upload)
    strip2, _, _ = tab.api_interpolate(
        a_row=0, b_row=5, a_image={"path": str(upload)}, steps=3, method="slerp"
    )
    assert by_rows.shape == pixels(strip2).shape and not np.array_equal(by_rows, pixels(strip2))
    with pytest.raises(gr.Error, match="steps must be between 3 and 64, not 2"):
        tab.api_interpolate(steps=2, method="slerp")
    with pytest.raises(gr.Error, match="method must be one of slerp, lerp"):
        tab.api_interpolate(steps=3, method="cubic")


def test_attribute(tab, pipe):
    z = pipe.corpus_latent(0)
    data = {
        tab.latent: z,
        **inputs(tab.attribute_controls, positive="smiling", negative="neutral", strength=1.0),
    }
    out = tab.attribute(data)
    assert "(6 items)" in out[tab.attr_info]
    image, note = tab.api_attribute(row=0, positive="smiling", negative="neutral", strength=0.0)
    assert np.array_equal(pixels(image), pixels(upscale(pipe.decode(z), DISPLAY))) and "smiling" in note
    with pytest.raises(gr.Error, match="negative is empty"):
        tab.attribute({**data, tab.attribute_controls["negative"]: "  "})
    with pytest.raises(gr.Error, match="strength must be between -3.0 and 3.0, not 4"):
        tab.api_attribute(row=0, positive="cat", negative="dog", strength=4)
    with pytest.raises(gr.Error, match="Pick an image first"):
        tab.attribute({**data, tab.latent: None})


# ----------------------------------------------------------------------------------------------------
# Bad input and the API's shape
# ----------------------------------------------------------------------------------------------------
def test_bad_input_gives_the_validation_wording(tab, tmp_path, uploads):
    with pytest.raises(gr.Error, match="n must be between 1 and 64, not 0"):
        tab.sample(inputs(tab.sample_controls, n=0, seed=1, temperature=1.0, source="corpus"))
    with pytest.raises(gr.Error, match="seed must be a whole number"):
        tab.api_sample(n=1, seed="soon", temperature=1.0, source="prior")
    with pytest.raises(gr.Error, match="source must be one of posterior, corpus, prior"):
        tab.api_sample(n=1, seed=1, temperature=1.0, source="moon")
    with pytest.raises(gr.Error, match="image is missing"):
        tab.api_reconstruct(None)
    notes = uploads / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image"):
        tab.api_reconstruct({"path": str(notes)})
    elsewhere = tmp_path / "picture.png"
    Image.new("RGB", (32, 32)).save(elsewhere)
    with pytest.raises(gr.Error, match="image must be a file sent with the request"):
        tab.api_reconstruct({"path": str(elsewhere)})


def test_api_endpoints_are_listed_with_defaults(tab):
    named = tab.demo.get_api_info()["named_endpoints"]

    def defaults(name):
        return {
            p["parameter_name"]: p["parameter_default"] if p["parameter_has_default"] else ...
            for p in named[name]["parameters"]
        }

    assert defaults("/latent_sample") == {"n": 16, "seed": -1, "temperature": 1.0, "source": "posterior"}
    assert defaults("/latent_interpolate") == {
        "a_row": 0,
        "b_row": 1,
        "a_image": None,
        "b_image": None,
        "steps": 10,
        "method": "slerp",
    }
    assert defaults("/latent_attribute") == {
        "row": 0,
        "positive": "smiling",
        "negative": "neutral",
        "strength": 1.0,
    }
    assert defaults("/latent_reconstruct") == {"image": ...}
    assert defaults("/latent_steer") == {"row": ..., "coefficients": ...}
    assert defaults("/latent_search") == {"query": ""}
    assert not any(name.startswith("/ui_latent") for name in named)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_gives_a_clear_message_and_the_next_request_works(tab, tmp_path, monkeypatch, caplog):
    """Writes to /dev/full fail with ENOSPC, as on a full disk: the output file is made a link to it."""
    from aigc_demo.ui import errors, latent_tab

    full = tmp_path / "full"
    full.mkdir()
    (full / "sample-00.png").symlink_to("/dev/full")
    monkeypatch.setattr(latent_tab, "fresh_output_dir", lambda prefix: full)
    with pytest.raises(gr.Error) as refused, caplog.at_level("WARNING"):
        tab.api_sample(n=1, seed=3, temperature=1.0, source="prior")
    assert refused.value.message == errors.DISK_FULL
    warning = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(warning) == 1 and warning[0].exc_info is None, "one line in the log, no traceback"
    monkeypatch.undo()
    files, info = tab.api_sample(n=1, seed=3, temperature=1.0, source="prior")
    assert info["seed"] == 3 and Path(files[0]["path"]).stat().st_size > 0
