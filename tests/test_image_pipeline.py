"""Image pipeline on a tiny random Stable Diffusion pipeline saved to a temp dir (the hub-folder path)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from aigc_demo.config import ImageConfig
from aigc_demo.pipelines.diffusion import SCHEDULERS
from aigc_demo.pipelines.image import (
    ImageParams,
    ImagePipeline,
    ImageProgress,
    ImageResult,
    Interrupt,
)
from aigc_demo.provenance.parameters import read_parameters, save_png


def run(pipe, **kw) -> ImageResult:
    kw.setdefault("num_inference_steps", 3)
    return pipe(ImageParams(prompt=kw.pop("prompt", "red apple"), **kw))


def pixels(result: ImageResult) -> np.ndarray:
    return np.stack([np.asarray(g.image, dtype=np.int16) for g in result.images])


def test_native_size_and_seed_determinism(tiny_pipe):
    a = run(tiny_pipe, seed=7)
    b = run(tiny_pipe, seed=7)
    c = run(tiny_pipe, seed=8)
    assert a.images[0].image.size == (16, 16)
    assert a.seed == 7 and a.images[0].parameters["seed"] == 7
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_random_seed_is_returned_and_reusable(tiny_pipe):
    first = run(tiny_pipe, seed=-1)
    again = run(tiny_pipe, seed=first.seed)
    assert 0 <= first.seed < 2**32
    assert np.array_equal(pixels(first), pixels(again))


def test_batch_image_i_equals_single_run_with_seed_plus_i(tiny_pipe):
    batch = run(tiny_pipe, seed=100, batch_size=3)
    single = run(tiny_pipe, seed=102)
    assert [g.parameters["seed"] for g in batch.images] == [100, 101, 102]
    assert np.abs(pixels(batch)[2] - pixels(single)[0]).max() <= 1


def plain_image(plain, **kw) -> np.ndarray:
    """The plain diffusers call's 16x16 "red apple" at seed 3 in 4 steps, as floats in [0, 1]."""
    return plain(
        "red apple", num_inference_steps=4, generator=torch.Generator().manual_seed(3), output_type="np",
        height=16, width=16, **kw,
    ).images[0]  # fmt: skip


@pytest.mark.parametrize("negative", ["", "blue"])  # "": the kept empty-prompt states; else encoded per call
def test_same_image_as_the_plain_diffusers_call(tiny_sd_dir, tiny_pipe, negative):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    plain = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, safety_checker=None)
    plain.scheduler = DPMSolverMultistepScheduler.from_config(plain.scheduler.config)
    ref = plain_image(plain, guidance_scale=5.0, negative_prompt=negative or None)
    for _ in range(2):  # the second call reads the kept states
        ours = run(
            tiny_pipe,
            seed=3,
            num_inference_steps=4,
            guidance_scale=5.0,
            scheduler="DPM++ 2M",
            negative_prompt=negative,
        )
        assert np.abs(pixels(ours)[0] - np.round(ref * 255)).max() <= 2


@pytest.mark.parametrize("name", list(SCHEDULERS) + ["default"])
def test_every_scheduler_runs_and_records_its_name(tiny_pipe, name):
    result = run(tiny_pipe, seed=1, scheduler=name)
    assert result.images[0].parameters["scheduler"] == name
    assert np.isfinite(pixels(result)).all()


def test_schedulers_give_different_images_without_touching_shared_state(tiny_pipe):
    before = dict(tiny_pipe.diffusion.sd.scheduler.config)
    a = run(tiny_pipe, seed=1, scheduler="DDIM")
    b = run(tiny_pipe, seed=1, scheduler="Euler a")
    assert not np.array_equal(pixels(a), pixels(b))
    assert dict(tiny_pipe.diffusion.sd.scheduler.config) == before


