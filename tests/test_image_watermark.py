"""The invisible picture watermark: invisible enough, and read back through what copies go through."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aigc_demo.provenance.image_watermark import FrameMarker, embed, read, read_frames
from aigc_demo.provenance.robustness import COPIES


def emoji_like(seed: int, side: int = 256) -> Image.Image:
    """White ground, a filled outlined shape, a few features: what the app's upscaled pictures look like."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    m = side // 8
    draw.ellipse((m, m, side - m, side - m), fill=colour, outline="black", width=side // 40)
    for _ in range(3):
        x, y = rng.integers(side // 4, 3 * side // 4, 2)
        draw.ellipse((x - 12, y - 12, x + 12, y + 12), fill="black")
    return img


@pytest.mark.parametrize("copy", COPIES)
def test_the_id_survives_what_copies_go_through(copy):
    marked = embed(emoji_like(1), 0xABCDEF)
    reading = read(COPIES[copy](marked))
    assert reading.found and reading.watermark_id == 0xABCDEF, (copy, reading)


def test_it_is_invisible_enough():
    plain = emoji_like(2)
    diff = np.asarray(embed(plain, 7), dtype=float) - np.asarray(plain, dtype=float)
    assert 10 * np.log10(255**2 / (diff**2).mean()) >= 38


def test_unmarked_pictures_and_small_ones_have_none():
    assert not any(read(emoji_like(seed)).found for seed in range(3, 8))
    small = emoji_like(1, side=64)
    assert embed(small, 5) is small, "too small to carry it: left as drawn"


def test_a_film_is_read_in_the_mean_of_its_frames():
    """Every frame carries the same id; the moving pictures blur away in the mean, the mark adds up. Each
    frame here is also halved and JPEG'd, harder than a video encoder at its defaults."""
    marker = FrameMarker(0x5A5A5A)
    frames = [COPIES["JPEG quality 75"](marker(emoji_like(seed, side=384))) for seed in range(8)]
    reading = read_frames(frames)
    assert reading.found and reading.watermark_id == 0x5A5A5A, reading
    assert not read_frames([emoji_like(seed, side=384) for seed in range(8)]).found


def test_wide_and_tall_pictures_carry_it_too():
    """A sweep grid or a comic page is not square: the grid spans its longer side, as the reader expects."""
    for size in ((512, 320), (300, 480)):
        picture = Image.new("RGB", size, "white")
        for k in range(3):
            picture.paste(
                emoji_like(k, side=160).resize((size[0] // 3, size[0] // 3)), (k * size[0] // 3, 20)
            )
        reading = read(COPIES["JPEG quality 75"](embed(picture, 0x123456)))
        assert reading.found and reading.watermark_id == 0x123456, (size, reading)
