"""Colour augmentation: dominant colour, hue rotation, captions that name the new colour."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from aigc_demo.data.colour import dominant_colour, recoloured_name, rotate_hue, with_colour_variants
from aigc_demo.data.corpus import Corpus


def disc(rgb, size=64) -> np.ndarray:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).ellipse((8, 8, size - 8, size - 8), fill=rgb)
    return np.asarray(img)


def row(i, name, split="train", **kw):
    return {"row": i, "id": f"noto:{i}", "name": name, "style_label": "Noto Color Emoji", "split": split,
            "caption": f"{name}, in Noto Color Emoji style", "aliases": [], "keywords": [], **kw}  # fmt: skip


def test_dominant_colour_and_rotation_keep_the_white_background():
    red = disc((220, 30, 30))
    assert dominant_colour(red)[0] == "red"
    green = rotate_hue(red, 120)
    assert dominant_colour(green)[0] == "green"
    assert (green[0, 0] == 255).all(), "the background stays white"
    assert dominant_colour(disc((128, 128, 128))) is None, "grey has no colour to name"


def test_recoloured_name_replaces_or_prefixes_the_colour_word():
    assert recoloured_name("red apple", "green") == "green apple"
    assert recoloured_name("cat face", "blue") == "blue cat face"


def test_variants_are_training_rows_with_their_new_colour_in_the_caption():
    images = np.stack([disc((220, 30, 30)), disc((30, 60, 220)), disc((220, 30, 30)), disc((128, 128, 128))])
    rows = [row(0, "red heart"), row(1, "ball"), row(2, "red apple", split="heldout"), row(3, "rock")]
    out = with_colour_variants(Corpus(images, rows), max_fraction=1.0)
    added = out.rows[4:]
    assert len(out) == len(out.images) == 6
    assert {r["name"].split()[-1] for r in added} == {"heart", "ball"}, (
        "held-out and grey rows are left alone"
    )
    for r, image in zip(added, out.images[4:], strict=True):
        colour = r["name"].split()[0]
        assert (
            dominant_colour(image)[0] == colour and r["caption"].startswith(colour) and r["split"] == "train"
        )
