"""The model and data cards, for the About panel: what each model was trained on, under which licence, how
well it measures and how it fails. The cards are the weights folders' README.md files and the corpus's
CREDITS.md, shown as written; pictures in a card are served beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aigc_demo.config import REPO_ROOT, WEIGHTS_DIR

DATA_CARD = "training data"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)\n?")


@dataclass(frozen=True)
class Card:
    name: str
    markdown: str  # the card without its picture links
    pictures: list[Path]  # the pictures it links (sample grids, loss curves)


def card_names(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    return sorted(p.parent.name for p in weights_dir.glob("*/README.md")) + [DATA_CARD]


def read_card(name: str, weights_dir: Path = WEIGHTS_DIR) -> Card:
    """A model's card by its folder name, or the corpus's credits; ValueError for an unknown name."""
    if name == DATA_CARD:
        path = REPO_ROOT / "aigc_demo" / "data" / "CREDITS.md"
    elif name in card_names(weights_dir):
        path = weights_dir / name / "README.md"
    else:
        raise ValueError(f"no card named {name!r}; the cards are: {', '.join(card_names(weights_dir))}")
    text = path.read_text(encoding="utf-8")
    pictures = [
        path.parent / link for link in IMAGE_LINK.findall(text) if not link.startswith(("http:", "https:"))
    ]
    return Card(name, IMAGE_LINK.sub("", text).strip(), [p for p in pictures if p.is_file()])
