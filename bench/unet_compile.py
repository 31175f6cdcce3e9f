"""The UNet alone, one call: eager against inductor builds, timed in interleaved rounds in one process.

    python bench/unet_compile.py [--threads 2] [--rounds 15] [--only app cacheable]

The app's image model, the inputs of a default request (guided: a UNet batch of 2 per image) at batch 1 and
8. Variants: (e) the eager UNet the app serves before compiling (bf16, oneDNN-packed linears), inductor with
frozen weights, frozen + cpp_wrapper (the app's INDUCTOR_OPTIONS), each with the SDPA attention kernel, and
the app's build: frozen + cpp_wrapper with plain matmul-softmax attention (use_math_attention). Rounds alternate the variants so
that this noisy machine's drift hits them all alike. Prints the median ms per call, the ratio to eager,
and the relative gap to eager that aigc_demo/pipelines/cpu_compile.py checks. Compiling takes ~5-7 minutes.
Not a test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

# name -> (inductor options, allow math attention)
VARIANTS = {
    "inductor, frozen weights, SDPA": ({"freezing": True}, False),
    "frozen + cpp_wrapper, SDPA": ({"freezing": True, "cpp_wrapper": True}, False),
    "frozen + cpp_wrapper, math attn (app)": ({"freezing": True, "cpp_wrapper": True}, True),
    # oneDNN's packed weights are tensors inductor's FX-graph cache cannot store; without them it can.
    "the same, weights not prepacked (cacheable)": (
        {"freezing": True, "cpp_wrapper": True, "cpp.weight_prepack": False},
        True,
    ),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls-per-round", type=int, default=5)
    p.add_argument("--only", nargs="*", default=[], help="variants whose name contains any of these words")
    args = p.parse_args()

    import copy

    import torch

    from aigc_demo.config import ImageConfig
    from aigc_demo.models import load_text_encoder
    from aigc_demo.pipelines.cpu_compile import CompiledUNet
    from aigc_demo.pipelines.diffusion import load_diffusion
    from aigc_demo.pipelines.image import ImagePipeline

    torch.set_num_threads(args.threads)
    cfg = ImageConfig(threads=args.threads, student="", gan="", compile="off")
    image = ImagePipeline.from_config(cfg)
    pipe = image.diffusion
    encoder = load_text_encoder(cfg.text_encoder)
    _, plain = load_diffusion(cfg.model, encoder, pipe.dtype, pipe.device, keep_plain_unet=True)
    defaults = image.schema.parse(prompt="x")
    examples = {batch: pipe._default_unet_inputs(batch, defaults) for batch in (1, cfg.max_batch_size)}

    runners = {"(e) eager": pipe.unet_runner}
    for name, (options, math_attention) in VARIANTS.items():
        if args.only and not any(word in name for word in args.only):
            continue
        runner = CompiledUNet(pipe.sd.unet)
        t0 = time.perf_counter()
        runner.compile(copy.deepcopy(plain), list(examples.values()), options, math_attention)
        if not runner.ready:
            print(f"{name}: {runner.state}, left out")
            continue
        print(f"{name}: compiled for batch 1 and {cfg.max_batch_size} in {time.perf_counter() - t0:.0f} s")
        runners[name] = runner

    print(f"\n{cfg.model}, {args.threads} threads, median of {args.rounds} interleaved rounds")
    print(f"{'batch':>5}  {'variant':<38} {'ms/call':>8} {'eager/this':>10} {'gap':>7}")
    for batch, inputs in examples.items():
        with torch.inference_mode():
            want = pipe.unet_runner(*inputs).float()
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(args.rounds):
                for name, runner in runners.items():
                    runner(*inputs)
                    t0 = time.perf_counter()
                    for _ in range(args.calls_per_round):
                        got = runner(*inputs)
                    times[name].append((time.perf_counter() - t0) / args.calls_per_round * 1000)
                    gap = float((got.float() - want).abs().max() / want.abs().max())
                    times.setdefault(f"gap {name}", []).append(gap)
        eager_ms = statistics.median(times["(e) eager"])
        for name in runners:
            ms = statistics.median(times[name])
            print(
                f"{batch:>5}  {name:<38} {ms:>8.2f} {eager_ms / ms:>10.2f} {max(times[f'gap {name}']):>7.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
