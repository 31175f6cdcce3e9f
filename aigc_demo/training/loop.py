"""The one training loop the ``train_*.py`` scripts fill with their model and step.

A script builds its parser with ``training_parser`` (the flags every run has) and adds its own flags; gets its
models with ``resume`` (checkpoint in runs/ -> committed weights -> scratch); then hands ``train`` the models to
checkpoint, the optimizers, a ``step`` callback that does one optimisation step and returns its losses, and
the learning-rate schedule. ``train`` runs until the time budget or SIGTERM, logs ``loss.csv``, shows a time
bar, checkpoints every few minutes and at the end, and returns the state.

    args = training_parser("vae-emoji", minutes=30, lr=1e-3, batch_size=64, doc=__doc__).parse_args(argv)
    start = resume(args, {"vae": EmojiVAE}, published=..., scratch=...)
    state = train(args, start, {"vae": opt}, step, fields=["loss", "kl"], lr_at=...)
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_demo.models import save_as, save_fp16
from aigc_demo.training import common
from aigc_demo.training.common import TrainState

logger = logging.getLogger(__name__)

Models = dict[str, torch.nn.Module]


# -- command line ----------------------------------------------------------------------------------------
def training_parser(
    model_name: str, *, minutes: float, lr: float, batch_size: int, doc: str | None = None
) -> argparse.ArgumentParser:
    """A parser with the flags every training script has; the script adds its own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=minutes, help="training time budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--autocast",
        choices=["auto", "on", "off"],
        default="auto",
        help="bf16 autocast; 'auto' uses it only where it measures faster than fp32",
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--run-dir", type=Path, default=common.RUNS_DIR / model_name)
    p.add_argument("--weights-dir", type=Path, default=common.WEIGHTS_DIR / model_name)
    p.add_argument("--log-every", type=int, default=10, help="steps between loss.csv rows")
    return p


def add_park_option(p: argparse.ArgumentParser) -> None:
    """``--park`` for the scripts that can keep an unpublished run (``park``)."""
    p.add_argument(
        "--park",
        action="store_true",
        help="keep the run (its discriminator too) in <weights-dir>/parked/ so the next machine resumes it",
    )


def after_evaluation(args: argparse.Namespace, models: Models, published: bool) -> None:
    """Where the next run starts. With ``--park`` the run is parked, published or not: the published weights
    leave out the discriminator, and a trained generator resumed against a fresh one is pulled back (the
    emoji GAN's held-out top-5 fell from 0.394 to 0.212 in 2,000 steps). Without it, a run that published
    removes any parked copy, which the next run would otherwise resume instead of what was just published."""
    if args.park:
        park(args, models)
    elif published:
        unpark(args)


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces this run, for the model card."""
    return f"python -m {module} " + shlex.join(sys.argv[1:] if argv is None else argv)


# -- resuming --------------------------------------------------------------------------------------------
@dataclass
class Start:
    """Where a run starts: its models, the step count so far, and the optimizer state (checkpoints only)."""

    models: Models
    state: TrainState
    origin: str  # "checkpoint", "parked", "weights" or "scratch"
    optimizer_state: dict | None = None


def resume(
    args: argparse.Namespace,
    classes: Mapping[str, type],
    published: Callable[[Path], Models | None],
    scratch: Callable[[], Models],
) -> Start:
    """runs/<model>/checkpoint (models, optimizers, step) -> a committed parked run (``park``), whichever has
    gone further -> the committed weights (the step count continues from metrics.json) -> ``scratch()``.
    ``classes`` names the checkpoint's models (``checkpoint/<name>/``)."""
    ckpt = last_checkpoint(args.run_dir, classes)
    parked = parked_dir(args)
    parked_state = common.load_state(parked) if is_whole(parked, classes) else None
    ckpt_state = common.load_state(ckpt) if ckpt is not None else None
    if parked_state is not None and (ckpt_state is None or parked_state.step > ckpt_state.step):
        models = {
            name: cls.from_pretrained(parked / name, torch_dtype=torch.float32)
            for name, cls in classes.items()
        }
        args.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(parked / "loss.csv", args.run_dir / "loss.csv")  # the log this run continues
        start = Start(models, parked_state, "parked")
    elif ckpt is not None:
        models = {
            name: cls.from_pretrained(ckpt / name, torch_dtype=torch.float32) for name, cls in classes.items()
        }
        opt_path = ckpt / "optimizer.pt"
        opt_state = torch.load(opt_path, weights_only=True) if opt_path.is_file() else None
        start = Start(models, ckpt_state, "checkpoint", opt_state)
    elif (models := published(args.weights_dir)) is not None:
        start = Start(models, common.state_from_published(args.weights_dir), "weights")
    else:
        start = Start(scratch(), TrainState(), "scratch")
    sizes = ", ".join(
        f"{k} {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M" for k, m in start.models.items()
    )
    logger.info("starting from %s (%s params)", start.origin, sizes)
    return start


