"""Where models run: one helper picks device, dtype and thread count for every pipeline."""

from __future__ import annotations

import functools
import logging
import os
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


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True only where the CPU computes bf16 natively (AVX512-BF16 or AMX).

    Elsewhere PyTorch emulates bf16 and a conv net runs ~20x *slower* than fp32 (measured on an AVX2-only
    EPYC), so "supports the dtype" is not enough.
    """
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(prefer_half_on_cpu: bool = True) -> DevicePlan:
    """CUDA when present (bf16 if supported, else fp16); else CPU with bf16 only where it is native."""
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return DevicePlan(torch.device("cuda"), dtype, f"CUDA ({torch.cuda.get_device_name(0)})")
    if prefer_half_on_cpu and cpu_has_fast_bf16():
        return DevicePlan(
            torch.device("cpu"),
            torch.bfloat16,
            "CPU with native bf16 (AVX512-BF16/AMX)",
        )
    return DevicePlan(torch.device("cpu"), torch.float32, "CPU without native bf16: fp32")


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
