"""Where models run: one helper picks device, dtype and thread count for every pipeline."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    device: torch.device
    dtype: torch.dtype
    reason: str


def usable_cores() -> int:
    """Cores this process may use (respects cgroup/affinity limits, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


BF16_MIN_SPEEDUP = 1.1  # bf16 rounds more than fp32: take it only where it is clearly faster


def cpu_flags() -> str:
    """The CPU's feature flags as /proc/cpuinfo lists them ("" where there is none, e.g. not Linux)."""
    try:
        return open("/proc/cpuinfo").read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 instructions (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 and a conv net runs ~20x *slower* than fp32 (measured on an AVX2-only
    EPYC), so "supports the dtype" is not enough.
    """
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


@torch.inference_mode()
def measure_bf16_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16 time for one matmul and one 3x3 convolution of the embedded UNet's sizes (~0.2 s).

    Measured rather than read off the CPU flags: an EPYC with AVX512-BF16 ran the UNet ~1.5x faster in bf16,
    while a Xeon with the same flag (no AMX) ran bf16 matmuls and convolutions at half fp32's speed.
    The two dtypes alternate and the best of each counts, so a burst of other load does not pick a side.
    """

    def work(dtype: torch.dtype):
        a, b = torch.randn(768, 768, dtype=dtype), torch.randn(768, 768, dtype=dtype)
        x, w = torch.randn(4, 192, 16, 16, dtype=dtype), torch.randn(192, 192, 3, 3, dtype=dtype)
        return lambda: (a @ b, torch.nn.functional.conv2d(x, w, padding=1))

    runs = {dtype: work(dtype) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats + 1):  # the first round builds the oneDNN kernels
        for dtype, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[dtype] = min(best[dtype], time.perf_counter() - t0)
    return best[torch.float32] / best[torch.bfloat16]


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 and it measures clearly faster than fp32 here (once per process)."""
    if not cpu_has_native_bf16():
        return False
    t0 = time.perf_counter()
    speedup = measure_bf16_speedup()
    log.info(
        "bf16 vs fp32 on this CPU: %.2fx (measured in %.0f ms); bf16 %s",
        speedup,
        (time.perf_counter() - t0) * 1e3,
        "used" if speedup >= BF16_MIN_SPEEDUP else "not used",
    )
    return speedup >= BF16_MIN_SPEEDUP


def pick_device(prefer_half_on_cpu: bool = True) -> DevicePlan:
    """CUDA when present (bf16 if supported, else fp16); else CPU with bf16 only where it is native and faster."""
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return DevicePlan(torch.device("cuda"), dtype, f"CUDA ({torch.cuda.get_device_name(0)})")
    if prefer_half_on_cpu and cpu_has_fast_bf16():
        return DevicePlan(
            torch.device("cpu"),
            torch.bfloat16,
            "CPU with native bf16 (AVX512-BF16/AMX), measured faster than fp32",
        )
    return DevicePlan(torch.device("cpu"), torch.float32, "CPU: fp32 (bf16 not native or not faster here)")


def configure_threads(threads: int | None = None) -> int:
    """One intra-op thread per usable core: oversubscribing 2 cores makes everything slower."""
    n = threads or usable_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def gpu_task(fn):
    """Mark a handler as GPU work for Hugging Face ZeroGPU Spaces; a no-op everywhere else."""
    try:
        import spaces  # only present on Spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)