def test_progress_previews_and_interrupt(tiny_pipe):
    events = list(tiny_pipe.generate(ImageParams(prompt="cat", num_inference_steps=5, seed=0)))
    progress = [e for e in events if isinstance(e, ImageProgress)]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5]
    assert progress[0].previews and progress[0].previews[0].size == (16, 16)

    stop = Interrupt()
    seen = []
    for event in tiny_pipe.generate(ImageParams(prompt="cat", num_inference_steps=50, seed=0), stop):
        seen.append(event)
        if isinstance(event, ImageProgress) and event.step == 2:
            stop.set()
    result = seen[-1]
    assert isinstance(result, ImageResult) and result.interrupted
    # Steps run ahead of their consumer (compute.iterate): the stop lands within a step of the one seen.
    assert 2 <= len([e for e in seen if isinstance(e, ImageProgress)]) <= 3
    assert result.images and result.images[0].parameters.get("interrupted") is True


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "   "}, "empty"),
        ({"prompt": "x" * 100_000}, "limit"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 10**6}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": "abc"}, "guidance_scale"),
        ({"batch_size": 10**4}, "batch_size"),
        ({"seed": "abc"}, "seed"),
        ({"width": 17}, "width"),
        ({"height": 4096}, "height"),
        ({"scheduler": "PLMS-9000"}, "scheduler must be one of"),
        ({"prompt": 5}, "prompt must be text"),
        ({"seed": 2**40}, "seed must be between -1"),
        ({"generator": "gan"}, "no GAN"),
    ],
)
def test_bad_input_is_a_clear_value_error(tiny_pipe, kwargs, words):
    with pytest.raises(ValueError, match=words):
        run(tiny_pipe, **kwargs)


def test_long_prompt_is_truncated_with_a_warning(tiny_pipe):
    result = run(tiny_pipe, prompt="red apple " * 20)
    assert any("tokens" in w for w in result.warnings)


def test_other_sizes_where_the_model_allows(tiny_pipe):
    result = run(tiny_pipe, width=24, height=16)
    assert result.images[0].image.size == (24, 16)


def test_png_metadata_round_trip(tiny_pipe, tmp_path):
    made = run(tiny_pipe, seed=5, prompt="blue heart", negative_prompt="sad").images[0]
    path = save_png(made.image, made.parameters, tmp_path)
    back = read_parameters(path)
    for key in (
        "prompt",
        "negative_prompt",
        "seed",
        "num_inference_steps",
        "guidance_scale",
        "scheduler",
        "width",
        "height",
    ):
        assert back[key] == made.parameters[key]
    again = run(
        tiny_pipe, **{k: v for k, v in back.items() if k in {f.name for f in dataclasses.fields(ImageParams)}}
    )
    assert np.array_equal(pixels(again)[0], np.asarray(made.image, dtype=np.int16))
    assert "Steps: 3" in Image.open(path).text["parameters"]


def test_hostile_or_broken_metadata_is_refused_or_cleaned(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(ValueError, match="no AIGC Studio parameters"):
        read_parameters(plain)
    with pytest.raises(ValueError, match="not a readable PNG"):
        read_parameters(b"not an image at all")
    hostile = tmp_path / "hostile.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "aigc_studio",
        json.dumps({"prompt": ["list"], "seed": 1e300, "guidance_scale": "NaN", "steps": 5, "evil": "x"}),
    )
    Image.new("RGB", (8, 8)).save(hostile, pnginfo=info)
    assert read_parameters(hostile) == {}
    broken = tmp_path / "broken.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("aigc_studio", "{not json")
    Image.new("RGB", (8, 8)).save(broken, pnginfo=info)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_parameters(broken)


def test_gan_is_one_step_seeded_and_steerable(tiny_gan_pipe):
    a = run(tiny_gan_pipe, generator="gan", seed=4, batch_size=2)
    b = run(tiny_gan_pipe, generator="gan", seed=4, batch_size=2)
    assert a.images[0].image.size == (64, 64)
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a)[0], pixels(a)[1])
    assert a.images[1].parameters["seed"] == 5 and a.images[0].parameters["generator"] == "gan"
    assert all(-1 <= g.prompt_match <= 1 for g in a.images), "the scorer rates every image"
    assert -1 <= run(tiny_gan_pipe, seed=1).images[0].prompt_match <= 1
    base = tiny_gan_pipe.gan_explore(ImageParams(prompt="red apple", seed=4), [0.0] * 3)
    moved = tiny_gan_pipe.gan_explore(ImageParams(prompt="red apple", seed=4), [2.0, 0.0, -1.0])
    assert np.array_equal(np.asarray(base.image, dtype=np.int16), pixels(a)[0])
    assert not np.array_equal(np.asarray(moved.image), np.asarray(base.image))
    with pytest.raises(ValueError, match=r"z_offset\[0\] must be between -5.0 and 5.0"):
        tiny_gan_pipe.gan_explore(ImageParams(prompt="x", seed=1), [9.0])
    with pytest.raises(ValueError, match="64x64"):
        run(tiny_gan_pipe, generator="gan", width=32)


