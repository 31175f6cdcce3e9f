"""Shared plumbing for the training scripts (never imported by the UI).

Threads, seeds, autocast policy, batching, CSV/PNG loss logs, the time budget,
image metrics and grids, and the "only publish if better" comparison for
``weights/<model>/``. The loop itself is in ``loop.py``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aigc_demo.data.paths import REPO_ROOT

logger = logging.getLogger(__name__)

RUNS_DIR = REPO_ROOT / "runs"
WEIGHTS_DIR = REPO_ROOT / "weights"
CHECKPOINT_SECONDS = 180.0


def setup(threads: int, seed: int) -> None:
    """Pin thread count (the machine is shared) and seed every RNG."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def resolve_autocast(mode: str, step: Callable[[bool], None] | None = None) -> bool:
    """--autocast auto: bf16 autocast only where the CPU has native bf16 and it measures faster than fp32.

    Emulated bf16 convolutions were 10-50x slower than fp32 (an AVX2-only VM), and on a Xeon with the
    AVX512-BF16 flag but no AMX a UNet training step took 4.6-5.1 s with autocast against 2.8 s without.
    The device probe times matmuls, which can favour bf16 where a whole training step does not (an AMX
    Xeon: matmul 3.3x faster in bf16, the UNet step 3.37 s against 3.03 s), so a script that passes
    ``step`` (one forward and backward, autocast on or off) has the choice made on its own step.
    """
    if mode != "auto":
        return mode == "on"
    from aigc_demo.device import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        return False
    return step is None or faster_with_autocast(step)


def loss_probe(model: torch.nn.Module, loss: Callable[[bool], torch.Tensor]) -> Callable[[bool], None]:
    """A ``step`` for resolve_autocast: the training loss on a fixed batch (autocast on or off) and its
    backward pass; leaves no gradients behind."""

    def step(autocast: bool) -> None:
        loss(autocast).backward()
        model.zero_grad(set_to_none=True)

    return step


def faster_with_autocast(step: Callable[[bool], None], repeats: int = 2) -> bool:
    seconds = {}
    for enabled in (False, True):
        step(enabled)  # the first call builds oneDNN's kernels
        start = time.perf_counter()
        for _ in range(repeats):
            step(enabled)
        seconds[enabled] = (time.perf_counter() - start) / repeats
    logger.info("training step: fp32 %.2f s, bf16 autocast %.2f s", seconds[False], seconds[True])
    return seconds[True] < seconds[False]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W in [0, 1], channels_last (faster convs)."""
    t = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last)


class BatchSampler:
    """Endless shuffled batches over fixed indices, reproducible from (seed, epoch)."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, epoch: int = 0) -> None:
        self.indices = indices
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self._order: np.ndarray = np.empty(0, np.int64)
        self._pos = 0

    def next(self) -> np.ndarray:
        if self._pos + self.batch_size > len(self._order):
            rng = np.random.default_rng(self.seed + self.epoch)
            self._order = rng.permutation(self.indices)
            self._pos = 0
            self.epoch += 1
        batch = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return np.sort(batch)


def hflip_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips: emoji are mostly mirror-plausible; doubles variety cheaply."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    return x


# -- metrics --------------------------------------------------------------
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-image mean SSIM (uniform 7x7 window, as skimage's default), images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, 1, pad, count_include_pad=False)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move every ``ema`` weight towards ``model``'s by ``1 - decay``."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Gradient energy per image (mean squared difference of neighbours): the edge statistic. Blur spreads an
    edge's step over more pixels, which keeps the summed gradient but lowers its energy."""
    dx, dy = image_gradients(images)
    return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)


