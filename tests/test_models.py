"""The project's own models: one save/load path (diffusers ModelMixin), fp16 on disk, fp32 + eval in memory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aigc_demo.models import (
    EmojiVAE,
    GANDiscriminator,
    GANGenerator,
    PromptMatch,
    load_text_encoder,
    save_fp16,
    sentence_embeddings,
)

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def _inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    if isinstance(model, EmojiVAE):
        return (torch.randn(2, cfg.latent_dim, generator=g),)
    if isinstance(model, GANGenerator):
        return torch.randn(2, cfg.z_dim, generator=g), torch.randn(2, cfg.text_dim, generator=g)
    if isinstance(model, GANDiscriminator):
        side = cfg.image_size
        image = torch.rand(2, cfg.in_channels, side, side, generator=g) * 2 - 1
        return image, torch.randn(2, cfg.text_dim, generator=g)
    return (torch.rand(2, 3, cfg.image_size, cfg.image_size, generator=g),)


def _run(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(*inputs) if isinstance(model, EmojiVAE) else model(*inputs)


def _fp16_rounded(model: torch.nn.Module) -> torch.nn.Module:
    """The original with its weights rounded to fp16 (what the saved copy holds), still fp32."""
    rounded = type(model).from_config(model.config)
    rounded.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    return rounded.eval()


def tiny_autoencoder():
    """A random AutoencoderKL: 32x32 pictures, 16x16x4 latents."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=32,
        scaling_factor=0.5,
    ).eval()


def tiny_latent_gan(autoencoder) -> GANGenerator:
    from aigc_demo.models.gan import DECODER_KEYS

    config = {k: autoencoder.config[k] for k in DECODER_KEYS}
    gan = GANGenerator(image_size=32, z_dim=8, text_dim=16, cond_dim=8, width=8, autoencoder=config)
    gan.take_decoder(autoencoder)
    return gan


TINY = [
    lambda: EmojiVAE(image_size=32, latent_dim=8, channels=(8, 16), groups=4),
    lambda: GANGenerator(z_dim=8, text_dim=16, cond_dim=8, width=8),
    lambda: GANGenerator(z_dim=8, text_dim=16, cond_dim=8, width=8, conditional_norm=True),
    lambda: tiny_latent_gan(tiny_autoencoder()),
    lambda: GANDiscriminator(text_dim=16, width=8),
    lambda: GANDiscriminator(image_size=16, text_dim=16, width=8, in_channels=4, stem_channels=16),
    lambda: PromptMatch(text_dim=16, channels=(8, 8, 8, 8)),
]


@pytest.mark.parametrize(
    "build",
    TINY,
    ids=[
        "vae",
        "gan-generator",
        "gan-generator-cbn",
        "gan-generator-latent",
        "gan-discriminator",
        "gan-discriminator-latent",
        "prompt-match",
    ],
)
def test_save_fp16_then_from_pretrained_round_trips(build, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    if isinstance(model, GANDiscriminator):
        model.train()  # a few power iterations so spectral norm's u and v are not their initial values
        model(*_inputs(model))
        model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    save_fp16(model, tmp_path)

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), (
        "the caller's model is untouched"
    )
    assert next(model.parameters()).dtype == torch.float32
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == type(model).__name__
    stored = load_file(str(tmp_path / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for k, v in stored.items() if "num_batches_tracked" not in k} == {torch.float16}
    assert all(v.dtype == torch.int64 for k, v in stored.items() if "num_batches_tracked" in k)

    loaded = type(model).from_pretrained(tmp_path)
    save_fp16(loaded, tmp_path / "again")
    assert "_name_or_path" not in json.loads((tmp_path / "again" / "config.json").read_text())
    assert type(loaded) is type(model) and not loaded.training
    assert {v.dtype for v in loaded.parameters()} == {torch.float32}
    assert next(loaded.parameters()).device.type == "cpu"
    assert loaded.state_dict().keys() == model.state_dict().keys()
    inputs = _inputs(model)
    torch.testing.assert_close(_run(loaded, inputs), _run(_fp16_rounded(model), inputs), rtol=1e-5, atol=1e-5)


def test_a_latent_gan_draws_a_latent_and_decodes_it_as_its_autoencoder_does():
    autoencoder = tiny_autoencoder()
    gan = tiny_latent_gan(autoencoder).eval()
    z, text = torch.randn(2, 8), torch.randn(2, 16)
    with torch.no_grad():
        latents = gan.latents(z, text)
        assert latents.shape == (2, 4, 16, 16)
        expected = autoencoder.decode(latents / 0.5).sample.clamp(-1, 1)
        torch.testing.assert_close(gan(z, text), expected)
    assert expected.shape == (2, 3, 32, 32)
    carried = {id(p) for m in gan.carried_decoder() for p in m.parameters()}
    assert carried and len(carried) < len(list(gan.parameters())), "the decoder is part, not all, of it"


def test_config_fields_read_as_attributes():
    vae = EmojiVAE(image_size=32, latent_dim=8, channels=(8, 16), groups=4)
    assert (vae.config.latent_dim, vae.config.image_size, vae.config.channels) == (8, 32, [8, 16])
    assert vae.bottleneck == 8
    assert GANGenerator(width=8).config.z_dim == 64
    assert PromptMatch(channels=(8, 8)).config.image_size == 64
    with pytest.raises(ValueError, match="divisible"):
        EmojiVAE(image_size=30, channels=(8, 16))


@pytest.mark.parametrize(
    ("folder", "cls"),
    [("vae-emoji", EmojiVAE), ("emoji-gan", GANGenerator), ("prompt-match", PromptMatch)],
)
def test_committed_weights_load_unchanged(folder, cls):
    """The committed files load through the one path, tensor for tensor (fp16 on disk, fp32 in memory)."""
    path = WEIGHTS / folder
    if not (path / "diffusion_pytorch_model.safetensors").is_file():
        pytest.skip(f"{path} not present")
    raw = load_file(str(path / "diffusion_pytorch_model.safetensors"))
    model = cls.from_pretrained(path)
    state = model.state_dict()
    assert state.keys() == raw.keys()
    for key, value in raw.items():
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    assert not model.training and {p.dtype for p in model.parameters()} == {torch.float32}


def test_text_encoder_loads_without_warnings(caplog, capfd):
    """The checkpoint's pooler is loaded (and ignored) so transformers has no UNEXPECTED keys to report."""
    with caplog.at_level(logging.WARNING):
        try:
            tokenizer, model = load_text_encoder()
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
    out, err = capfd.readouterr()
    assert "UNEXPECTED" not in out + err + caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    emb = sentence_embeddings(tokenizer, model, ["red apple", "a cat"])
    assert emb.shape == (2, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_a_sentence_embedded_once_is_read_by_every_copy_of_its_encoder():
    """The content filter, the prompt-match scorer and the GAN each load the encoder folder; a prompt the
    filter embedded is not embedded again by the next."""
    try:
        first, second = load_text_encoder(), load_text_encoder()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    calls = []
    second[1].register_forward_hook(lambda *a: calls.append(1))
    prompt = "a purple horse, embedded once"
    want = sentence_embeddings(*first, [prompt])
    got = sentence_embeddings(*second, [prompt])
    assert calls == [] and torch.equal(got, want)
    both = sentence_embeddings(*second, [prompt, "a cat"])  # batches are computed as always
    assert calls == [1]
    torch.testing.assert_close(both[:1], want)
    assert sentence_embeddings(*second, ["a cat, not seen yet"]).shape == (1, 384) and calls == [1, 1]