def test_missing_diffusion_model_serves_the_gan_alone(tmp_path):
    """A GAN with no diffusion folder still serves (the Image tab's GAN mode); no GAN either is a clear error."""
    from aigc_demo.models import GANGenerator, save_fp16

    save_fp16(GANGenerator(width=8), tmp_path / "gan")
    cfg = ImageConfig(
        model=str(tmp_path / "missing"),
        student="",
        gan=str(tmp_path / "gan"),
        scorer="",
        threads=1,
        compile="off",
    )
    pipe = ImagePipeline.from_config(cfg)
    assert pipe.diffusion is None and pipe.default_generator == "gan"
    only_prompt = pipe({"prompt": "red apple", "seed": 1})  # as the API and UI send it: defaults filled in
    assert only_prompt.images[0].parameters["generator"] == "gan", (
        "the GAN is the default when it is all there is"
    )
    with pytest.raises(ValueError, match="no diffusion model"):
        run(pipe, generator="diffusion")
    with pytest.raises(FileNotFoundError, match="train_diffusion"):
        ImagePipeline.from_config(dataclasses.replace(cfg, gan=""))


def test_math_attention_only_for_small_latents(tiny_sd_dir):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from aigc_demo.pipelines.cpu_compile import MATH_ATTENTION_MAX_POSITIONS, use_math_attention

    def example(side):
        return torch.zeros(1, 4, side, side), torch.tensor(1), torch.zeros(1, 8, 32)

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet")
    big = int(MATH_ATTENTION_MAX_POSITIONS**0.5) * 2
    assert not use_math_attention(unet, [example(16), example(big)])
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert use_math_attention(unet, [example(16)])
    assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())


