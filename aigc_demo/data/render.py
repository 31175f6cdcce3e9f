"""Normalise source artwork into square RGB tiles on a white background."""

from __future__ import annotations

import numpy as np
from PIL import Image

MARGIN = 0.06  # fraction of the tile left empty on each side


def to_tile(img: Image.Image, size: int) -> np.ndarray:
    """Tight-cropped RGBA artwork -> ``size x size x 3`` uint8 on white.

    The artwork is scaled so its longer side fills the tile minus the margin:
    the three sets use very different padding inside their canvases, and
    normalising by the bounding box makes the styles comparable in scale.
    """
    inner = max(1, round(size * (1 - 2 * MARGIN)))
    scale = inner / max(img.width, img.height)
    w = max(1, round(img.width * scale))
    h = max(1, round(img.height * scale))
    # Premultiply before resampling so transparent pixels don't bleed dark fringes.
    resized = img.convert("RGBa").resize((w, h), Image.Resampling.LANCZOS).convert("RGBA")
    tile = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    tile.alpha_composite(resized, ((size - w) // 2, (size - h) // 2))
    return np.asarray(tile.convert("RGB"), dtype=np.uint8)
