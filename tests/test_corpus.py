"""Fast tests for the emoji corpus builder and the EmojiVAE model class (no built corpus needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aigc_demo.data import build_corpus
from aigc_demo.data.captions import caption_variants
from aigc_demo.data.catalog import _base_key, base_name_of, build_catalog, is_country_flag, split_of
from aigc_demo.data.corpus import load_corpus
from aigc_demo.data.sources import all_sources
from aigc_demo.models import EmojiVAE, save_fp16

torch.set_num_threads(1)

MANIFEST_FIELDS = {
    "row",
    "id",
    "char",
    "codepoints",
    "name",
    "caption",
    "keywords",
    "aliases",
    "style",
    "source",
    "license",
    "attribution",
    "split",
}


def _installed_styles() -> list[str]:
    return [s.style for s in all_sources() if s.available()]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    styles = _installed_styles()
    if not styles:
        pytest.skip("no emoji source installed (see aigc_demo/data/CREDITS.md)")
    out = tmp_path_factory.mktemp("emoji")
    stats = build_corpus.build(out, sizes=[64], styles=styles[:1], limit=20)
    return out, stats


def test_tiny_corpus_shapes_and_manifest(tiny_corpus):
    out, stats = tiny_corpus
    corpus = load_corpus(out)
    assert corpus.images.dtype == np.uint8
    assert corpus.images.shape[1:] == (64, 64, 3)
    assert 15 <= len(corpus) <= 20 == stats["items"] + (20 - len(corpus))
    for i, row in enumerate(corpus.rows):
        assert MANIFEST_FIELDS <= row.keys()
        assert row["row"] == i
        assert row["caption"].startswith(row["name"]) and row["caption"].endswith(" style")
        assert row["split"] in {"train", "heldout"}
    # white background: the corners of every tile are (near) white
    assert corpus.images[:, 0, 0].min() >= 250
    info = json.loads((out / "corpus_info.json").read_text())
    assert info["stats"]["items"] == len(corpus)


def test_build_is_deterministic(tiny_corpus, tmp_path):
    out, _ = tiny_corpus
    style = json.loads((out / "corpus_info.json").read_text())["sources"][0]["style"]
    build_corpus.build(tmp_path, sizes=[64], styles=[style], limit=20)
    assert np.array_equal(np.load(out / "images_64.npy"), np.load(tmp_path / "images_64.npy"))


@pytest.mark.parametrize("width,height", [(97, 61), (136, 128), (72, 72), (618, 500)])
def test_larger_tiles_line_up_with_the_64_px_tile(width, height):
    """A 256-px tile is the 64-px one at 4x to the sub-pixel: the upscaler learns from these pairs."""
    from PIL import Image, ImageDraw

    from aigc_demo.data.render import layout, to_tile

    art = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(art)
    draw.ellipse((width * 0.1, height * 0.1, width * 0.9, height * 0.9), fill=(220, 40, 40, 255))
    draw.rectangle((width * 0.3, height * 0.4, width * 0.6, height * 0.7), fill=(20, 20, 160, 255))
    assert layout(art, 256) == tuple(4 * v for v in layout(art, 64))
    small = to_tile(art, 64).astype(float)
    shrunk = np.asarray(Image.fromarray(to_tile(art, 256)).resize((64, 64), Image.Resampling.LANCZOS))
    psnr = 10 * np.log10(255**2 / ((shrunk - small) ** 2).mean())
    assert psnr > 38  # laid out per size: 25-33 dB


def test_split_follows_base_subject():
    # all skin tones of one subject share a split; the split hash is stable across runs
    assert base_name_of("waving hand: medium-dark skin tone") == "waving hand"
    assert split_of("waving hand", 0.05) == split_of("waving hand", 0.05)
    fractions = [split_of(f"subject {i}", 0.05) == "heldout" for i in range(4000)]
    assert 0.03 < np.mean(fractions) < 0.07


def test_catalog_rebalancing():
    catalog = build_catalog(max_flags=10)
    assert sum(e.flag for e in catalog) == 10
    # one variant per base *sequence* (mixed-tone couples are separate sequences)
    tones: dict[str, int] = {}
    for e in catalog:
        if e.skin_tone:
            tones[_base_key(e.char)] = tones.get(_base_key(e.char), 0) + 1
    assert tones and max(tones.values()) == 1
    assert is_country_flag("\U0001f1eb\U0001f1f7") and not is_country_flag("\U0001f600")
    assert [e.char for e in catalog] == [e.char for e in build_catalog(max_flags=10)]


def test_caption_variants_skip_other_emojis_names():
    astronaut = {
        "id": "noto:1f9d1-200d-1f680",
        "name": "astronaut",
        "style_label": "Noto Color Emoji",
        "aliases": [],
        "keywords": ["astronaut", "rocket", "space"],
    }
    plain = caption_variants(astronaut)
    assert plain[:2] == ["astronaut, in Noto Color Emoji style", "astronaut"]
    assert "rocket emoji, Noto Color Emoji style" in plain
    cleaned = caption_variants(astronaut, other_names=frozenset({"astronaut", "rocket"}))
    assert cleaned == [
        "astronaut, in Noto Color Emoji style",
        "astronaut",
        "space emoji, Noto Color Emoji style",
    ]


def test_missing_source_is_reported(tmp_path, caplog):
    with pytest.raises(RuntimeError):
        build_corpus.build(
            tmp_path / "out", sizes=[64], styles=["twemoji"], limit=2, vendor=tmp_path / "no-vendor"
        )
    assert "npm install --prefix data/vendor" in caplog.text


def test_emoji_vae_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = EmojiVAE(image_size=32, latent_dim=8, channels=(8, 16), groups=4).eval()
    x = torch.rand(3, 3, 32, 32)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (3, 8)
    assert model.decode(mean).shape == (3, 3, 32, 32)
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)

    save_fp16(model, tmp_path)
    loaded = EmojiVAE.from_pretrained(tmp_path)
    assert loaded.config.latent_dim == 8 and loaded.config.channels == [8, 16]
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(loaded.decode(mean), model.decode(mean), atol=2e-2)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