def test_models_run_in_other_threads_while_torch_fx_traces():
    """torch.compile traces with torch.fx, which patches nn.Module.__call__ for the whole process; the background
    compile must not break the models other threads serve meanwhile (the prompt filter's encoder, the eager UNet)."""
    import threading

    from aigc_demo.pipelines.cpu_compile import keep_tracing_to_its_thread

    keep_tracing_to_its_thread()
    tracing, served = threading.Event(), threading.Event()

    class Traced(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            tracing.set()
            served.wait(timeout=30)  # hold the patches in place while the other thread runs its model
            return self.linear(x)

    tracer = threading.Thread(target=torch.fx.symbolic_trace, args=(Traced(),))
    tracer.start()
    assert tracing.wait(timeout=30)
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    try:
        out = other(torch.ones(1, 4))
    finally:
        served.set()
        tracer.join()
    assert out.shape == (1, 2)


@pytest.mark.slow
def test_unet_compiles_in_the_background_and_serves_only_its_shape(
    tiny_image_config, tiny_student_dir, tmp_path
):
    """The app's default on CPU: the first start serves eager while compiling, each shape compiled as soon as
    it is checked (batch 1 before batch 2), then only those shapes, then the student's Live request; a restart
    finds the kernels in the cache folder and serves compiled from the start."""
    import time

    cfg = tiny_image_config(
        max_batch_size=2,
        compile="auto",
        compile_cache=str(tmp_path / "compiled"),
        student=str(tiny_student_dir),
    )
    pipe = ImagePipeline.from_config(cfg)
    runner, student = pipe.diffusion.unet_runner, pipe.student.unet_runner
    assert runner.state == "compiling", "nothing in the cache yet: compiled in the background"
    assert student.state == "compiling", "the student waits its turn"
    served_early = False
    while runner.state == "compiling":
        if runner.compiled_shapes == 1:  # batch 1 checked, batch 2 compiling
            early = run(pipe, seed=1, guidance_scale=cfg.guidance_scale)
            served_early = served_early or (early.unet == "compiled" and runner.state == "compiling")
        else:
            assert run(pipe, seed=1).images, "served eager while compiling"
        time.sleep(0.2)
    assert runner.ready and runner.compiled_shapes == 2, runner.state
    assert served_early, "batch 1 was served compiled while batch 2 compiled"
    served = runner.compiled_calls
    # The default request (guidance on, default scheduler, native size) runs compiled ...
    assert run(pipe, seed=2, num_inference_steps=3, guidance_scale=cfg.guidance_scale).unet == "compiled"
    assert runner.compiled_calls == served + 3
    # ... other shapes (no guidance: a batch of 1 instead of 2) eager, without recompiling.
    assert run(pipe, seed=2, num_inference_steps=3, guidance_scale=1.0).unet == "eager"
    assert runner.compiled_calls == served + 3 and runner.ready
    assert any((tmp_path / "compiled" / "fxgraph").rglob("*")), "the compiled graph is kept"

    decoder = pipe.student.decoder_runner
    assert decoder is pipe.diffusion.decoder_runner, "one autoencoder in both folders: compiled once"
    while student.state == "compiling":  # one compile at a time: the student's come after the model's
        time.sleep(0.2)
    assert student.ready and student.compiled_shapes == 1 and decoder.ready
    decoded = decoder.compiled_calls
    live = pipe.live("a red heart", seed=3)
    assert live.unet == "compiled" and student.compiled_calls == cfg.live_steps
    assert live.decoder == "compiled" and decoder.compiled_calls == decoded + 1, "decoded compiled"
    assert len(list((tmp_path / "compiled").glob("unet-*.json"))) == 2, "the notes for the next start"
    assert len(list((tmp_path / "compiled").glob("decoder-*.json"))) == 1, "one VAE, one note"

    again = ImagePipeline.from_config(cfg)  # as after a restart
    assert again.diffusion.unet_runner.ready, "compiled before serving: the kernels were in the cache"
    assert again.diffusion.unet_runner.cached_graphs >= 1
    assert again.student.unet_runner.ready and again.diffusion.decoder_runner.ready
    assert np.array_equal(pixels(again.live("a red heart", seed=3)), pixels(live))
    want = run(pipe, seed=4, num_inference_steps=3, guidance_scale=cfg.guidance_scale)
    got = run(again, seed=4, num_inference_steps=3, guidance_scale=cfg.guidance_scale)
    assert got.unet == "compiled" and np.array_equal(pixels(got), pixels(want))


def test_the_autocast_probe_step_runs_a_real_backward_and_leaves_no_gradients(tiny_sd_dir):
    """train_diffusion times this step with and without bf16 autocast to choose (common.resolve_autocast)."""
    from diffusers import UNet2DConditionModel

    from aigc_demo.training.train_diffusion import probe_step

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet")
    seen = []
    unet.conv_out.register_full_backward_hook(lambda *a: seen.append(1))
    width = unet.config.cross_attention_dim
    step = probe_step(unet, torch.randn(3, 2, 4, 8, 8), torch.randn(3, 5, width))
    step(False)
    step(True)
    assert len(seen) == 2 and all(p.grad is None for p in unet.parameters())


def test_checkpoint_comparison_puts_each_seed_committed_row_then_checkpoint_row(tiny_sd_dir, tmp_path):
    import copy

    from diffusers import StableDiffusionPipeline

    from aigc_demo.training.compare_checkpoint import checkpoint_unet, side_by_side
    from aigc_demo.training.train_diffusion import build_pipeline, generate

    plain = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, safety_checker=None)
    folder = tmp_path / "checkpoint"
    torch.manual_seed(0)
    ema = {k: v + 0.05 * torch.randn_like(v) for k, v in plain.unet.state_dict().items()}
    ema_unet = copy.deepcopy(plain.unet)
    ema_unet.load_state_dict(ema)
    ema_unet.save_pretrained(folder / "ema", safe_serialization=True)  # the training checkpoint's layout

    trained = checkpoint_unet(folder)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, ema[k].half().float()), k  # the EMA weights, rounded as they would ship
    parts = (plain.vae, plain.tokenizer, plain.text_encoder)
    pipes = [build_pipeline(unet.eval(), *parts) for unet in (plain.unet, trained)]
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    prompts = ["red heart", "cat face"]
    grid = side_by_side(pipes, prompts, range(2), steps=2)
    assert grid.shape == (8, 3, 64, 64)
    assert torch.equal(grid[4:6], generate(pipes[0], prompts, 2, seed=1))  # seed 1, committed row
    assert not torch.allclose(grid[0:2], grid[2:4])  # the checkpoint row differs from the committed one


@pytest.fixture(scope="module")
def upscaling_pipe(tiny_image_config, tmp_path_factory):
    """The tiny pipeline with a freshly initialised upscaler: its residual branch starts at zero, so it
    upscales exactly like bicubic, which makes its output checkable."""
    from aigc_demo.models import EmojiUpscaler, save_fp16

    folder = tmp_path_factory.mktemp("tiny-upscaler")
    save_fp16(EmojiUpscaler(width=8, blocks=1, tail_width=4), folder)
    cfg = tiny_image_config(upscaler=str(folder))
    return ImagePipeline.from_config(cfg)


