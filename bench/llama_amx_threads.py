"""Experiment: llama.cpp with its AMX kernels beside bf16 PyTorch, on one thread or on two.

    python bench/llama_amx_threads.py same     # both on one thread: dies with SIGILL after the bf16 work
    python bench/llama_amx_threads.py split    # llama.cpp on its own thread: survives
    OMP_WAIT_POLICY= python bench/llama_amx_threads.py split   # the same with libgomp's default spinning

ggml's AMX kernels load the tile configuration once per thread; oneDNN releases it after each bf16 call. Two
threads give two OpenMP teams, so oneDNN never runs on ggml's threads, but more OpenMP threads than cores make
libgomp spin less between parallel regions. ``import aigc_demo`` sets OMP_WAIT_POLICY=ACTIVE and
GOMP_SPINCOUNT=300000 for that (aigc_demo/__init__.py); an empty OMP_WAIT_POLICY gives libgomp's defaults back
(libgomp warns about the empty value). The app's engine always runs on its own thread, so ``same`` calls its
on-this-thread generator directly. Prints per line: TTFT ms, decode tokens/s, the first greedy ids; and the time
of a fixed bf16 conv/matmul workload (its first call builds oneDNN's kernels, so it is no speed comparison).
On a 2-core AMX Xeon (2026-11-30, idle, two runs of each, libgomp's defaults unless said): `same` exits
with 132 (SIGILL) at the first llama.cpp call after the bf16 work; `split` decodes 102-141 tok/s before the
bf16 work and 73-82 after, and 120-130 before and 127-130 after with OMP_WAIT_POLICY=ACTIVE. The whole pair
(text and the image pipeline) is measured in docs/performance.md, "Two compute threads". Not a test.
"""

from __future__ import annotations

import itertools
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from aigc_demo.config import TextConfig  # noqa: E402
from aigc_demo.pipelines.text import GenerationParams  # noqa: E402
from aigc_demo.pipelines.text_engines import LlamaCppEngine  # noqa: E402

PROMPT = "Write a detailed essay about the history of the printing press."
NEW_TOKENS = 128


def decode(generate, ids, params) -> tuple[float, float, list[int]]:
    t0 = time.perf_counter()
    tokens = generate(ids, params)  # streams until its caller stops
    first = next(tokens)
    t1 = time.perf_counter()
    rest = list(itertools.islice(tokens, NEW_TOKENS - 1))
    t2 = time.perf_counter()
    return round((t1 - t0) * 1e3, 1), round((NEW_TOKENS - 1) / (t2 - t1), 1), [first] + rest[:8]


def bf16_work() -> float:
    """ms for 20 rounds of a conv, a matmul and an activation of the emoji UNet's sizes, in bf16."""
    torch.manual_seed(0)
    x = torch.randn(16, 192, 16, 16, dtype=torch.bfloat16)
    w = torch.randn(192, 192, 3, 3, dtype=torch.bfloat16)
    a = torch.randn(16 * 256, 192, dtype=torch.bfloat16)
    b = torch.randn(192, 768, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    for _ in range(20):
        torch.nn.functional.conv2d(x, w, padding=1)
        a @ b
        torch.nn.functional.silu(x) + x
    return round((time.perf_counter() - t0) * 1e3, 1)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "split"
    text_thread = ThreadPoolExecutor(1)
    torch_thread = text_thread if mode == "same" else ThreadPoolExecutor(1)
    engine = text_thread.submit(LlamaCppEngine.from_config, TextConfig()).result()
    ids = engine.tokenize(PROMPT, True)
    params = GenerationParams(max_new_tokens=NEW_TOKENS, temperature=0, seed=0)
    # generate_ids hops to the engine's own thread; _generate_here runs on the caller's (the `same` case).
    generate = engine._generate_here if mode == "same" else engine.generate_ids
    print(mode, "text before bf16:", text_thread.submit(decode, generate, ids, params).result(), flush=True)
    for _ in range(2):
        print(mode, "bf16 work ms:", torch_thread.submit(bf16_work).result(), flush=True)
        print(
            mode, "text after bf16:", text_thread.submit(decode, generate, ids, params).result(), flush=True
        )


if __name__ == "__main__":
    main()
