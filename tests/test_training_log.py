"""The training loss log continues across machines: published beside the plot, seeded from there."""

from __future__ import annotations

from aigc_demo.training.common import LossLog


def test_loss_history_survives_a_fresh_machine(tmp_path):
    weights, run1, run2 = (
        tmp_path / "weights",
        tmp_path / "machine1" / "loss.csv",
        tmp_path / "machine2" / "loss.csv",
    )
    first = LossLog(run1, ["loss"], history=weights / "loss.csv")  # nothing published yet: a new log
    for step in (10, 20):
        first.append({"step": step, "wall_seconds": step, "loss": 1.0 / step})
    first.plot(weights / "loss.png", ["loss"], "test")
    assert (weights / "loss.png").is_file() and (weights / "loss.csv").read_text() == run1.read_text()

    second = LossLog(
        run2, ["loss"], history=weights / "loss.csv"
    )  # runs/ gone: starts from the published log
    second.append({"step": 30, "wall_seconds": 30, "loss": 0.03})
    steps = [line.split(",")[0] for line in run2.read_text().splitlines()]
    assert steps == ["step", "10", "20", "30"]