def test_upscale_x4_enlarges_through_the_upscaler(upscaling_pipe):
    import torch.nn.functional as F

    request = {"prompt": "a cat", "seed": 3, "num_inference_steps": 2}
    small = upscaling_pipe(request).images[0]
    big = upscaling_pipe({**request, "upscale": True}).images[0]
    assert big.image.size == (small.image.width * 4, small.image.height * 4)
    assert big.parameters["upscale"] is True and small.parameters["upscale"] is False
    x = torch.from_numpy(np.asarray(small.image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    ours = torch.from_numpy(np.asarray(big.image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert (ours - bicubic).abs().max() <= 1.5 / 255


def test_upscale_without_an_upscaler_says_so(tiny_image_config):
    pipe = ImagePipeline.from_config(tiny_image_config(upscaler=""))
    result = pipe({"prompt": "a cat", "seed": 3, "num_inference_steps": 2, "upscale": "true"})
    assert any("no upscaler is loaded" in w for w in result.warnings)
    with pytest.raises(ValueError, match="upscale must be true or false"):
        pipe.check({"prompt": "a cat", "upscale": "maybe"})


def test_latent_path_walks_between_two_pictures(upscaling_pipe):
    a = upscaling_pipe({"prompt": "a cat", "seed": 1, "num_inference_steps": 2}).images[0].image
    b = upscaling_pipe({"prompt": "a dog", "seed": 2, "num_inference_steps": 2}).images[0].image
    frames = upscaling_pipe.latent_path(a, b, 3)
    assert len(frames) == 3 and all(f.size == a.size for f in frames)
    assert upscaling_pipe.latent_path(a, b, 0) == []
    first, last = (np.asarray(f, dtype=np.float32) for f in (frames[0], frames[-1]))
    assert np.abs(first - last).mean() > 0  # the walk moves


def test_panels_drawn_in_one_batch_match_the_same_requests_alone(upscaling_pipe):
    """The Story tab's batch of (prompt, seed) pairs gives each picture its own prompt and starting noise."""
    panels = [("a cat", 3), ("a dog", 3), ("a cat", 4)]
    drawn = None
    for drawn in upscaling_pipe.draw_panels({"num_inference_steps": 2, "prompt": "-"}, panels):
        pass
    assert len(drawn.images) == 3 and not drawn.interrupted
    for (prompt, seed), image in zip(panels, drawn.images, strict=True):
        alone = upscaling_pipe({"prompt": prompt, "seed": seed, "num_inference_steps": 2}).images[0].image
        diff = np.abs(np.asarray(alone, dtype=np.int16) - np.asarray(image, dtype=np.int16)).max()
        assert diff <= 2, (prompt, seed, diff)
    with pytest.raises(ValueError, match="prompt"):
        list(upscaling_pipe.draw_panels({"num_inference_steps": 2}, [("", 1)]))


# -- the few-step student ---------------------------------------------------------------------------------
def test_student_draws_what_the_plain_lcm_call_draws(tiny_student_dir, tiny_gan_pipe):
    from diffusers import StableDiffusionPipeline

    plain = StableDiffusionPipeline.from_pretrained(tiny_student_dir, safety_checker=None)
    ref = plain_image(plain, guidance_scale=1.0)
    ours = run(tiny_gan_pipe, seed=3, num_inference_steps=4, generator="student")
    assert np.abs(pixels(ours)[0] - np.round(ref * 255)).max() <= 2
    made = ours.images[0].parameters
    assert (made["generator"], made["scheduler"], made["guidance_scale"]) == ("student", "default", 1.0)


def test_student_settles_what_it_fixes_and_says_so(tiny_gan_pipe):
    result = run(tiny_gan_pipe, seed=1, generator="student", num_inference_steps=20, negative_prompt="blue")
    made = result.images[0].parameters
    assert made["num_inference_steps"] == 4 and made["negative_prompt"] == ""
    assert any("20 were asked, it drew in 4" in w for w in result.warnings)
    assert any("negative prompt is not used" in w for w in result.warnings)
    again = tiny_gan_pipe({k: v for k, v in made.items() if k != "model"})  # the record remakes it
    assert np.array_equal(pixels(result), pixels(again)) and not again.warnings


def test_live_is_the_student_in_the_live_steps_under_a_fixed_seed(tiny_gan_pipe, tiny_pipe):
    a = tiny_gan_pipe.live("red apple", seed=5)
    b = tiny_gan_pipe.live("red apple", seed=5)
    c = tiny_gan_pipe.live("blue heart", seed=5)
    live_steps = tiny_gan_pipe.cfg.live_steps
    assert live_steps < tiny_gan_pipe.student.student_steps
    assert a.images[0].parameters["num_inference_steps"] == live_steps and a.seed == 5
    assert np.array_equal(pixels(a), pixels(b)) and not np.array_equal(pixels(a), pixels(c))
    assert any("Upscale x4 is off" in w for w in tiny_gan_pipe.live("red apple", 5, upscale=True).warnings)
    with pytest.raises(ValueError, match="needs the few-step student"):
        tiny_pipe.live("red apple")
    with pytest.raises(ValueError, match="no few-step student is loaded"):
        run(tiny_pipe, generator="student")


# -- requests drawn at once share UNet calls ----------------------------------------------------------------
def test_requests_drawn_at_once_share_unet_calls_and_draw_what_they_draw_alone(tiny_pipe):
    import threading

    requests = [
        {"prompt": "red apple", "seed": 1, "num_inference_steps": 6},
        {"prompt": "blue fish", "seed": 2, "num_inference_steps": 6, "scheduler": "Euler a"},
        {"prompt": "a cat", "seed": 3, "num_inference_steps": 4, "guidance_scale": 1.0},  # unguided: 1 row
        {"prompt": "a dog", "seed": 4, "num_inference_steps": 5, "batch_size": 2, "negative_prompt": "blue"},
    ]
    alone = [pixels(tiny_pipe(r)) for r in requests]
    steps = tiny_pipe.generator_for(tiny_pipe.check(requests[0])[0]).steps
    runner, rows = steps.runner, []

    def counting(sample, timestep, states):
        rows.append(sample.shape[0])
        return runner(sample, timestep, states)

    together: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def draw(k: int) -> None:
        start.wait()
        together[k] = pixels(tiny_pipe(requests[k]))

    steps.runner = counting
    try:
        threads = [threading.Thread(target=draw, args=(k,)) for k in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        steps.runner = runner
    assert max(rows) > 4, rows  # calls made for more than one request
    assert sum(rows) == 6 * 2 + 6 * 2 + 4 * 1 + 5 * 4  # every request's rows, each step once
    for k, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert b is not None and np.abs(a - b).max() <= 2, (k, np.abs(a - b).max())


def test_a_stopped_request_leaves_the_others_drawing(tiny_pipe):
    import threading

    steps = tiny_pipe.generator_for(tiny_pipe.check({"prompt": "x"})[0]).steps
    stop = Interrupt()
    long = tiny_pipe.generate({"prompt": "a cat", "seed": 5, "num_inference_steps": 30}, stop, None)
    next(long)  # a step drawn: its next input is queued with the batcher
    other = threading.Thread(target=lambda: tiny_pipe({"prompt": "a dog", "num_inference_steps": 8}))
    other.start()
    stop.set()
    result = [e for e in long if isinstance(e, ImageResult)][0]
    other.join(timeout=60)
    assert result.images and not other.is_alive()
    long.close()
    assert steps._pending == []  # nothing of either request is left queued


def test_shared_calls_stay_within_their_size_and_keep_arrival_order():
    from aigc_demo.pipelines.step_batcher import StepBatcher

    calls = []

    def runner(sample, timestep, states):
        calls.append((sample.shape[0], tuple(timestep.reshape(-1).tolist())))
        return sample * 2

    batcher = StepBatcher(runner, max_samples=6)
    rows = [2, 8, 2, 2, 2]  # a 4-picture request (8 rows) does not fit beside the others
    waiting = [
        batcher.register(torch.full((n, 1), float(k)), torch.tensor(10 * k), torch.zeros(n, 3))
        for k, n in enumerate(rows)
    ]
    first = batcher.result(waiting[0])
    assert calls == [(6, (0, 0, 20, 20, 30, 30))]  # the oldest that fit, one timestep per row
    assert torch.equal(first.out, torch.full((2, 1), 0.0)) and first.batched_with == 2
    assert torch.equal(batcher.result(waiting[3]).out, torch.full((2, 1), 6.0))  # made in that call
    assert len(calls) == 1
    batcher.result(waiting[1])  # alone: too big for company, more than 6 rows
    assert calls[-1] == (8, tuple([10] * 8))
    batcher.withdraw(waiting[4])
    assert batcher._pending == []
