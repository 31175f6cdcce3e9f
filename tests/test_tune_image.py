"""Teaching the image model a new word (Tune tab, pictures): the checks, a LoRA run, the adapter saved in
diffusers' format and loaded back, the fused copy the Image tab serves, and the comparison. Tiny random
models; the real emoji model in tests/test_e2e_tune.py."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_demo.config import TuneConfig
from aigc_demo.pipelines.image import ImagePipeline
from aigc_demo.pipelines.tune_image import (
    LORA_FILE,
    ImageTuner,
    PictureSet,
    PictureTuneResult,
    Preview,
)
from aigc_demo.training.fine_tune import FitProgress

FAST = {"steps": 20, "learning_rate": 5e-3, "batch_size": 4, "preview_every": 10, "seed": 0}


def pictures(folder, n=4) -> list[str]:
    """n pictures of one 'thing': a red disc on white, moved a little in each."""
    paths = []
    for k in range(n):
        img = Image.new("RGB", (32, 32), "white")
        x = np.asarray(img).copy()
        yy, xx = np.mgrid[:32, :32]
        x[(yy - 16 - k % 2) ** 2 + (xx - 16 + k % 3) ** 2 < 80] = (220, 30, 30)
        path = folder / f"thing-{k}.png"
        Image.fromarray(x).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture()
def tuner(tiny_gan_pipe, tmp_path):
    """A fresh image pipeline on the tiny diffusion model and scorer (the session's pipeline stays as it is)."""
    pipe = ImagePipeline(
        [tiny_gan_pipe.diffusion, tiny_gan_pipe.gan], tiny_gan_pipe.cfg, tiny_gan_pipe.scorer
    )
    return ImageTuner(pipe, TuneConfig(adapters_dir=tmp_path / "adapters"))


def run(tuner, files, name="thing", stop=None, **params):
    """The run's events; progress copied as it arrives (the loop updates one object)."""
    return [
        dataclasses.replace(e) if isinstance(e, FitProgress) else e
        for e in tuner.tune("my-thing", files, name, {**FAST, **params}, stop)
    ]


def test_the_new_word_must_be_made_up(tuner):
    assert tuner.check_word(" my-thing ") == "my-thing"
    for word, message in (
        ("apple", "already knows"),
        ("two words", "one word"),
        ("", "empty"),
        ("x" * 41, "40"),
    ):
        with pytest.raises(ValueError, match=message):
            tuner.check_word(word)


def test_pictures_are_checked_before_any_work(tuner, tmp_path):
    good = pictures(tmp_path)
    with pytest.raises(ValueError, match="4-16 pictures"):
        tuner.read_pictures(good[:3])
    with pytest.raises(ValueError, match="4-16 pictures"):
        tuner.read_pictures(good * 5)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is text, not a picture")
    with pytest.raises(ValueError, match=r"picture 4 \(broken.png\): not an image"):
        tuner.read_pictures([*good[:3], str(broken)])
    small = dataclasses.replace(tuner.cfg, max_picture_mb=1e-4)
    with pytest.raises(ValueError, match="picture 1 .* the limit is"):
        ImageTuner(tuner.image, small).read_pictures(good)
    read = tuner.read_pictures([Image.open(good[0]), *good[1:], ({"path": good[0]}, "caption")])
    assert len(read) == 5 and {img.size for img in read} == {(tuner.diffusion.native_size,) * 2}


def test_a_run_learns_the_pictures_and_saves_a_diffusers_lora(tuner, tmp_path):
    events = run(tuner, pictures(tmp_path))
    assert isinstance(events[0], PictureSet) and events[0].word == "my-thing"
    steps = [e.step for e in events if isinstance(e, FitProgress)]
    assert steps[0] == 0 and steps[-1] == FAST["steps"]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [0, 10, 20] and all(len(p.images) == 4 for p in previews)
    result = events[-1]
    assert isinstance(result, PictureTuneResult) and result.adapter is not None
    record = result.adapter.record
    assert record["fit_loss_after"] < record["fit_loss_before"]
    assert record["word"] == "my-thing" and record["pictures"] == 4 and len(record["data_sha256"]) == 64
    files = {p.name for p in result.adapter.folder.iterdir()}
    assert {LORA_FILE, "README.md", "tune.json", "fingerprints.safetensors", "preview.png"} <= files
    assert not list(result.adapter.folder.glob("thing-*.png")), "the pictures themselves are not kept"
    assert tuner.names() == ["thing"]
    with pytest.raises(ValueError, match="exists"):
        run(tuner, pictures(tmp_path))


def test_saved_adapter_loads_in_diffusers_and_the_fused_copy_agrees(tuner, tiny_sd_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    adapter = run(tuner, pictures(tmp_path))[-1].adapter
    sd = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, safety_checker=None)
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([300, 700])
    states = torch.randn(2, 5, 32)
    with torch.no_grad():
        base = sd.unet(x, t, encoder_hidden_states=states).sample
        sd.load_lora_weights(adapter.folder)  # what anyone with diffusers does with the download
        loaded = sd.unet(x, t, encoder_hidden_states=states).sample
        fused = tuner.generator(adapter.name).sd.unet(x, t, encoder_hidden_states=states).sample
    assert (loaded - base).abs().max() > 1e-4, "the adapter changes the model"
    torch.testing.assert_close(fused, loaded, atol=1e-4, rtol=1e-4)
    assert tuner.generator(adapter.name) is tuner.generator(adapter.name), "built once, then resident"


def test_the_image_pipeline_draws_with_an_adapter(tuner, tmp_path):
    adapter = run(tuner, pictures(tmp_path))[-1].adapter
    image = tuner.image
    params = {"prompt": "my-thing", "seed": 3, "num_inference_steps": 3}
    base, tuned = image(params), image({**params, "adapter": adapter.name})
    assert tuned.images[0].parameters["adapter"] == adapter.name
    assert not np.array_equal(np.asarray(base.images[0].image), np.asarray(tuned.images[0].image))
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        image({**params, "adapter": "nope"})
    with pytest.raises(ValueError, match="diffusion model"):
        image({**params, "adapter": adapter.name, "generator": "gan"})


def test_compare_draws_base_and_tuned_with_their_likeness(tuner, tmp_path):
    adapter = run(tuner, pictures(tmp_path))[-1].adapter
    c = tuner.compare(adapter.name, seed=5)
    assert c.prompts == ["my-thing", "my-thing wearing a hat"] and c.seed == 5
    assert len(c.base) == len(c.tuned) == 2
    for d in (*c.base, *c.tuned):
        assert d.image.prompt_match is not None and -1 <= d.likeness.similarity <= 1
        assert 0 <= d.likeness.pixel_bits <= 192
    assert (
        c.base[0].image.parameters["adapter"] == "" and c.tuned[0].image.parameters["adapter"] == adapter.name
    )
    with pytest.raises(ValueError, match="at most 4"):
        tuner.compare(adapter.name, ["a"] * 5)


def test_stop_keeps_the_best_state_so_far_or_nothing(tuner, tmp_path):
    files = pictures(tmp_path)
    stop = threading.Event()
    stop.set()
    result = run(tuner, files, "never", stop)[-1]
    assert result.adapter is None and result.progress.step == 0 and tuner.names() == []

    class AfterSteps:
        def __init__(self, n):
            self.n = n

        def is_set(self):
            self.n -= 1
            return self.n < 0

    result = run(tuner, files, "stopped", AfterSteps(5), preview_every=0)[-1]
    assert result.progress.finish == "stopped" and 0 < result.progress.step < FAST["steps"]
    assert result.adapter is not None and result.adapter.record["finish"] == "stopped"


def test_one_run_at_a_time(tuner, tmp_path):
    files = pictures(tmp_path)
    first = tuner.tune("my-thing", files, "one", FAST)
    next(first)  # the data is checked and the run holds the lock
    with pytest.raises(ValueError, match="another picture fine-tune"):
        run(tuner, files, "two")
    first.close()
    assert run(tuner, files, "three")[-1].adapter is not None


def test_training_waits_while_a_picture_is_drawn(tuner, tmp_path):
    """Between steps the run gives the compute thread to pictures being drawn, and says how long it waited."""
    files = pictures(tmp_path)
    run_ = tuner.tune("my-thing", files, "polite", {**FAST, "preview_every": 0})
    next(run_), next(run_)  # the data, then step 0
    image = tuner.image
    image._count_drawing(+1)  # as generate() does while a request draws
    threading.Timer(0.3, image._count_drawing, (-1,)).start()
    event = next(run_)
    assert isinstance(event, FitProgress) and event.step == 1
    event = next(run_)  # asked for after the wait: the waiting is recorded as a pause
    assert event.paused_s >= 0.2
    run_.close()


def test_likeness_finds_a_training_picture_and_flags_copies_by_the_copy_index(tuner, tmp_path):
    from types import SimpleNamespace

    files = pictures(tmp_path)
    adapter = run(tuner, files)[-1].adapter
    same = tuner.read_pictures(files)[2]
    like = tuner.likeness([same], adapter.name)[0]
    assert like.similarity > 0.999 and like.pixel_bits == 0 and like.copy is None  # no copy index loaded
    tuner.image.copy_index = SimpleNamespace(pixel_bits=6, embedding=0.99)  # the thresholds it would bring
    other = Image.new("RGB", same.size, (20, 90, 200))
    copied, fresh = tuner.likeness([same, other], adapter.name)
    assert copied.copy is True and fresh.copy is False
