"""The first minutes after a start, as the first visitor meets them.

    python bench/startup.py [--minutes 4] [--env AIGC_IMAGE_COMPILE=off ...]
    python bench/startup.py --env AIGC_IMAGE_COMPILE_CACHE=/tmp/new    # a first start: nothing cached
    python bench/startup.py --env AIGC_IMAGE_COMPILE_CACHE=/tmp/new    # again: a restart on this machine

Starts app.py as served (the UNet compiles before serving when its kernels are in the compile cache, else in
the background, unless --env says otherwise) and, from the moment it answers, alternates a greedy 64-token ``/chat`` and a batch-1 ``/image_generate`` (20 DPM++ 2M
steps) for ``--minutes``. Prints each sample (seconds since the app answered, chat first token and tokens/s,
image seconds and which UNet served it), then the medians of the first minute, of the samples taken while
the background compile ran, and of the last minute, with their ratios to the last minute (steady state).
Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from running_app import running_app

PROMPT = "grinning face, in Noto Color Emoji style"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the app")
    args = ap.parse_args()
    from gradio_client import Client

    env = dict(item.split("=", 1) for item in args.env)
    t_launch = time.time()
    with running_app(env, start_timeout_s=600) as url:
        t0 = time.time()
        print(f"answered {t0 - t_launch:.0f} s after launch", flush=True)
        client = Client(url, verbose=False)
        samples = []
        i = 0
        while time.time() - t0 < args.minutes * 60:
            at = time.time() - t0
            chat = client.predict(
                "Write a short story about a lighthouse keeper.",
                max_new_tokens=64,
                temperature=0.0,
                seed=0,
                api_name="/chat",
            )
            _, image = client.predict(PROMPT, num_inference_steps=20, seed=i, api_name="/image_generate")
            i += 1
            sample = (
                at,
                chat["time_to_first_token_s"],
                chat["tokens_per_s"],
                image["seconds"],
                image["unet"],
            )
            samples.append(sample)
            print(
                f"{at:6.0f} s  chat first {sample[1] * 1e3:4.0f} ms, {sample[2]:5.1f} tok/s  |  "
                f"image {sample[3]:5.2f} s ({sample[4]})",
                flush=True,
            )

    def medians(rows) -> tuple[float, float, float]:
        return tuple(statistics.median(r[k] for r in rows) for k in (1, 2, 3))  # type: ignore[return-value]

    end = samples[-1][0]
    windows = {
        "first minute": [s for s in samples if s[0] < 60],
        "while compiling": [s for s in samples if s[4] != "compiled"],
        "last minute": [s for s in samples if s[0] >= end - 60],
    }
    steady = medians(windows["last minute"])
    print("\n| window | samples | chat first token | chat tokens/s | image s | vs last minute |")
    print("|---|---|---|---|---|---|")
    for name, rows in windows.items():
        if not rows:
            continue
        m = medians(rows)
        ratios = f"first token {m[0] / steady[0]:.2f}x, tok/s {m[1] / steady[1]:.2f}x, image {m[2] / steady[2]:.2f}x"
        print(f"| {name} | {len(rows)} | {m[0] * 1e3:.0f} ms | {m[1]:.1f} | {m[2]:.2f} | {ratios} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
