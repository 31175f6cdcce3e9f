"""bf16 against fp32 on this CPU, side by side: is bf16 worth it here?

    python bench/bf16.py [--threads 2]

Prints, for each dtype, a 2048x2048 matmul and a UNet-sized 3x3 convolution (GFLOP/s), the embedded
emoji-ldm UNet's forward pass at batch 2 and 16 (ms), and one training step of that UNet at batch 64 (s, fp32
against bf16 autocast as the training scripts use it), with the fp32/bf16 ratio of each, and the probe the app
runs at start (``aigc_demo.device.measure_bf16_speedup``) with the choice it makes. Not a test: run it on an idle
machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def seconds(fn, repeats: int) -> float:
    fn()  # the first call builds the oneDNN kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel

    from aigc_demo.device import BF16_MIN_SPEEDUP, cpu_has_native_bf16, measure_bf16_speedup

    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}; native bf16 flag: {cpu_has_native_bf16()}")
    fp32, bf16 = torch.float32, torch.bfloat16
    rows = []

    def row(name: str, unit: str, measure) -> None:
        a, b = measure(fp32), measure(bf16)
        faster = b / a if unit == "GFLOP/s" else a / b  # a rate, or a time
        print(
            f"{name:<40} fp32 {a:9.3f}  bf16 {b:9.3f} {unit:<8} bf16 is {faster:.2f}x fp32's speed",
            flush=True,
        )
        rows.append(faster)

    n = 2048

    def matmul(dtype):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        return 2 * n**3 / seconds(lambda: a @ b, args.repeats) / 1e9

    def conv(dtype):
        x, w = torch.randn(16, 192, 16, 16, dtype=dtype), torch.randn(192, 192, 3, 3, dtype=dtype)
        flops = 2 * 16 * 192 * 192 * 9 * 16 * 16
        with torch.inference_mode():
            return flops / seconds(lambda: F.conv2d(x, w, padding=1), args.repeats) / 1e9

    row(f"matmul {n}x{n}", "GFLOP/s", matmul)
    row("conv 3x3, 16x192x16x16", "GFLOP/s", conv)

    folder = Path(__file__).resolve().parent.parent / "weights" / "emoji-ldm" / "unet"
    for batch in (2, 16):

        def forward(dtype, batch=batch):
            unet = UNet2DConditionModel.from_pretrained(folder, torch_dtype=dtype).eval()
            x, e = torch.randn(batch, 4, 16, 16, dtype=dtype), torch.randn(batch, 24, 384, dtype=dtype)
            with torch.inference_mode():
                return 1e3 * seconds(lambda: unet(x, 500, encoder_hidden_states=e), args.repeats)

        row(f"emoji-ldm UNet forward, batch {batch}", "ms", forward)

    def train_step(dtype):
        unet = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).train()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
        x, e = torch.randn(64, 4, 16, 16), torch.randn(64, 24, 384)
        t = torch.randint(0, 1000, (64,))

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == bf16):
                pred = unet(x, t, encoder_hidden_states=e).sample
            loss = pred.float().pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return seconds(step, args.repeats)

    row("UNet training step, batch 64 (autocast)", "s", train_step)

    probe = statistics.median(measure_bf16_speedup() for _ in range(3))
    choice = "bf16" if probe >= BF16_MIN_SPEEDUP else "fp32"
    print(f"the app's start-up probe: bf16 is {probe:.2f}x fp32's speed -> the app uses {choice} here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