# -- the loop --------------------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, models: Models, optimizers: Mapping, state: TrainState) -> None:
    """fp32 models (one diffusers folder each), optimizer state and step count in runs/ only.

    Written to ``checkpoint.tmp``, then swapped in by renames, so a process killed at any moment (SIGKILL)
    leaves a whole checkpoint behind: ``checkpoint``, or between the two renames ``checkpoint.old``.
    ``last_checkpoint`` finds it. (Nothing is fsynced: a power cut may lose the newest files.)
    """
    tmp, final, old = run_dir / "checkpoint.tmp", run_dir / "checkpoint", run_dir / "checkpoint.old"
    for stale in (tmp, old):
        if stale.exists() and (stale != old or final.exists()):
            common.rmtree(stale)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        save_as(model, tmp / name, torch.float32)
    torch.save({k: opt.state_dict() for k, opt in optimizers.items()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state.to_dict(), indent=2))  # last: marks it whole
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        common.rmtree(old)
    (run_dir / "state.json").write_text(json.dumps(state.to_dict(), indent=2))


def parked_dir(args: argparse.Namespace) -> Path:
    """Where ``park`` commits a run that has not published: weights/<model>/parked/<run folder name>/."""
    if not args.run_dir.resolve().name:
        raise SystemExit(f"--run-dir {args.run_dir} has no folder name to park the run under")
    return args.weights_dir / "parked" / args.run_dir.resolve().name


def park(args: argparse.Namespace, models: Models) -> Path:
    """Keep a run that has not published yet (a new architecture still catching up with the committed model)
    where the next machine finds it: runs/ is not committed, so a long from-scratch run would otherwise start
    over every session. Its models in fp16, its step count and loss log; not its optimizer state (Adam starts
    afresh on resume)."""
    out = parked_dir(args)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        common.rmtree(tmp)
    for name, model in models.items():
        save_fp16(model, tmp / name)
    shutil.copyfile(args.run_dir / "loss.csv", tmp / "loss.csv")
    shutil.copyfile(args.run_dir / "checkpoint" / "state.json", tmp / "state.json")  # marks it whole
    if out.exists():
        common.rmtree(out)
    tmp.rename(out)
    logger.info("parked the run in %s", out)
    return out


def unpark(args: argparse.Namespace) -> None:
    """A run that published no longer needs its parked copy, nor the half-written one of a run killed while
    parking."""
    folder = parked_dir(args)
    for stale in (folder, folder.with_name(folder.name + ".tmp")):
        if stale.exists():
            common.rmtree(stale)
    if folder.parent.exists() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def last_checkpoint(run_dir: Path, names: Iterable[str]) -> Path | None:
    """The newest whole checkpoint folder in ``run_dir`` (see ``save_checkpoint``), or None."""
    for folder in (run_dir / "checkpoint", run_dir / "checkpoint.old"):
        if is_whole(folder, names):
            return folder
    return None


def is_whole(folder: Path, names: Iterable[str]) -> bool:
    """A checkpoint folder with every model and its state.json (written last)."""
    return (folder / "state.json").is_file() and all((folder / n / "config.json").is_file() for n in names)


