"""The in-app training loop: a few epochs over a small dataset, live, stoppable, with held-out early stopping.

The command-line scripts (``loop.py``) train for a time budget and checkpoint to disk; a fine-tune in the app
trains for a number of epochs while a person watches, so this loop is a generator: each step yields a
``FitProgress`` the page draws as a loss plot, and the caller runs it on a compute thread one step per job,
so serving slots in between steps. It shares the learning-rate shape with the scripts (``cosine_lr``).

Only trainable parameters (the LoRA adapters) are kept: the best state by held-out loss is copied after each
evaluation, and whatever ends the run (the last epoch, early stopping, Stop) leaves the model in that state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from aigc_demo.compute import TURNS, StopFlag
from aigc_demo.training.loop import cosine_lr

MAX_PAUSE_S = 10.0  # a fine-tune waits at most this long per step, so a stream of requests cannot starve it


def pause_while(
    wait_while: Callable[[], bool], stop: StopFlag | None, serve: Callable[[], bool] | None = None
) -> float:
    """Wait while ``wait_while()`` holds (at most MAX_PAUSE_S, or until ``stop``); the seconds waited. What
    is waited for runs meanwhile: on the other compute thread, whose turn it is while this job steps aside,
    or on this one through ``serve()``, which runs one job waiting there and says whether there was one."""
    t0 = time.perf_counter()
    if not wait_while():
        return 0.0
    while (
        wait_while() and time.perf_counter() - t0 < MAX_PAUSE_S and not (stop is not None and stop.is_set())
    ):
        if serve is not None and serve():
            continue  # it ran here, in this job's turn
        with TURNS.stepped_aside():
            time.sleep(0.02)
    return time.perf_counter() - t0


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 3
    learning_rate: float = 1e-3
    evaluations_per_epoch: int = 4
    # Held-out evaluations without a new best before the run ends early.
    patience: int = 3
    warmup: float = 0.1  # of the run's steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # Examples per forward/backward pass; a batch's gradients add up over its micro-batches. Smaller passes
    # let a fine-tune wait for a reply being served between them, not only between optimisation steps.
    micro_batch: int = 1


@dataclass
class FitProgress:
    step: int
    total_steps: int
    epoch: float
    train_loss: float
    elapsed_s: float
    tokens_seen: int
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    held_out_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)
    best_step: int = 0
    best_held_out: float | None = None
    evaluation_s: float = 0.0  # of elapsed_s, spent measuring the held-out loss
    paused_s: float = 0.0  # of elapsed_s, spent waiting for serving to finish (``wait_while``)
    finish: str = "running"  # "running" | "done" | "early stop" | "stopped"

    @property
    def tokens_per_s(self) -> float:
        """Training speed, held-out evaluations included, pauses for serving not."""
        seconds = self.elapsed_s - self.paused_s
        return self.tokens_seen / seconds if seconds > 0 else 0.0

    @property
    def step_tokens_per_s(self) -> float:
        """Speed of the optimisation steps alone (what a plain trainer without evaluations would show)."""
        seconds = self.elapsed_s - self.evaluation_s - self.paused_s
        return self.tokens_seen / seconds if seconds > 0 else 0.0

    @property
    def eta_s(self) -> float:
        if self.step == 0:
            return float("nan")
        return (self.elapsed_s - self.paused_s) / self.step * (self.total_steps - self.step)


def fit(
    parameters: Sequence[torch.nn.Parameter],
    batches: Callable[[int], list],
    loss_of: Callable[[object], tuple[torch.Tensor, int, int]],
    held_out_loss: Callable[[], float],
    settings: FitSettings,
    stop: StopFlag | None = None,
    wait_while: Callable[[], bool] | None = None,
    serve_waiting: Callable[[], bool] | None = None,
) -> Iterator[FitProgress]:
    """Train ``parameters`` on ``batches(epoch)`` (a list per epoch, shuffled by the caller) with AdamW.

    ``loss_of(batch)`` returns the mean loss, its weight (the tokens it averages over: a batch's micro-batches
    add up weighted by them) and the tokens it read (the speed counts those); ``held_out_loss()`` is
    called (under no_grad) a few times per epoch. The first progress (step 0) carries the held-out loss
    before training. Before each forward pass the loop waits (up to MAX_PAUSE_S) while ``wait_while()`` is
    true, running ``serve_waiting()`` meanwhile (see ``pause_while``): how a fine-tune gives the cores to a
    reply being served."""
    parameters = list(parameters)
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    per_epoch = len(batches(0))
    if per_epoch == 0:
        raise ValueError("there is nothing to train on")
    total = per_epoch * settings.epochs
    every = max(1, math.ceil(per_epoch / settings.evaluations_per_epoch))
    start = time.perf_counter()

    progress = FitProgress(0, total, 0.0, float("nan"), 0.0, 0)

    def evaluate() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            value = float(held_out_loss())
        if progress.step > 0:  # the measurement before training is not part of the run's time
            progress.evaluation_s += time.perf_counter() - t0
        return value

    first = evaluate()
    progress.held_out_curve.append((0, first))
    progress.best_held_out = first
    best = [p.detach().clone() for p in parameters]
    since_best = 0
    yield progress
    for epoch in range(settings.epochs):
        for batch in batches(epoch):
            if stop is not None and stop.is_set():
                progress.finish = "stopped"
                break
            rate = cosine_lr(settings.learning_rate, progress.step / total, floor=0.1, warmup=settings.warmup)
            for group in optimizer.param_groups:
                group["lr"] = rate
            loss, weight, tokens = 0.0, 0, 0
            for k in range(0, len(batch), settings.micro_batch):
                if wait_while is not None:
                    progress.paused_s += pause_while(wait_while, stop, serve_waiting)
                part_loss, part_weight, part_tokens = loss_of(batch[k : k + settings.micro_batch])
                if not torch.isfinite(part_loss):
                    raise ValueError(
                        f"the training loss became {float(part_loss)} at step {progress.step + 1}: "
                        "lower the learning rate"
                    )
                (part_loss * part_weight).backward()
                loss += float(part_loss.detach()) * part_weight
                weight += part_weight
                tokens += part_tokens
            for param in parameters:  # the batch's token-weighted mean, as one pass over it would give
                if param.grad is not None:
                    param.grad /= max(weight, 1)
            loss /= max(weight, 1)
            torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.step += 1
            progress.tokens_seen += tokens
            progress.train_loss = loss
            progress.train_curve.append((progress.step, progress.train_loss))
            progress.epoch = progress.step / per_epoch
            if progress.step % every == 0 or progress.step == total:
                value = evaluate()
                progress.held_out_curve.append((progress.step, value))
                if value < progress.best_held_out:
                    progress.best_held_out, progress.best_step, since_best = value, progress.step, 0
                    best = [p.detach().clone() for p in parameters]
                else:
                    since_best += 1
            progress.elapsed_s = time.perf_counter() - start
            if since_best >= settings.patience:
                progress.finish = "early stop"
                break
            yield progress
        if progress.finish != "running":
            break
    else:
        progress.finish = "done"
    if progress.step > 0 and progress.held_out_curve[-1][0] != progress.step:
        value = evaluate()  # stopped between evaluations: the steps since the last one may be the best
        progress.held_out_curve.append((progress.step, value))
        if value < progress.best_held_out:
            progress.best_held_out, progress.best_step = value, progress.step
            best = [p.detach().clone() for p in parameters]
    with torch.no_grad():  # the run ends in its best state, whatever ended it
        for param, kept in zip(parameters, best, strict=True):
            param.copy_(kept)
    progress.elapsed_s = time.perf_counter() - start
    yield progress
