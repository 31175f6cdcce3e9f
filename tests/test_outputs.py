"""Generated files are staged under one app-owned folder, and old folders are cleaned up."""

from __future__ import annotations

import os
import time

from aigc_demo import outputs


def test_fresh_dirs_are_unique_and_old_ones_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    old = outputs.fresh_output_dir("image-")
    (old / "a.png").write_bytes(b"x")
    past = time.time() - outputs.MAX_AGE_S - 60
    os.utime(old, (past, past))
    recent = outputs.fresh_output_dir("image-")
    new = outputs.fresh_output_dir("chat-")
    assert not old.exists()
    assert recent.exists() and new.exists() and recent != new
    assert new.parent == tmp_path / "aigc-studio" and new.name.startswith("chat-")
