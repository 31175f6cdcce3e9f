"""The Image tab's handlers, called as Gradio calls them (components bound by name), on a tiny model."""

from __future__ import annotations

import dataclasses

import gradio as gr
import pytest
from PIL import Image

from aigc_demo.pipelines.image import ImagePipeline
from aigc_demo.ui.image_tab import ImageTab


@pytest.fixture(scope="module")
def tab(tiny_gan_pipe):
    with gr.Blocks():
        return ImageTab(tiny_gan_pipe)


def ui_values(tab: ImageTab, **values) -> dict:
    """The {component: value} dict Gradio hands the generate handler: every control at its default."""
    data = {component: tab.pipe.schema[name].default for name, component in tab.controls.items()}
    data.update({tab.controls[name]: value for name, value in values.items()})
    data.update({tab.history: [], tab.batch_count: 1})
    return data


def test_generate_streams_progress_then_everything_by_component(tab):
    events = list(tab.generate(ui_values(tab, prompt="red apple", seed=7, num_inference_steps=3)))
    progress, final = events[:-1], events[-1]
    assert progress and all(set(e) <= {tab.progress, tab.previews} for e in progress)
    assert final[tab.last_seed] == "7"
    assert len(final[tab.previews]) == 1, "the finished image stays where the previews were"
    assert final[tab.history][0]["parameters"]["seed"] == 7 and len(final[tab.files]) == 1


def test_batch_count_continues_the_seed_sequence(tab):
    data = ui_values(tab, prompt="cat", seed=10, batch_size=2, num_inference_steps=2)
    data[tab.batch_count] = 2
    final = list(tab.generate(data))[-1]
    assert [h["parameters"]["seed"] for h in final[tab.history][:4]] == [10, 11, 12, 13]


def test_bad_values_become_messages(tab):
    with pytest.raises(gr.Error, match="num_inference_steps must be between 1 and"):
        list(tab.generate(ui_values(tab, prompt="cat", num_inference_steps=0)))
    with pytest.raises(gr.Error, match="prompt is empty"):
        list(tab.generate(ui_values(tab, prompt=" ")))


def test_choosing_the_gan_greys_out_what_it_ignores(tab):
    off = tab.generator_changed("gan")
    assert set(off) == {tab.controls[n] for n in ("num_inference_steps", "guidance_scale", "scheduler",
                                                  "negative_prompt", "width", "height", "adapter")}  # fmt: skip
    assert all(update["interactive"] is False for update in off.values())
    assert all(update["interactive"] is True for update in tab.generator_changed("diffusion").values())


def test_reuse_and_png_restore_set_controls_by_name(tab, tmp_path):
    final = list(tab.generate(ui_values(tab, prompt="blue heart", seed=3, num_inference_steps=2)))[-1]
    chosen = final[tab.chosen]
    restored = tab.reuse_parameters(chosen)
    assert restored[tab.controls["seed"]] == 3 and restored[tab.controls["prompt"]] == "blue heart"
    assert tab.controls["batch_size"] not in restored, "only what the image records is restored"
    from_png = tab.restore_from_png(final[tab.files][0])
    assert from_png == restored
    with pytest.raises(gr.Error):
        tab.reuse_parameters(None)


def test_api_generate_takes_the_schemas_defaults(tab):
    defaults = tab.pipe.schema.defaults()
    *progress, (files, info) = tab.api_generate(
        **{**defaults, "prompt": "red apple", "num_inference_steps": 2, "seed": 5}
    )
    assert progress == [([], {"step": 1, "steps": 2, "eta_s": progress[0][1]["eta_s"]}), ([], progress[1][1])]
    assert progress[1][1]["step"] == 2 and progress[1][1]["eta_s"] == 0
    assert info["seed"] == 5 and info["parameters"][0]["scheduler"] == defaults["scheduler"]
    assert Image.open(files[0]["path"]).size == (16, 16)


def test_reading_parameters_of_nothing_is_a_message(tab):
    with pytest.raises(gr.Error, match="no file was given"):
        tab.api_read_parameters(None)


def test_a_gan_only_pipeline_builds_with_the_gan_chosen(tiny_gan_pipe):
    gan_only = ImagePipeline([tiny_gan_pipe.gan], dataclasses.replace(tiny_gan_pipe.cfg, model=""))
    with gr.Blocks():
        tab = ImageTab(gan_only)
    assert (
        tab.controls["generator"].value == "gan" and tab.controls["num_inference_steps"].interactive is False
    )


def test_choosing_the_student_fixes_guidance_and_sets_its_steps(tab):
    update = tab.generator_changed("student")
    fixed = {tab.controls[n] for n in ("guidance_scale", "scheduler", "negative_prompt")}
    assert all(update[c]["interactive"] is False for c in fixed)
    assert update[tab.controls["num_inference_steps"]]["value"] == 4
    assert tab.generator_changed("diffusion")[tab.controls["num_inference_steps"]]["value"] == 20


def test_live_draws_only_when_on_and_keeps_its_seed(tab):
    hidden, _ = tab.live_draw(False, "red apple", 3, "", False)
    assert hidden["visible"] is False
    cleared, line = tab.live_draw(True, "  ", 3, "", False)
    assert cleared["value"] is None and line == ""
    shown, line = tab.live_draw(True, "red apple", -1, "12", False)  # random seed box: the last run's seed
    assert isinstance(shown["value"], Image.Image) and shown["visible"] is True
    steps = tab.pipe.cfg.live_steps
    assert line.startswith("Live · seed `12`") and f"few-step student, {steps} steps" in line
    _, line = tab.live_draw(True, "red apple", "x", "", False)
    assert line.startswith("⚠️ seed must be a whole number")
