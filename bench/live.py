"""The Image tab's Live mode as a user gets it: /image_live through the running app, beside the plain diffusers
call on the same few-step student, in one run.

    python bench/live.py [--rounds 3] [--threads 2] [--steps 2]

Starts app.py, then types a prompt one word at a time: each prefix is one /image_live call (the student in the
Live mode's steps, ``AIGC_IMAGE_LIVE_STEPS``, seed 0), timed at the client (what the page waits for: queue,
model, scorer, PNG) and as the app reports it (the pipeline alone). Then, with the app stopped, the same
prefixes through a plain ``DiffusionPipeline`` loaded from the student's folder (LCMScheduler, the same steps,
guidance 1, fp32), and the largest pixel difference
between the two pictures of each prefix. Medians over ``--rounds``. Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from PIL import Image
from running_app import running_app

SENTENCE = "smiling cat face with heart eyes, in Twemoji style"


def prefixes() -> list[str]:
    words = SENTENCE.split()
    return [" ".join(words[: i + 1]) for i in range(len(words))]


def through_the_app(rounds: int, steps: int) -> tuple[list[float], list[float], dict[str, np.ndarray]]:
    from gradio_client import Client

    client_s, app_s, pictures = [], [], {}
    with running_app({"AIGC_IMAGE_COMPILE": "off", "AIGC_IMAGE_LIVE_STEPS": str(steps)}) as url:
        client = Client(url, verbose=False)
        client.predict("warm-up", 0, api_name="/image_live")
        for _ in range(rounds):
            for prompt in prefixes():
                t0 = time.perf_counter()
                png, info = client.predict(prompt, 0, api_name="/image_live")
                client_s.append(time.perf_counter() - t0)
                app_s.append(info["seconds"])
                pictures[prompt] = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return client_s, app_s, pictures


def plain_call(rounds: int, threads: int, steps: int) -> tuple[list[float], dict[str, np.ndarray]]:
    import torch
    from diffusers import DiffusionPipeline

    from aigc_demo.config import ImageConfig
    from aigc_demo.models import load_text_encoder

    torch.set_num_threads(threads)
    cfg = ImageConfig()
    tokenizer, text_encoder = load_text_encoder(cfg.text_encoder)
    plain = DiffusionPipeline.from_pretrained(
        cfg.student, text_encoder=text_encoder.float(), tokenizer=tokenizer, safety_checker=None
    ).to(torch.float32)
    plain.set_progress_bar_config(disable=True)

    def draw(prompt: str):
        return plain(
            prompt,
            num_inference_steps=steps,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(0),
            height=64,
            width=64,
        ).images[0]

    draw("warm-up")
    seconds, pictures = [], {}
    for _ in range(rounds):
        for prompt in prefixes():
            t0 = time.perf_counter()
            image = draw(prompt)
            seconds.append(time.perf_counter() - t0)
            pictures[prompt] = np.asarray(image.convert("RGB"), dtype=np.int16)
    return seconds, pictures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="the plain call's threads (the app uses its own)")
    ap.add_argument("--steps", type=int, help="the student's steps (default: the Live mode's, live_steps)")
    args = ap.parse_args()
    from aigc_demo.config import ImageConfig

    steps = args.steps or ImageConfig().live_steps
    client_s, app_s, ours = through_the_app(args.rounds, steps)
    plain_s, theirs = plain_call(args.rounds, args.threads, steps)
    diff = max(int(np.abs(ours[p] - theirs[p]).max()) for p in ours)
    median = statistics.median
    n = len(client_s)
    print(
        f"{n} live pictures ({len(prefixes())} prefixes x {args.rounds} rounds), 64x64, {steps} steps, seed 0"
    )
    print("| path | median s/image | p90 s/image |")
    print("|---|---|---|")
    for name, values in (
        ("through the app, client wall time (/image_live)", client_s),
        ("the app's pipeline alone (reported seconds)", app_s),
        ("plain diffusers `DiffusionPipeline` call", plain_s),
    ):
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"| {name} | {median(values):.3f} | {p90:.3f} |")
    print(f"plain / app (client): {median(plain_s) / median(client_s):.2f}x; max pixel difference {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
