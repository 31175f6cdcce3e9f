"""Filesystem locations of the (git-ignored) corpus and vendored emoji packages."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def corpus_dir() -> Path:
    """Directory holding the built corpus; ``AIGC_DATA_DIR`` overrides ``data/emoji``."""
    env = os.environ.get("AIGC_DATA_DIR")
    return Path(env) if env else REPO_ROOT / "data" / "emoji"


def vendor_dir() -> Path:
    """npm prefix the emoji art packages are installed into (``data/vendor``)."""
    env = os.environ.get("AIGC_VENDOR_DIR")
    return Path(env) if env else REPO_ROOT / "data" / "vendor"
