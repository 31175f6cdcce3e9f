"""Device and dtype choice: bf16 on a CPU only where it is native *and* measured faster than fp32."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_demo import device
from aigc_demo.training import common


@pytest.fixture()
def fresh_choice():
    device.cpu_has_fast_bf16.cache_clear()
    yield
    device.cpu_has_fast_bf16.cache_clear()


@pytest.mark.parametrize(
    ("native", "speedup", "want"),
    [
        (False, 9.9, False),  # emulated bf16: never, and not even measured
        (True, 0.5, False),  # the flag, but half fp32's speed (a Xeon without AMX)
        (True, 1.05, False),  # within noise of fp32: keep fp32's precision
        (True, 1.5, True),  # clearly faster (an EPYC with AVX512-BF16)
    ],
)
def test_bf16_only_where_native_and_measured_faster(monkeypatch, fresh_choice, native, speedup, want):
    measured = []
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(device, "measure_bf16_speedup", lambda: measured.append(1) or speedup)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    plan = device.pick_device()
    assert plan.dtype == (torch.bfloat16 if want else torch.float32)
    assert common.resolve_autocast("auto") is want
    assert len(measured) == (1 if native else 0)  # measured once per process, then remembered
    assert device.pick_device(prefer_half_on_cpu=False).dtype == torch.float32
    assert common.resolve_autocast("on") and not common.resolve_autocast("off")


def test_the_measurement_is_a_real_ratio():
    ratio = device.measure_bf16_speedup(repeats=1)
    assert math.isfinite(ratio) and 1e-4 < ratio < 1e4  # emulated bf16 measures ~0.01x on CPUs without it


@pytest.mark.parametrize("slow", [True, False])
def test_training_keeps_the_dtype_whose_real_step_is_faster(monkeypatch, slow):
    """The matmul probe can favour bf16 where a whole training step is slower: the step decides."""
    import time

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    calls = []

    def step(autocast: bool) -> None:
        calls.append(autocast)
        time.sleep(0.05 if autocast == slow else 0.0)

    assert common.resolve_autocast("auto", step) is (not slow)
    assert calls.count(True) == calls.count(False) >= 2
    assert common.resolve_autocast("off", step) is False and len(calls) == 6  # forced: nothing timed


# The sequence that died with SIGILL on the AMX Xeon while llama.cpp and PyTorch shared a thread (ggml's AMX
# kernels configure the tiles once per thread, oneDNN's bf16 kernels release them): llama.cpp, bf16 work on this
# thread, llama.cpp again. The engine runs on its own thread (aigc_demo/compute.py), so it survives and gives the
# same greedy tokens, with whichever llama.cpp build is installed.
_BF16_THEN_LLAMA = """
from itertools import islice

import torch
from aigc_demo.compute import compute_thread
from aigc_demo.config import TextConfig
from aigc_demo.pipelines.text import GenerationParams
from aigc_demo.pipelines.text_engines import LlamaCppEngine

engine = LlamaCppEngine.from_config(TextConfig())
ids = engine.tokenize("Tell me a story about a lighthouse.", True)
params = GenerationParams(max_new_tokens=4, temperature=0, seed=0)
first = list(islice(engine.generate_ids(ids, params), 4))  # the engine streams until its caller stops


def bf16_work():
    x = torch.randn(2, 64, 16, 16, dtype=torch.bfloat16)
    torch.nn.functional.conv2d(x, torch.randn(64, 64, 3, 3, dtype=torch.bfloat16), padding=1)
    w = torch.randn(512, 512, dtype=torch.bfloat16)
    torch.nn.functional.linear(torch.randn(256, 512, dtype=torch.bfloat16), w)


for run_torch in (bf16_work, lambda: compute_thread().run(bf16_work)):  # here, and where the app's models run
    run_torch()
    assert list(islice(engine.generate_ids(ids, params), 4)) == first
print("BOTH-RAN")
"""


def test_llama_cpp_survives_bf16_work_in_the_same_process():
    pytest.importorskip("llama_cpp")
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", _BF16_THEN_LLAMA],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"exit {done.returncode} (-4 = SIGILL): {done.stderr[-2000:]}"
    assert done.stdout.strip().splitlines()[-1] == "BOTH-RAN"
