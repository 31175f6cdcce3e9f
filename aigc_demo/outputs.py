"""Where generated files (PNGs, animations, chat exports) are written before Gradio serves them.

Every output gets a fresh folder under one app-owned directory, and folders older than a day are removed as
new ones are made (at most once a minute: a sweep looks at every folder, and a busy day leaves tens of
thousands), so a long-lived server does not fill its disk. Gradio copies what a handler returns into
its own cache (cleaned by ``delete_cache`` in ``aigc_demo/ui/layout.py``), so these are only staging copies.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

MAX_AGE_S = 24 * 3600
SWEEP_EVERY_S = 60.0

_sweep_lock = threading.Lock()
_next_sweep = 0.0  # time.monotonic() from which the next output sweeps


def output_root() -> Path:
    return Path(tempfile.gettempdir()) / "aigc-studio"


def fresh_output_dir(prefix: str, max_age_s: float = MAX_AGE_S) -> Path:
    root = output_root()
    root.mkdir(parents=True, exist_ok=True)
    _sweep(root, max_age_s)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def _sweep(root: Path, max_age_s: float) -> None:
    """Remove the folders older than ``max_age_s``, unless another output did within SWEEP_EVERY_S."""
    global _next_sweep
    with _sweep_lock:
        if time.monotonic() < _next_sweep:
            return
        _next_sweep = time.monotonic() + SWEEP_EVERY_S
    cutoff = time.time() - max_age_s
    for old in root.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another worker removed it first
            pass
