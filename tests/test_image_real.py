"""The committed image models (weights/emoji-ldm, weights/emoji-gan, weights/autoencoder-kl-emoji), once each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc_demo.config import DEFAULT_GAN_MODEL, DEFAULT_IMAGE_MODEL, WEIGHTS_DIR, ImageConfig
from aigc_demo.pipelines.image import ImageParams, ImagePipeline

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def pipe():
    return ImagePipeline.from_config(ImageConfig(threads=2, compile="off"))


def test_committed_diffusion_model_makes_a_seeded_non_degenerate_emoji(pipe):
    assert pipe.diffusion.model_id == DEFAULT_IMAGE_MODEL and pipe.gan is not None
    a = pipe(ImageParams(prompt="grinning face, in Noto Color Emoji style", num_inference_steps=12, seed=0))
    b = pipe(ImageParams(prompt="grinning face, in Noto Color Emoji style", num_inference_steps=12, seed=0))
    img = np.asarray(a.images[0].image, dtype=np.float32)
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, np.asarray(b.images[0].image, dtype=np.float32))
    assert img.std() > 20, "an image with structure, not a flat colour"
    # Emoji sit on white: the corners of a trained model's output are light.
    corners = np.concatenate([img[:6, :6], img[:6, -6:], img[-6:, :6], img[-6:, -6:]])
    assert corners.mean() > 170


@pytest.mark.slow
def test_compiled_unet_serves_the_default_request_with_the_same_image(pipe):
    """The app's CPU fast path (aigc_demo/pipelines/cpu_compile.py), compiled here synchronously."""
    fast = ImagePipeline.from_config(ImageConfig(threads=2, compile="now", student="", gan="", scorer=""))
    runner = fast.diffusion.unet_runner
    assert runner.ready, runner.state
    assert runner.math_attention, "16x16 latents: plain attention, which inductor fuses"
    params = ImageParams(prompt="red heart, in Twemoji style", seed=3)  # the UI's defaults: 20 steps, CFG
    compiled = np.asarray(fast(params).images[0].image, dtype=np.float32)
    assert runner.compiled_calls == params.num_inference_steps
    eager = np.asarray(pipe(params).images[0].image, dtype=np.float32)
    diff = np.abs(compiled - eager)
    assert diff.mean() < 2.0 and diff.max() <= 40, (diff.mean(), diff.max())
    # Another shape (batch 2) runs eager rather than recompiling mid-request.
    fast(ImageParams(prompt="red heart", seed=3, batch_size=2, num_inference_steps=2))
    assert runner.compiled_calls == params.num_inference_steps and runner.ready


def test_committed_gan_makes_a_non_degenerate_image(pipe):
    result = pipe(ImageParams(prompt="red heart", generator="gan", seed=0, batch_size=4))
    imgs = np.stack([np.asarray(g.image, dtype=np.float32) for g in result.images])
    assert imgs.shape == (4, 64, 64, 3)
    assert imgs.std() > 20 and np.abs(imgs[0] - imgs[1]).mean() > 1, "different seeds, different images"


def test_committed_autoencoder_reconstructs_above_the_psnr_floor():
    from diffusers import AutoencoderKL
    from PIL import Image, ImageDraw

    vae = AutoencoderKL.from_pretrained(WEIGHTS_DIR / "autoencoder-kl-emoji", dtype=torch.float32).eval()
    img = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 8, 56, 56), fill=(250, 200, 40), outline=(120, 80, 0), width=2)
    draw.ellipse((22, 24, 28, 32), fill=(60, 40, 20))
    draw.ellipse((36, 24, 42, 32), fill=(60, 40, 20))
    draw.arc((20, 28, 44, 48), 20, 160, fill=(60, 40, 20), width=3)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.inference_mode():
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = float(((recon - x) / 2).pow(2).mean())
    assert 10 * np.log10(1 / mse) > 24


def test_gan_folder_is_the_default():
    assert (WEIGHTS_DIR / "emoji-gan" / "config.json").is_file() and DEFAULT_GAN_MODEL.endswith("emoji-gan")
