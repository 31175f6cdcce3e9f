"""Concurrent image requests share UNet calls.

On a CPU a small UNet call costs less per picture when it carries several: on a 2-core Xeon without AMX
(2026-12-01) a 64x64 guided picture-step took 118 ms alone and 36 ms as one of eight in a call with the eager
UNet, 50-63 ms and 28-32 ms compiled. Requests served at once advance a step per compute job
in turn (``compute.py``), so when one request's step comes, every other request served at once is waiting
with its next UNet input ready. ``StepBatcher`` makes those inputs one call: the first request to need its
output runs the call for all of them, the others find theirs already made when their turn comes.

Each request keeps its own seed, scheduler, guidance and Stop: only the UNet forward pass is shared. Inputs
of different requests differ only in their timestep (requests started at different moments), which the UNet
takes per sample. A call made alone is exactly the unbatched call; in a batch an image can differ from the
same request alone by rounding (a level or two of 255: float sums in another order).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

ROWS_OF_ONE_IMAGE = 2  # a guided image: unconditional and conditional rows


@dataclass(eq=False)
class UNetCall:
    """One request's next UNet input, and its output once some request's turn has made it."""

    sample: torch.Tensor
    timestep: torch.Tensor
    states: torch.Tensor
    out: torch.Tensor | None = None
    compiled: bool = False  # whether the call that made ``out`` ran the compiled UNet
    batched_with: int = 0  # how many other requests' inputs shared that call

    @property
    def key(self) -> tuple:
        """Inputs with the same key can be stacked into one call."""
        return (tuple(self.sample.shape[1:]), tuple(self.states.shape[1:]), self.sample.dtype)


class StepBatcher:
    """Pending UNet calls of the requests a generator serves, made together (at most ``max_samples`` rows)."""

    def __init__(self, runner, max_samples: int = 16):
        self.runner = runner  # (sample, timestep, states) -> output, e.g. CompiledUNet
        self.max_samples = max_samples
        self._pending: list[UNetCall] = []
        self._lock = threading.Lock()  # requests run on one compute thread; closing may come from another

    def register(self, sample: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor) -> UNetCall:
        """A request's next input: from now on any request's turn may compute it."""
        call = UNetCall(sample, timestep, states)
        with self._lock:
            self._pending.append(call)
        return call

    def withdraw(self, call: UNetCall | None) -> None:
        """A request that stops or ends: its input leaves the queue (an output already made is dropped)."""
        with self._lock:
            if call in self._pending:
                self._pending.remove(call)

    def result(self, call: UNetCall) -> UNetCall:
        """``call`` with its output: made by an earlier turn, or now, together with every compatible input
        waiting (oldest first, ``call`` always included)."""
        with self._lock:
            if call.out is not None:
                return call
            batch = self._take(call)
        self._run(batch)
        return call

    def _take(self, call: UNetCall) -> list[UNetCall]:
        """``call`` and the compatible inputs waiting, out of the queue."""
        batch, rows = [call], call.sample.shape[0]
        for other in self._pending:
            if other is call or other.key != call.key:
                continue
            if rows + other.sample.shape[0] > self.max_samples:
                continue  # a big request waits for a call of its own; smaller ones behind it still fit
            batch.append(other)
            rows += other.sample.shape[0]
        for taken in batch:
            self._pending.remove(taken)
        return batch

    def _run(self, batch: list[UNetCall]) -> None:
        sizes = [c.sample.shape[0] for c in batch]
        sample = batch[0].sample if len(batch) == 1 else torch.cat([c.sample for c in batch])
        states = batch[0].states if len(batch) == 1 else torch.cat([c.states for c in batch])
        out = self.runner(sample, row_timesteps([c.timestep for c in batch], sizes), states)
        compiled = bool(getattr(self.runner, "last_call_compiled", False))
        for c, part in zip(batch, out.split(sizes), strict=True):
            c.out, c.compiled, c.batched_with = part, compiled, len(batch) - 1


def row_timesteps(timesteps: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """The timestep as one image's call gives it (a scalar for its 1-2 rows), else one per row: the UNet
    broadcasts a scalar to every row, so both mean the same, and a call of many rows has one shape whatever
    steps its requests are at (the shape the compiled UNet is made for, ``DiffusionGenerator.compile``)."""
    if sum(sizes) <= ROWS_OF_ONE_IMAGE:
        return timesteps[0]
    return torch.cat([t.reshape(-1).expand(n) for t, n in zip(timesteps, sizes, strict=True)])
