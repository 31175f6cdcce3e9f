"""Normalise source artwork into square RGB tiles on a white background."""

from __future__ import annotations

import numpy as np
from PIL import Image

MARGIN = 0.06  # fraction of the tile left empty on each side
LAYOUT_SIZE = 64  # the corpus's tile size: larger tiles that are multiples of it reuse its layout


def layout(img: Image.Image, size: int) -> tuple[int, int, int, int]:
    """Width, height, left and top of the artwork in a ``size`` tile.

    Tiles whose size is a multiple of LAYOUT_SIZE take the LAYOUT_SIZE tile's layout scaled up, so a 256-px
    tile is the 64-px one at exactly 4x: super-resolution pairs line up to the sub-pixel (laid out per size,
    rounding moves and scales the artwork by 1-3 pixels at 256 px).
    """
    base = LAYOUT_SIZE if size % LAYOUT_SIZE == 0 else size
    k = size // base
    inner = max(1, round(base * (1 - 2 * MARGIN)))
    scale = inner / max(img.width, img.height)
    w = max(1, round(img.width * scale))
    h = max(1, round(img.height * scale))
    return w * k, h * k, (base - w) // 2 * k, (base - h) // 2 * k


def to_tile(img: Image.Image, size: int) -> np.ndarray:
    """Tight-cropped RGBA artwork -> ``size x size x 3`` uint8 on white.

    The artwork is scaled so its longer side fills the tile minus the margin:
    the three sets use very different padding inside their canvases, and
    normalising by the bounding box makes the styles comparable in scale.
    """
    w, h, left, top = layout(img, size)
    # Premultiply before resampling so transparent pixels don't bleed dark fringes.
    resized = img.convert("RGBa").resize((w, h), Image.Resampling.LANCZOS).convert("RGBA")
    tile = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    tile.alpha_composite(resized, (left, top))
    return np.asarray(tile.convert("RGB"), dtype=np.uint8)
