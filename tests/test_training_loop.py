"""The shared training loop: steps, loss.csv, checkpoints, SIGTERM, resuming; one real script end to end."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from aigc_demo.models import PromptMatch
from aigc_demo.training import loop


@pytest.fixture
def restore_signals():
    """The loop's Timer turns SIGTERM/SIGINT into "stop after this step"; give pytest its handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _args(tmp_path, minutes: float) -> argparse.Namespace:
    args = loop.training_parser("toy", minutes=minutes, lr=1e-2, batch_size=4).parse_args([])
    args.run_dir, args.weights_dir, args.log_every = tmp_path / "run", tmp_path / "weights", 1
    return args


def _run(args, stop_at: int | None = None):
    start = loop.resume(
        args,
        {"scorer": PromptMatch},
        published=lambda _: None,
        scratch=lambda: {"scorer": PromptMatch(text_dim=4, channels=(8,))},
    )
    model = start.models["scorer"].train()
    opt = torch.optim.Adam(model.parameters())
    x, target = torch.rand(4, 3, 16, 16), F.normalize(torch.randn(4, 4), dim=-1)

    def step(state):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if stop_at is not None and state.step + 1 == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill -TERM <pid>`: this step finishes, then it stops
        return {"loss": loss}

    state = loop.train(
        args, start, {"scorer": opt}, step, ["loss"], lr_at=lambda _, p: loop.cosine_lr(1e-2, p)
    )
    return start, state


def _logged_steps(args) -> list[int]:
    with open(args.run_dir / "loss.csv", newline="") as fh:
        return [int(row["step"]) for row in csv.DictReader(fh)]


def test_loop_stops_on_sigterm_checkpoints_and_resumes(tmp_path, restore_signals):
    args = _args(tmp_path, minutes=10.0)  # a long budget: only the signal ends it
    start, state = _run(args, stop_at=5)
    assert start.origin == "scratch" and state.step == 5 and state.runs == 1
    assert _logged_steps(args) == [1, 2, 3, 4, 5]
    ckpt = args.run_dir / "checkpoint"
    assert (ckpt / "scorer" / "config.json").is_file() and (ckpt / "optimizer.pt").is_file()
    assert json.loads((ckpt / "state.json").read_text())["step"] == 5
    assert not (args.run_dir / "checkpoint.tmp").exists()

    args = _args(tmp_path, minutes=0.01)  # 0.6 s: the budget ends it
    start, state = _run(args)
    assert start.origin == "checkpoint" and start.optimizer_state is not None
    assert state.step > 5 and state.runs == 2
    steps = _logged_steps(args)
    assert steps[:5] == [1, 2, 3, 4, 5] and steps[5] == 6 and steps[-1] == state.step, "step count continues"
    first, second = state.lr_history
    assert (first["first_step"], first["last_step"], second["first_step"]) == (0, 5, 5)
    assert second["last_step"] == state.step and second["to"] < second["from"]  # the cosine decay


def test_a_parked_run_resumes_on_a_machine_without_runs_and_stays_parked_while_asked(
    tmp_path, restore_signals
):
    args = _args(tmp_path, minutes=10.0)
    start, state = _run(args, stop_at=4)
    loop.park(args, start.models)
    parked = tmp_path / "weights" / "parked" / "run"
    assert (parked / "scorer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(parked.rglob("*.pt")), "no optimizer state (pickle) in what is committed"
    trained = {k: v.half().float() for k, v in start.models["scorer"].state_dict().items()}

    other = _args(tmp_path / "other-machine", minutes=0.01)
    other.weights_dir = tmp_path / "weights"
    start, state = _run(other)
    assert start.origin == "parked" and start.optimizer_state is None
    assert all(
        torch.equal(v, trained[k])
        for k, v in PromptMatch.from_pretrained(parked / "scorer").state_dict().items()
    )
    assert state.step > 4 and state.runs == 2
    assert _logged_steps(other)[:5] == [1, 2, 3, 4, 5], "the loss log continues the parked one"
    loop.park(other, start.models)

    # Back on the first machine, its own checkpoint (step 4) is older than the parked run: the parked run wins.
    args = _args(tmp_path, minutes=0.0)
    start, resumed = _run(args)
    assert start.origin == "parked" and resumed.step == state.step
    assert _logged_steps(args) == _logged_steps(other)

    # Not published, no --park: the parked run stays for the next one.
    args.park = False
    loop.after_evaluation(args, start.models, published=False)
    assert loop.is_whole(parked, ["scorer"])
    # Published with --park: parked again (a GAN's discriminator is not in the published weights).
    args.park = True
    loop.after_evaluation(args, start.models, published=True)
    assert loop.is_whole(parked, ["scorer"])
    # Published without --park: the parked copy, and the half-written one of a run killed while parking, go.
    (parked.with_name("run.tmp") / "scorer").mkdir(parents=True)
    args.park = False
    loop.after_evaluation(args, start.models, published=True)
    assert not (tmp_path / "weights" / "parked").exists()


KILLED_RUN = textwrap.dedent(
    """
    import json
    import os
    import signal
    import sys
    from pathlib import Path

    import torch

    from aigc_demo.models import PromptMatch
    from aigc_demo.training import loop

    args = loop.training_parser("toy", minutes=10.0, lr=1e-2, batch_size=4).parse_args([])
    args.run_dir, args.weights_dir, args.log_every = Path(sys.argv[1]), Path(sys.argv[2]), 1
    start = loop.resume(
        args, {"scorer": PromptMatch}, lambda _: None, lambda: {"scorer": PromptMatch(text_dim=4, channels=(8,))}
    )
    model = start.models["scorer"].train()
    opt = torch.optim.Adam(model.parameters())
    x, target = torch.rand(4, 3, 16, 16), torch.randn(4, 4)

    def step(state):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        checkpoint = loop.last_checkpoint(args.run_dir, ["scorer"])  # written by this process: no race
        if checkpoint is not None:
            saved = json.loads((checkpoint / "state.json").read_text())["step"]
            if state.step >= saved + 3:  # three steps logged since the checkpoint: no chance to save them
                os.kill(os.getpid(), signal.SIGKILL)
        return {"loss": loss}

    loop.train(args, start, {"scorer": opt}, step, ["loss"], checkpoint_seconds=2.0)
    """
)


def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path, restore_signals):
    """SIGKILL (no chance to save) after a checkpoint and more logged steps: the next run continues from the
    checkpoint's step, with its optimizer, and loss.csv has each step once."""
    args = _args(tmp_path, minutes=0.01)
    run = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(args.run_dir), str(args.weights_dir)], timeout=120
    )
    assert run.returncode == -signal.SIGKILL
    checkpoint = loop.last_checkpoint(args.run_dir, ["scorer"])
    checkpointed = json.loads((checkpoint / "state.json").read_text())["step"]
    assert _logged_steps(args)[-1] == checkpointed + 3, "killed with three steps logged after the checkpoint"

    start, state = _run(args)
    assert start.origin == "checkpoint" and start.optimizer_state is not None
    steps = _logged_steps(args)
    assert steps == list(range(1, state.step + 1)), "each step logged once, continuing from the checkpoint"
    assert steps[checkpointed] == checkpointed + 1 and state.runs == 2


def test_a_kill_between_the_checkpoint_renames_keeps_the_previous_checkpoint(tmp_path, restore_signals):
    args = _args(tmp_path, minutes=10.0)
    _run(args, stop_at=3)
    (args.run_dir / "checkpoint").rename(args.run_dir / "checkpoint.old")  # as if killed mid-swap
    assert loop.last_checkpoint(args.run_dir, ["scorer"]) == args.run_dir / "checkpoint.old"
    args.minutes = 0.01
    start, state = _run(args)
    assert start.origin == "checkpoint" and state.lr_history[1]["first_step"] == 3  # resumed at step 3
    assert (args.run_dir / "checkpoint").is_dir() and not (args.run_dir / "checkpoint.old").exists()


def test_parser_has_the_shared_flags_and_the_scripts_own():
    from aigc_demo.training import train_diffusion, train_vae

    args = train_vae.parse_args(["--minutes", "2", "--beta", "0.5"])
    assert (args.minutes, args.beta, args.lr, args.log_every) == (2.0, 0.5, 1e-3, 10)
    assert args.run_dir.name == "vae-emoji" and args.weights_dir.name == "vae-emoji"
    assert train_diffusion.parse_args(["--lr-final", "1e-5"]).lr_final == 1e-5


def test_lr_sentence_merges_constant_runs():
    from aigc_demo.training.train_diffusion import lr_sentence

    history = [
        {"first_step": 0, "last_step": 100, "from": 3e-4, "to": 3e-4},
        {"first_step": 100, "last_step": 250, "from": 3e-4, "to": 3e-4},
        {"first_step": 250, "last_step": 300, "from": 1e-4, "to": 1e-5},
    ]
    assert (
        lr_sentence(history)
        == "AdamW: 3e-4 for steps 0-250; steps 250-300 decayed linearly from 1e-4 to 1e-5"
    )


@pytest.mark.slow
def test_train_scorer_runs_end_to_end_on_a_tiny_corpus(tmp_path, restore_signals):
    from aigc_demo.data import build_corpus
    from aigc_demo.data.sources import all_sources
    from aigc_demo.training import train_scorer

    styles = [s.style for s in all_sources() if s.available()]
    if not styles:
        pytest.skip("no emoji source installed (see aigc_demo/data/CREDITS.md)")
    data = tmp_path / "corpus"
    build_corpus.build(data, sizes=[64], styles=styles[:1], limit=24)
    manifest = data / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):  # a held-out split to evaluate on
        row["split"] = "heldout" if i % 4 == 0 else "train"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))

    flags = ["--minutes", "0.03", "--batch-size", "8", "--autocast", "off", "--log-every", "2"]
    dirs = ["--data-dir", str(data), "--run-dir", str(tmp_path / "run"), "--weights-dir", str(tmp_path / "w")]
    assert train_scorer.main(flags + dirs) == 0
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert metrics["steps"] > 0 and metrics["runs"] == 1 and metrics["heldout_items"] == 6
    assert "machine" in metrics and "date" in metrics
    assert PromptMatch.from_pretrained(tmp_path / "w").config.text_dim == 384
    assert "session" not in (tmp_path / "w" / "README.md").read_text()
