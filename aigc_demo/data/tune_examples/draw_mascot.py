"""Draws Blip, the Tune tab's example mascot, in 8 poses: ``python -m aigc_demo.data.tune_examples.draw_mascot``.

A made-up character (no emoji set has it), drawn at 256 px and reduced to the image model's 64 px."""

import math
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).parent / "mascot"
S = 256


def blip(cx: float, cy: float, r: float, tilt: float, eye_dx: int, arms_up: bool) -> Image.Image:
    """Blip centred at (cx, cy) with body radius r, antenna tilted by ``tilt`` radians, looking left/right."""
    img = Image.new("RGB", (S, S), "white")
    d = ImageDraw.Draw(img)
    teal, dark, orange = (0, 168, 150), (20, 60, 70), (255, 140, 0)
    # antenna with an orange ball, tilted
    ax = cx + r * 0.9 * math.sin(tilt)
    ay = cy - r * 0.9 * math.cos(tilt)
    tx = cx + r * 1.55 * math.sin(tilt)
    ty = cy - r * 1.55 * math.cos(tilt)
    d.line([(ax, ay), (tx, ty)], fill=dark, width=max(3, int(r * 0.08)))
    d.ellipse(
        [tx - r * 0.18, ty - r * 0.18, tx + r * 0.18, ty + r * 0.18], fill=orange, outline=dark, width=3
    )
    # arms
    for side in (-1, 1):
        sx, sy = cx + side * r * 0.95, cy + r * 0.1
        ex, ey = sx + side * r * 0.45, sy + (-r * 0.55 if arms_up else r * 0.35)
        d.line([(sx, sy), (ex, ey)], fill=dark, width=max(3, int(r * 0.1)))
    # feet
    for side in (-1, 1):
        fx = cx + side * r * 0.45
        d.ellipse(
            [fx - r * 0.3, cy + r * 0.82, fx + r * 0.3, cy + r * 1.12], fill=orange, outline=dark, width=3
        )
    # body: a teal circle
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=teal, outline=dark, width=max(3, int(r * 0.07)))
    # one big eye
    er = r * 0.42
    ex, ey = cx + eye_dx * r * 0.15, cy - r * 0.12
    d.ellipse([ex - er, ey - er, ex + er, ey + er], fill="white", outline=dark, width=3)
    pr = er * 0.5
    px = ex + eye_dx * er * 0.35
    d.ellipse([px - pr, ey - pr, px + pr, ey + pr], fill=dark)
    # smile
    d.arc(
        [cx - r * 0.4, cy + r * 0.2, cx + r * 0.4, cy + r * 0.65],
        20,
        160,
        fill=dark,
        width=max(3, int(r * 0.07)),
    )
    return img.resize((64, 64), Image.Resampling.LANCZOS)


POSES = [
    (128, 124, 70, 0.0, 0, False),
    (122, 130, 64, 0.35, 1, False),
    (134, 128, 66, -0.35, -1, True),
    (128, 120, 76, 0.15, 0, True),
    (118, 126, 60, -0.2, 1, False),
    (136, 122, 72, 0.3, -1, False),
    (128, 132, 58, -0.1, 0, True),
    (126, 126, 68, 0.5, 1, True),
]


def main() -> None:
    for i, pose in enumerate(POSES):
        blip(*pose).save(OUT / f"blip-{i + 1}.png", optimize=True)


if __name__ == "__main__":
    main()
