"""The 4x upscaler's speed: the model alone beside plain resampling, and what Upscale x4 adds through the app.

    python bench/upscale.py [--repeats 20]

1. In process, 2 threads, fp32: weights/emoji-upscaler on one 64x64 image (-> 256x256) and on a batch of 8,
   beside PIL's bicubic and torch's bicubic on the same image.
2. Through the running app's /image_generate (20 steps, batch 1, UNet compiled before it answers): the median
   seconds with upscale=False and with upscale=True, alternating, and their difference.
Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from running_app import ROOT, running_app


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def in_process(repeats: int) -> None:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from aigc_demo.models import EmojiUpscaler

    torch.set_num_threads(2)
    net = EmojiUpscaler.from_pretrained(ROOT / "weights" / "emoji-upscaler")
    x1, x8 = torch.rand(1, 3, 64, 64), torch.rand(8, 3, 64, 64)
    pil = Image.new("RGB", (64, 64), "white")
    with torch.inference_mode():
        rows = {
            "upscaler, 1 image": timed(lambda: net(x1), repeats),
            "upscaler, batch 8, per image": timed(lambda: net(x8), repeats) / 8,
            "torch bicubic, 1 image": timed(
                lambda: F.interpolate(x1, scale_factor=4, mode="bicubic", align_corners=False), repeats
            ),
            "PIL bicubic, 1 image": timed(lambda: pil.resize((256, 256), Image.Resampling.BICUBIC), repeats),
        }
    for name, seconds in rows.items():
        print(f"{name:<32} {seconds * 1000:8.2f} ms")


def through_app(repeats: int) -> None:
    from gradio_client import Client

    with running_app({"AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=900) as url:
        client = Client(url, verbose=False)
        seconds = {False: [], True: []}
        for i in range(repeats + 1):
            for upscale in (False, True):
                t = time.perf_counter()
                client.predict(
                    "red heart, in Twemoji style", seed=i, upscale=upscale, api_name="/image_generate"
                )
                if i:  # the first pair is a warm-up
                    seconds[upscale].append(time.perf_counter() - t)
    plain, big = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"{'/image_generate, 64 px':<32} {plain * 1000:8.1f} ms")
    print(f"{'/image_generate, Upscale x4':<32} {big * 1000:8.1f} ms  (+{(big - plain) * 1000:.1f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    in_process(args.repeats)
    through_app(max(3, args.repeats // 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
