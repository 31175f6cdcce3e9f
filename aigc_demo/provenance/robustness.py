"""The robustness lab: the copies a picture goes through on its way around, and which signals survive each.

A copy is what a platform, an editor or a screenshot makes of a file: re-encoded as JPEG, resized, cropped,
or re-rendered on a screen. The manifest lives in the file's bytes and is lost by any of them; the watermark
lives in the pixels and is meant to survive; the PNG text chunks survive only a PNG re-save that keeps them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


def png_jpeg_png(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    jpeg(img).save(buf, "PNG")
    return Image.open(buf).convert("RGB")


def screenshot(img: Image.Image) -> Image.Image:
    """As a screenshot of the picture shown at 125% would be: smoothed by the display's scaling, slightly
    brighter (a different colour profile), on a grey margin, saved again."""
    img = img.convert("RGB")
    shown = img.resize((round(img.width * 1.25), round(img.height * 1.25)), Image.Resampling.BILINEAR)
    shown = Image.fromarray(np.clip(np.asarray(shown, dtype=np.float32) * 1.03 + 2, 0, 255).astype(np.uint8))
    margin = round(shown.width * 0.04)
    screen = Image.new("RGB", (shown.width + 2 * margin, shown.height + 2 * margin), (240, 240, 240))
    screen.paste(shown, (margin, margin))
    return screen


def half(img: Image.Image) -> Image.Image:
    return img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)


def crop_10(img: Image.Image) -> Image.Image:
    dx, dy = round(img.width * 0.05), round(img.height * 0.05)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG quality 75": jpeg,
    "resized to 0.5x": half,
    "10% cropped (5% each side)": crop_10,
    "PNG -> JPEG -> PNG": png_jpeg_png,
    "screenshot at 125%": screenshot,
}


def make_copies(path: Path, folder: Path) -> dict[str, Path]:
    """Each copy of the picture at ``path`` written to ``folder`` (PNG, or JPEG for the JPEG copy)."""
    with Image.open(path) as original:
        picture = original.convert("RGB")
    out = {}
    for k, (name, copy) in enumerate(COPIES.items()):
        target = folder / (f"copy-{k}.jpg" if name.startswith("JPEG") else f"copy-{k}.png")
        made = copy(picture)
        if target.suffix == ".jpg":
            made.save(target, quality=95)  # the JPEG loss is in the copy already
        else:
            made.save(target)
        out[name] = target
    return out