def train(
    args: argparse.Namespace,
    start: Start,
    optimizers: Mapping[str, torch.optim.Optimizer],
    step: Callable[[TrainState], Mapping[str, float | torch.Tensor]],
    fields: list[str],
    *,
    lr_at: Callable[[int, float], float] | None = None,
    sampler: common.BatchSampler | None = None,
    shown: tuple[str, ...] = (),
    desc: str = "train",
    checkpoint_seconds: float = common.CHECKPOINT_SECONDS,
) -> TrainState:
    """Run ``step(state)`` until the ``--minutes`` budget ends or SIGTERM/Ctrl+C arrives; returns the state.

    ``lr_at(step, progress)`` (progress through this run's budget, 0..1) sets every optimizer's rate before each
    step and is logged as ``lr``. ``fields`` are the losses ``step`` returns that go to ``loss.csv`` every
    ``--log-every`` steps; ``shown`` ones also go to the progress bar. ``sampler`` records its epoch in the
    checkpoint so a resumed run continues the same shuffle. Each run's first and last rate go to
    ``state.lr_history``, which ``run_metrics`` publishes.
    """
    state = start.state
    if start.optimizer_state is not None:
        for name, opt in optimizers.items():
            opt.load_state_dict(start.optimizer_state[name])
    columns = [*fields, "lr"] if lr_at is not None else list(fields)
    log = common.LossLog(args.run_dir / "loss.csv", columns, history=args.weights_dir / "loss.csv")
    log.keep_until(state.step)
    timer = common.Timer(args.minutes, checkpoint_seconds)
    wall0 = state.wall_seconds
    if args.minutes > 0:  # --minutes 0 only evaluates
        state.runs += 1

    segment = {"first_step": state.step, "last_step": state.step, "from": None, "to": None}

    def checkpoint() -> None:
        if segment["from"] is not None and segment not in state.lr_history:
            state.lr_history.append(segment)
        if sampler is not None:
            state.epoch = sampler.epoch
        state.wall_seconds = wall0 + timer.elapsed()
        save_checkpoint(args.run_dir, start.models, optimizers, state)

    bar = common.time_bar(args.minutes, desc)
    while not timer.done():
        lr = None
        if lr_at is not None:
            lr = lr_at(state.step, timer.elapsed() / max(timer.budget, 1e-9))
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr
        losses = step(state)
        state.step += 1
        if lr is not None:
            segment.update(last_step=state.step, to=lr)
            segment["from"] = segment["from"] or lr
        if state.step % args.log_every == 0:
            values = {k: float(torch.as_tensor(losses[k]).detach()) for k in fields}
            log.append({"step": state.step, "wall_seconds": wall0 + timer.elapsed(), "lr": lr, **values})
            bar.set_postfix(step=state.step, **{k: f"{values[k]:.4g}" for k in shown})
        bar.n = min(timer.elapsed(), timer.budget)
        bar.refresh()
        if timer.checkpoint_due():
            checkpoint()
    bar.close()
    checkpoint()
    return state


def cosine_lr(base: float, progress: float, floor: float = 0.1, warmup: float = 0.0) -> float:
    """Cosine decay from ``base`` to ``floor * base`` over the run's budget, after a linear warm-up over the
    first ``warmup`` of it (time-based: the number of steps is not known in advance)."""
    warm = min(1.0, progress / warmup) if warmup > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    return base * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# -- publishing ------------------------------------------------------------------------------------------
def run_metrics(args: argparse.Namespace, state: TrainState, command: str) -> dict:
    """What every card states about the run: steps, runs, batch, cumulative time, where and when, command."""
    return {
        "steps": state.step,
        "runs": state.runs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "cumulative_train_seconds": round(state.wall_seconds, 1),
        "machine": common.machine_class(),
        "date": datetime.date.today().isoformat(),
        "command": command,
        **({"lr_history": state.lr_history} if state.lr_history else {}),
    }


def beats_published(weights_dir: Path, key: str, value: float, higher_is_better: bool) -> bool:
    """The publish rule of the single-metric scripts: better than the committed ``metrics.json[key]``."""
    old = common.previous_metric(weights_dir, key)
    better = common.is_better(value, old, higher_is_better)
    logger.info("%s %s: %.4g (committed %s)", "publishing" if better else "NOT published", key, value, old)
    return better


def as_shipped(model: torch.nn.Module) -> torch.nn.Module:
    """What would ship: the model saved in fp16 and loaded back (fp32, eval mode). Evaluate this, not the
    fp32 training copy."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        save_fp16(model, folder)
        return type(model).from_pretrained(folder, torch_dtype=torch.float32).eval()


def begin(module: str, parse_args: Callable, argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """A script's first step: its flags, threads and seeds pinned, and the command that reproduces the run."""
    args = parse_args(argv)
    common.setup(args.threads, args.seed)
    return args, command_line(module, argv)


def write_record(
    out: Path, run_dir: Path, metrics: dict, card: str, loss: Sequence[str], title: str, log_y=True
):
    """What every published model folder holds besides its weights and pictures: the loss plot (and the CSV the
    next run continues), ``metrics.json`` (with the run history) and the model card."""
    common.LossLog(run_dir / "loss.csv", []).plot(out / "loss.png", list(loss), title, log_y=log_y)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(card, encoding="utf-8")