class PerceptualFeatures(torch.nn.Module):
    """The LDM autoencoder encoder's first two stages: the perceptual-loss feature space (no ImageNet VGG
    here). Frozen; images in [0, 1]."""

    def __init__(self, autoencoder) -> None:
        super().__init__()
        enc = autoencoder.encoder
        self.conv_in, self.stages = enc.conv_in, enc.down_blocks[:2]
        self.requires_grad_(False).eval()

    @classmethod
    def from_weights(cls, folder: Path = WEIGHTS_DIR / "autoencoder-kl-emoji") -> PerceptualFeatures:
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval())

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.conv_in(image * 2 - 1), []
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Summed L1 between the two images' features."""
        return sum(F.l1_loss(fa, fb) for fa, fb in zip(self(a), self(b), strict=True))


# -- images -----------------------------------------------------------------
def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """(N, 3, H, W) in [0, 1] -> PNG grid with 2px white gutters."""
    from PIL import Image

    imgs = (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, _ = imgs.shape
    rows = math.ceil(n / nrow)
    g = 2
    canvas = np.full((rows * (h + g) + g, nrow * (w + g) + g, 3), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, nrow)
        canvas[g + r * (h + g) : g + r * (h + g) + h, g + c * (w + g) : g + c * (w + g) + w] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


# -- logging ----------------------------------------------------------------
class LossLog:
    """Append-only CSV of training losses (survives resumes) plus a PNG plot.

    ``plot`` publishes the CSV beside the PNG, and a new run seeds its log from that ``history``: runs/ is
    not committed, so without it a fresh machine's plot would start at the step it resumed from."""

    def __init__(self, path: Path, fields: list[str], history: Path | None = None) -> None:
        self.path = path
        self.fields = ["step", "wall_seconds", *fields]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if history is not None and history.is_file():
                shutil.copyfile(history, path)
            else:
                with open(path, "w", newline="") as fh:
                    csv.writer(fh).writerow(self.fields)
        self._add_new_columns()

    def _add_new_columns(self) -> None:
        """A log begun before a script logged some field gets that column at the end; its old rows leave it
        empty. Rows are appended in the file's column order."""
        with open(self.path, newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0] if rows else []
        missing = [f for f in self.fields if f not in header]
        self.columns = header + missing
        if missing:
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows([self.columns, *(r + [""] * len(missing) for r in rows[1:])])
            os.replace(tmp, self.path)

    def keep_until(self, step: int) -> None:
        """Drop rows logged after ``step``: a run killed after its last checkpoint resumes from that step, and
        its later rows would otherwise appear twice."""
        with open(self.path, newline="") as fh:
            rows = list(csv.reader(fh))

        def logged_by_then(row: list[str]) -> bool:  # a row torn by the kill is dropped too
            try:
                return int(float(row[0])) <= step
            except (IndexError, ValueError):
                return False

        kept = rows[:1] + [r for r in rows[1:] if logged_by_then(r)]
        if len(kept) < len(rows):
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows(kept)
            os.replace(tmp, self.path)  # a kill during the rewrite leaves the old log whole

    def append(self, values: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([values.get(k, "") for k in self.columns])

    def plot(self, out: Path, columns: list[str], title: str, log_y: bool = True) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(self.path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            return
        steps = [int(r["step"]) for r in rows]
        fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2))
        for ax, col in zip(np.atleast_1d(axes), columns, strict=True):
            # A column a run added later (a new loss term) is empty in the rows before it.
            kept = [(s, float(r[col])) for s, r in zip(steps, rows, strict=True) if r.get(col)]
            if not kept:
                continue
            col_steps, vals = [s for s, _ in kept], [v for _, v in kept]
            ax.plot(col_steps, vals, lw=0.6, alpha=0.4)
            k = max(1, len(vals) // 50)  # moving average for readability
            smooth = np.convolve(vals, np.ones(k) / k, mode="valid")
            ax.plot(col_steps[k - 1 :], smooth, lw=1.4)
            ax.set_title(col)
            ax.set_xlabel("step")
            if log_y and min(vals) > 0:
                ax.set_yscale("log")
        fig.suptitle(title)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        shutil.copyfile(self.path, out.with_suffix(".csv"))  # the history the next run continues
        plt.close(fig)


# -- checkpoints -------------------------------------------------------------
@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    wall_seconds: float = 0.0  # cumulative training time across all runs
    runs: int = 0
    # One entry per run: {"first_step", "last_step", "from", "to"} learning rates. runs/ is not committed, so
    # the published metrics.json carries it too and a run started from the weights continues it.
    lr_history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def load_state(run_dir: Path) -> TrainState | None:
    path = run_dir / "state.json"
    if not path.exists():
        return None
    return TrainState(**json.loads(path.read_text()))


def rmtree(path: Path) -> None:
    shutil.rmtree(path)


class Timer:
    """Tracks the --minutes budget and the checkpoint cadence.

    SIGTERM or Ctrl+C ends the budget early instead of killing the run, so the script still checkpoints,
    evaluates and (if better) publishes: `kill -TERM <pid>` is the way to stop a long run on time.
    """

    def __init__(self, minutes: float, checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.start = time.monotonic()
        self.budget = minutes * 60.0
        self.every = checkpoint_seconds
        self.last_checkpoint = self.start
        self.stop_requested = False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        if self.stop_requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        logging.getLogger(__name__).warning(
            "stop requested: finishing the step, then checkpoint and evaluate"
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def done(self) -> bool:
        return self.stop_requested or self.elapsed() >= self.budget

    def checkpoint_due(self) -> bool:
        if time.monotonic() - self.last_checkpoint >= self.every:
            self.last_checkpoint = time.monotonic()
            return True
        return False


# -- publishing ---------------------------------------------------------------
def previous_metric(weights_dir: Path, key: str) -> float | None:
    path = weights_dir / "metrics.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(key)


def is_better(new: float, old: float | None, higher_is_better: bool) -> bool:
    if old is None or not math.isfinite(old):
        return True
    return new > old if higher_is_better else new < old


def format_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def machine_class() -> str:
    """What a card names when it states a time: "2-core AMD EPYC", "2-core Intel Xeon ... with AMX"."""
    name, flags = "CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "CPU":
                name = " ".join(value.replace("(R)", "").replace("(TM)", "").replace(" CPU", "").split())
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return f"{os.cpu_count()}-core {name}" + (" with AMX" if "amx_tile" in flags else "")


def trained_on(metrics: dict) -> str:
    """ "2-core AMD EPYC, 1 thread, 2026-11-30": where and when a card's times were measured."""
    threads = metrics.get("threads", 1)
    return f"{metrics['machine']}, {threads} thread{'s' if threads > 1 else ''}, {metrics['date']}"


DATA_LICENSE_NOTE = (
    "The training data mixes Noto Color Emoji (SIL OFL 1.1), OpenMoji (CC BY-SA 4.0) and "
    "Twemoji graphics (CC BY 4.0); see `aigc_demo/data/CREDITS.md`. Because OpenMoji is "
    "share-alike, these weights are treated as an adaptation of it and are released under "
    "**CC BY-SA 4.0**, with attribution to OpenMoji, Twemoji (Twitter, Inc and other "
    "contributors) and Google's Noto Emoji."
)


def state_from_published(weights_dir: Path) -> TrainState:
    """Step count and cumulative time of committed weights, so a run started from them keeps counting."""
    path = weights_dir / "metrics.json"
    prior = json.loads(path.read_text()) if path.exists() else {}
    return TrainState(
        step=prior.get("steps", 0),
        wall_seconds=prior.get("cumulative_train_seconds", 0.0),
        runs=prior.get("runs", 0),
        lr_history=prior.get("lr_history", []),
    )


def time_bar(minutes: float, desc: str):
    """A progress bar over the run's time budget (seconds), with loss figures in its postfix."""
    from tqdm import tqdm

    return tqdm(
        total=minutes * 60,  # a float: with int() a short budget's last fraction overflows the bar
        desc=desc,
        unit="s",
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s {postfix}",
    )
