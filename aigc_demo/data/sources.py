"""Emoji art sources: each one turns an emoji character into an RGBA image.

Every source is an openly licensed emoji set that installs from a package
registry (Debian apt or npm). Renderers return a *tight-cropped* RGBA image or
``None`` when the set has no artwork for the character; normalisation to a
square white-background tile happens in :mod:`aigc_demo.data.render`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFont

from aigc_demo.data.paths import vendor_dir

logger = logging.getLogger(__name__)

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# Noto Color Emoji is a CBDT bitmap font: 109 px is its only strike (136x128 glyphs).
NOTO_SIZE = 109
NOTO_CANVAS = (136, 128)
SVG_RENDER_PX = 256  # rasterise SVGs at 2x the largest stored resolution
FE0F = 0xFE0F


@dataclass(frozen=True)
class EmojiSource:
    """One art style: metadata for captions/credits plus a renderer."""

    style: str  # short id used in item ids, e.g. "openmoji"
    label: str  # human name used in captions, e.g. "OpenMoji"
    package: str  # where it comes from (apt/npm package and version)
    license: str
    attribution: str
    install_hint: str
    location: Path
    renderer: Callable[[Path, str], Image.Image | None]

    def available(self) -> bool:
        return self.location.exists()

    def render(self, char: str) -> Image.Image | None:
        return self.renderer(self.location, char)


def _tight_crop(img: Image.Image, alpha_threshold: int = 8) -> Image.Image | None:
    """Crop to the non-transparent bounding box; ``None`` if (nearly) empty."""
    alpha = img.getchannel("A").point(lambda a: 255 if a > alpha_threshold else 0)
    bbox = alpha.getbbox()
    if bbox is None:
        return None
    return img.crop(bbox)


def _hex_names(char: str, upper: bool) -> list[str]:
    """Candidate file stems: with and without the FE0F variation selector."""
    cps = [ord(c) for c in char]
    variants = [cps, [c for c in cps if c != FE0F]]
    names: list[str] = []
    for seq in variants:
        stem = "-".join(f"{c:04X}" if upper else f"{c:x}" for c in seq)
        if stem not in names:
            names.append(stem)
    return names


def _render_svg_file(path: Path) -> Image.Image | None:
    import cairosvg  # imported lazily: only the SVG sources need libcairo

    png = cairosvg.svg2png(
        bytestring=path.read_bytes(), output_width=SVG_RENDER_PX, output_height=SVG_RENDER_PX
    )
    img = Image.open(io.BytesIO(png)).convert("RGBA")
    return _tight_crop(img)


def _svg_dir_renderer(upper: bool) -> Callable[[Path, str], Image.Image | None]:
    def render(folder: Path, char: str) -> Image.Image | None:
        for stem in _hex_names(char, upper=upper):
            path = folder / f"{stem}.svg"
            if path.exists():
                return _render_svg_file(path)
        return None

    return render


_noto_font: ImageFont.FreeTypeFont | None = None


def _render_noto(font_path: Path, char: str) -> Image.Image | None:
    from PIL import ImageDraw

    global _noto_font
    if _noto_font is None:
        _noto_font = ImageFont.truetype(str(font_path), NOTO_SIZE)
    # An unsupported ZWJ sequence falls apart into several glyphs: it is wider
    # than one glyph cell, so reject it rather than store a row of fragments.
    left, _, right, _ = _noto_font.getbbox(char)
    if right - left > NOTO_CANVAS[0] + 4:
        return None
    canvas = Image.new("RGBA", NOTO_CANVAS, (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), char, font=_noto_font, embedded_color=True)
    # Characters the font lacks render nothing at all, so the crop is None.
    return _tight_crop(canvas)


def all_sources(vendor: Path | None = None) -> list[EmojiSource]:
    """The known sources in a fixed order (the order fixes corpus row order)."""
    root = (vendor or vendor_dir()) / "node_modules"
    return [
        EmojiSource(
            style="noto",
            label="Noto Color Emoji",
            package="Debian fonts-noto-color-emoji",
            license="OFL-1.1",
            attribution="Noto Color Emoji, Copyright Google LLC, SIL Open Font License 1.1",
            install_hint="sudo apt-get install fonts-noto-color-emoji",
            location=NOTO_FONT,
            renderer=_render_noto,
        ),
        EmojiSource(
            style="openmoji",
            label="OpenMoji",
            package="npm openmoji",
            license="CC-BY-SA-4.0",
            attribution="OpenMoji, the open-source emoji and icon project (openmoji.org), CC BY-SA 4.0",
            install_hint="npm install --prefix data/vendor openmoji@17.0.0",
            location=root / "openmoji" / "color" / "svg",
            renderer=_svg_dir_renderer(upper=True),
        ),
        EmojiSource(
            style="twemoji",
            label="Twemoji",
            package="npm @twemoji/svg",
            license="CC-BY-4.0",
            attribution="Twemoji graphics, Copyright Twitter, Inc and other contributors "
            "(jdecked/twemoji), CC BY 4.0",
            install_hint="npm install --prefix data/vendor @twemoji/svg@15.0.0",
            location=root / "@twemoji" / "svg",
            renderer=_svg_dir_renderer(upper=False),
        ),
    ]


def openmoji_metadata(vendor: Path | None = None) -> dict[str, dict]:
    """OpenMoji's emoji table (CLDR annotation, keywords, group) keyed by character.

    Used only for keywords/groups; it does not need to be present.
    """
    import json

    path = (vendor or vendor_dir()) / "node_modules" / "openmoji" / "data" / "openmoji.json"
    if not path.exists():
        return {}
    table = json.loads(path.read_text(encoding="utf-8"))
    meta: dict[str, dict] = {}
    for row in table:
        meta[row["emoji"]] = row
        meta.setdefault(row["emoji"].replace("\ufe0f", ""), row)
    return meta


def render_item(item_id: str, size: int) -> Image.Image | None:
    """A corpus item (``"<style>:<code points>"``, e.g. ``"noto:1f600"``) rendered again from its installed
    source as a ``size`` px tile; None when that source is not installed here or lacks the item."""
    from aigc_demo.data.render import to_tile

    style, _, stem = item_id.partition(":")
    try:
        char = "".join(chr(int(code, 16)) for code in stem.split("-"))
    except ValueError:
        return None
    source = next((s for s in all_sources() if s.style == style), None)
    if source is None or not source.available():
        return None
    art = source.render(char)
    return None if art is None else Image.fromarray(to_tile(art, size))
