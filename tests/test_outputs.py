"""Generated files are staged under one app-owned folder, and old folders are cleaned up."""

from __future__ import annotations

import os
import time

from aigc_demo import outputs


def test_fresh_dirs_are_unique_and_old_ones_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(outputs, "SWEEP_EVERY_S", 0.0)
    monkeypatch.setattr(outputs, "_next_sweep", 0.0)
    old = outputs.fresh_output_dir("image-")
    (old / "a.png").write_bytes(b"x")
    past = time.time() - outputs.MAX_AGE_S - 60
    os.utime(old, (past, past))
    recent = outputs.fresh_output_dir("image-")
    new = outputs.fresh_output_dir("chat-")
    assert not old.exists()
    assert recent.exists() and new.exists() and recent != new
    assert new.parent == tmp_path / "aigc-studio" and new.name.startswith("chat-")


def test_old_folders_are_looked_for_at_most_once_a_minute(tmp_path, monkeypatch):
    """A sweep stats every folder: a busy server must not pay for it on every slider move."""
    monkeypatch.setattr(outputs.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(outputs, "_next_sweep", 0.0)
    old = outputs.fresh_output_dir("latent-")  # sweeps, and the next minute's outputs do not
    past = time.time() - outputs.MAX_AGE_S - 60
    os.utime(old, (past, past))
    outputs.fresh_output_dir("latent-")
    assert old.exists()
    monkeypatch.setattr(outputs, "_next_sweep", time.monotonic() - 1)  # a minute later
    outputs.fresh_output_dir("latent-")
    assert not old.exists()
