"""Experiment: PyTorch and llama.cpp in one process, with llama.cpp on PyTorch's thread or on one of its own.

    python bench/openmp_teams.py torch|same|separate [--compiled]

Each thread that starts OpenMP work owns a team of OpenMP threads; both libraries share one libgomp (PyTorch's).
``separate`` (the app: llama.cpp on its own compute thread) makes two teams of two on a 2-core machine, where
libgomp spins less between parallel regions; ``same`` keeps one. Prints the emoji-ldm UNet call (batch 2,
guided, 16x16 latents; ``--compiled``: through ``torch.compile``) alone, llama.cpp's decode speed, the UNet
after llama.cpp has run, and both interleaved (16 tokens, then 3 UNet calls, five times). ``torch`` runs the
UNet only. Not a test; idle machine only. The app's choice, with what it costs under load, is in
docs/serving.md ("One thread or two for llama.cpp").
"""

from __future__ import annotations

import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import aigc_demo  # noqa: F401  (the app's libgomp settings: imported before torch loads libgomp)

# isort: split
import llama_cpp
import torch
from diffusers import UNet2DConditionModel

from aigc_demo.config import ImageConfig, TextConfig
from aigc_demo.models import resolve_model_path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "separate"
    assert mode in ("torch", "same", "separate"), __doc__
    torch.set_num_threads(2)
    unet = UNet2DConditionModel.from_pretrained(
        ROOT / "weights/emoji-ldm/unet", torch_dtype=torch.float32
    ).eval()
    if "--compiled" in sys.argv:
        from aigc_demo.pipelines.cpu_compile import use_compile_cache

        use_compile_cache(ImageConfig().compile_cache)
        unet = torch.compile(unet, dynamic=False)
    latents, t = torch.randn(2, 4, 16, 16), torch.tensor([500])
    states = torch.randn(2, 16, unet.config.cross_attention_dim)

    def unet_ms(n: int = 20) -> float:
        times = []
        with torch.inference_mode():
            for _ in range(n):
                start = time.perf_counter()
                unet(latents, t, states)
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    llm: list[llama_cpp.Llama] = []

    def load_llama() -> None:
        cfg = TextConfig()
        folder, gguf = resolve_model_path(cfg.model)
        llm.append(
            llama_cpp.Llama(
                str(Path(folder) / gguf), n_ctx=512, n_threads=2, n_threads_batch=2, verbose=False
            )
        )

    def decode_tps(n: int = 48) -> float:
        model = llm[0]
        model.reset()
        model.eval(model.tokenize(b"Write about the printing press.", add_bos=True))
        start = time.perf_counter()
        for _ in range(n):
            model.eval([model.sample(temp=0)])
        return n / (time.perf_counter() - start)

    jobs: queue.Queue = queue.Queue()

    def llama_thread() -> None:
        while True:
            fn, done = jobs.get()
            done.put(fn())

    threading.Thread(target=llama_thread, daemon=True).start()

    def on_llama_thread(fn):
        if mode == "same":
            return fn()
        done: queue.Queue = queue.Queue()
        jobs.put((fn, done))
        return done.get()

    unet_ms(5)
    print(f"{mode}: UNet alone {unet_ms():.1f} ms", flush=True)
    if mode == "torch":
        return 0
    on_llama_thread(load_llama)
    on_llama_thread(decode_tps)
    print(
        f"{mode}: llama.cpp decode {statistics.median(on_llama_thread(decode_tps) for _ in range(3)):.1f} tok/s"
    )
    print(f"{mode}: UNet after llama.cpp {unet_ms():.1f} ms")
    unet_times, tps = [], []
    for _ in range(5):
        tps.append(on_llama_thread(lambda: decode_tps(16)))
        unet_times.append(unet_ms(3))
    print(
        f"{mode}: interleaved, UNet {statistics.median(unet_times):.1f} ms, llama.cpp {statistics.median(tps):.1f} tok/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
