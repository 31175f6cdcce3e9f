"""Latent benchmark: the latency of one slider move, the app's pipeline vs a plain module call.

    python bench/latent.py [--runs 200] [--threads 1]

One "update" is what the Latent tab does when a slider moves: decode one latent and encode the image as
PNG at display size (upscaled with NEAREST). For each model:

(a) ours: ``LatentPipeline.steer`` (exploration VAE: PCA sliders) or ``.decode`` (spatial autoencoder),
    then ``imaging.upscale`` + ``imaging.png_bytes`` (PNG compress_level=1);
(b) plain: ``model.decode`` under ``torch.no_grad``, to PIL, NEAREST resize, ``Image.save`` default PNG.

Uses the committed weights when present (weights/vae-emoji, weights/autoencoder-kl-emoji), else a random
model of the same config (same cost). Prints median and p90 ms and the ratio; the target is < 30 ms per
update. Not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import time
from collections.abc import Callable

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from aigc_demo.config import (
    WEIGHTS_DIR,  # noqa: E402
    LatentConfig,  # noqa: E402
)
from aigc_demo.imaging import png_bytes, upscale  # noqa: E402
from aigc_demo.pipelines.latent import LatentPipeline  # noqa: E402

TARGET_MS = 30.0


def timed(fn: Callable[[int], object], runs: int, warmup: int = 10) -> tuple[float, float]:
    """Median and p90 in ms over ``runs`` calls (each call gets its own index, so inputs vary)."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def exploration_pipeline() -> tuple[LatentPipeline, str]:
    folder = WEIGHTS_DIR / "vae-emoji"
    if (folder / "config.json").is_file():
        return LatentPipeline.from_config(LatentConfig(model=str(folder), threads=1)), str(folder)
    from aigc_demo.models import EmojiVAE

    torch.manual_seed(0)
    return LatentPipeline(EmojiVAE()), "random EmojiVAE (default config; weights/vae-emoji not found)"


def spatial_pipeline() -> tuple[LatentPipeline, str]:
    folder = WEIGHTS_DIR / "autoencoder-kl-emoji"
    if (folder / "config.json").is_file():
        return LatentPipeline.from_config(LatentConfig(model=str(folder), threads=1)), str(folder)
    from aigc_demo.training.train_autoencoder import new_model

    torch.manual_seed(0)
    return LatentPipeline(new_model()), "random AutoencoderKL (train_autoencoder.new_model config)"


def plain_update(
    model: torch.nn.Module, kind: str, scale: float, display: int
) -> Callable[[np.ndarray], bytes]:
    """What a straightforward script does: module call, PIL, default PNG."""

    def update(z: np.ndarray) -> bytes:
        with torch.no_grad():
            t = torch.from_numpy(z)[None]
            x = model.decode(t) if kind == "vector" else model.decode(t / scale).sample * 0.5 + 0.5
        arr = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
        img = img.resize((display, display), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    return update


def bench_model(name: str, pipe: LatentPipeline, source: str, runs: int) -> None:
    display = pipe.cfg.display_size
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((runs + 16, *pipe.latent_shape)).astype(np.float32)
    # Slider positions in std units, as the UI sends them (no atlas: no sliders, a plain decode).
    coeffs = rng.uniform(-3, 3, (runs + 16, pipe.directions)).round(1)

    def ours(i: int) -> bytes:
        return png_bytes(upscale(pipe.steer(latents[i], coeffs[i]), display))

    # The plain call gets its own fp32 copy in the default memory format (the pipeline may run bf16,
    # channels_last).
    module = copy.deepcopy(pipe.module).float().to(memory_format=torch.contiguous_format)
    scale = float(getattr(module.config, "scaling_factor", 1.0)) if pipe.kind == "spatial" else 1.0
    plain = plain_update(module, pipe.kind, scale, display)
    shown = upscale(pipe.decode(latents[0]), display)

    results = {
        "ours (steer/decode + png_bytes)": timed(ours, runs),
        "plain (model.decode + PIL default PNG)": timed(lambda i: plain(latents[i]), runs),
        "  ours, steer/decode only": timed(lambda i: pipe.steer(latents[i], coeffs[i]), runs),
        "  ours, png_bytes only": timed(lambda i: png_bytes(shown), runs),
    }
    print(f"\n== {name}: {source}")
    print(
        f"   {pipe.kind} latent {pipe.latent_shape}, {pipe.image_size} px -> PNG {shown.size[0]} px "
        f"({len(png_bytes(shown))} bytes)"
    )
    print(f"   sliders: {f'PCA steer, {pipe.directions} directions' if pipe.directions else 'plain decode'}")
    for label, (median, p90) in results.items():
        print(f"   {label:42s} median {median:7.2f} ms   p90 {p90:7.2f} ms")
    ours_med = results["ours (steer/decode + png_bytes)"][0]
    plain_med = results["plain (model.decode + PIL default PNG)"][0]
    verdict = "OK" if ours_med < TARGET_MS else "OVER"
    print(
        f"   ratio plain/ours (median): {plain_med / ours_med:.2f}x   target < {TARGET_MS:.0f} ms: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.runs} runs each")
    for name, factory in (
        ("exploration VAE", exploration_pipeline),
        ("spatial autoencoder", spatial_pipeline),
    ):
        pipe, source = factory()
        torch.set_num_threads(args.threads)  # from_config may have configured the default
        bench_model(name, pipe, source, args.runs)


if __name__ == "__main__":
    main()
