"""Colour augmentation that teaches colour words.

Most emoji exist in one colour, so "a blue apple" or "a green heart" has nothing to learn from. For images
with one dominant colour, this makes hue-rotated copies and names their new colour in the caption
("red apple" -> "green apple", "cat face" -> "blue cat face"), the data-side fix MEASURED.md suggested.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from aigc_demo.data.catalog import stable_hash
from aigc_demo.data.corpus import Corpus

# Hue ranges in degrees -> the word people use. Red wraps around 0.
HUE_NAMES: tuple[tuple[float, float, str], ...] = (
    (0, 15, "red"),
    (15, 40, "orange"),
    (40, 68, "yellow"),
    (68, 160, "green"),
    (160, 250, "blue"),
    (250, 290, "purple"),
    (290, 340, "pink"),
    (340, 360, "red"),
)
COLOUR_WORDS = re.compile(r"\b(red|orange|yellow|green|blue|purple|pink|brown|black|white)\b", re.IGNORECASE)
# Shifts that move a colour into a different named range (degrees).
SHIFTS = (60, 120, 180, 240, 300)


def hue_name(degrees: float) -> str:
    degrees %= 360
    return next(name for low, high, name in HUE_NAMES if low <= degrees < high)


def dominant_colour(image: np.ndarray) -> tuple[str, float] | None:
    """(colour word, mean hue in degrees) when one named hue holds >= 60 % of the colourful pixels."""
    hsv = np.asarray(Image.fromarray(image).convert("HSV"), dtype=np.float32)
    hue, sat, val = hsv[..., 0] * (360 / 255), hsv[..., 1] / 255, hsv[..., 2] / 255
    colourful = (sat > 0.35) & (val > 0.3)
    drawn = (sat > 0.08) | (val < 0.9)  # not the white background
    if colourful.sum() < 0.3 * max(drawn.sum(), 1) or colourful.sum() < 50:
        return None
    names = np.array([hue_name(h) for h in hue[colourful]])
    values, counts = np.unique(names, return_counts=True)
    best = int(counts.argmax())
    if counts[best] < 0.6 * counts.sum():
        return None
    hues = hue[colourful][names == values[best]]
    # Circular mean, so red around 0/360 averages correctly.
    angle = np.degrees(np.arctan2(np.sin(np.radians(hues)).mean(), np.cos(np.radians(hues)).mean())) % 360
    return str(values[best]), float(angle)


def rotate_hue(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image with every hue turned by ``degrees``; greys and the white background stay as they are."""
    hsv = np.asarray(Image.fromarray(image).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(degrees * 255 / 360)) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def recoloured_name(name: str, colour: str) -> str:
    """'red apple' -> 'green apple'; 'cat face' -> 'green cat face'."""
    if COLOUR_WORDS.search(name):
        return COLOUR_WORDS.sub(colour, name, count=1)
    return f"{colour} {name}"


def with_colour_variants(corpus: Corpus, per_image: int = 1, max_fraction: float = 0.3) -> Corpus:
    """The corpus plus hue-rotated training copies of single-colour images, captioned with their new colour.

    Held-out rows are never augmented; at most ``max_fraction`` of the corpus is added, chosen by a stable
    hash so rebuilding gives the same set.
    """
    images, rows = [corpus.images], list(corpus.rows)
    budget = int(max_fraction * len(corpus))
    candidates = sorted(
        # Flags have fixed colours, and a skin-tone caption must not describe a green face.
        (
            i
            for i, r in enumerate(corpus.rows)
            if r["split"] == "train" and not r.get("flag") and not r.get("skin_tone")
        ),
        key=lambda i: stable_hash("colour:" + corpus.rows[i]["id"]),
    )
    extra = []
    for i in candidates:
        if len(extra) >= budget:
            break
        found = dominant_colour(corpus.images[i])
        if found is None:
            continue
        colour, hue = found
        row = corpus.rows[i]
        shifts = sorted(SHIFTS, key=lambda s: stable_hash(f"{row['id']}:{s}"))
        made = 0
        for shift in shifts:
            new_colour = hue_name(hue + shift)
            if new_colour == colour or made >= per_image:
                continue
            name = recoloured_name(row["name"], new_colour)
            extra.append(rotate_hue(corpus.images[i], shift))
            rows.append(
                {
                    **row,
                    "row": len(rows),
                    "id": f"{row['id']}:hue{shift}",
                    "name": name,
                    "caption": f"{name}, in {row['style_label']} style",
                    "aliases": [],
                    "keywords": [new_colour],
                    "augmented": f"hue +{shift} degrees from {colour}",
                }
            )
            made += 1
    if extra:
        images.append(np.stack(extra))
    return Corpus(images=np.concatenate(images), rows=rows)


def colour_note(corpus: Corpus) -> str:
    """A model card sentence on how many rows are colour-augmented copies."""
    added = sum(1 for r in corpus.rows if r.get("augmented"))
    if not added:
        return "No colour augmentation in the last run."
    return f"The last run's corpus includes {added} hue-rotated copies of single-colour images, captioned with their new colour."
