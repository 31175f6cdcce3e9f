"""The Image tab's Live mode as a user gets it: /image_live through the running app, beside the plain diffusers
call on the same few-step student, in one run.

    python bench/live.py [--rounds 3] [--threads 2] [--steps 2] [--compile auto|off]

Starts app.py and waits until its student's UNet and decoder are compiled, as the app serves them once its
first start on a machine class has compiled them (minutes; later starts load the kernels from the cache).
Then types a prompt one word at a time: each prefix is one /image_live call (the student in the Live mode's
steps, ``AIGC_IMAGE_LIVE_STEPS``, seed 0), timed at the client (what the page waits for: queue, model,
scorer, PNG) and as the app reports it (the pipeline alone); and the same call through Gradio's plain REST
API with httpx (``/call/image_live``, its server-sent events read as they come, then the PNG fetched, as the
page does), which shows what gradio_client adds (its receiving thread looks for new messages every 50 ms).
Then, with the app stopped, the same prefixes through a plain ``DiffusionPipeline`` loaded from the
student's folder (LCMScheduler, the same steps, guidance 1) in fp32, and in the app's dtype when that is
another (bf16 where the app measured it faster; there the plain call rounds the text encoder to bf16 too,
the app keeps it in fp32), and the largest pixel difference between the app's picture of each prefix and
the plain call's. Medians over ``--rounds``. Idle machine only.
"""

from __future__ import annotations

import argparse
import json
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


def rest_live(http, prompt: str) -> bytes:
    """One /image_live call through the REST API: the PNG's bytes."""
    event_id = http.post("gradio_api/call/image_live", json={"data": [prompt, 0]}).json()["event_id"]
    with http.stream("GET", f"gradio_api/call/image_live/{event_id}") as events:
        lines = events.iter_lines()
        for line in lines:
            if line.startswith("event: error"):
                raise RuntimeError(f"/call/image_live failed: {events.read()[:300]!r}")
            if line.startswith("event: complete"):
                png = json.loads(next(lines).removeprefix("data:"))[0]
                return http.get(png["url"]).content
    raise RuntimeError("/call/image_live ended without a picture")


def wait_for_the_student(client, wanted: str, timeout_s: float = 900) -> dict:
    """The info of a Live picture once its UNet and decoder are ``wanted`` ("compiled": the app compiles the
    student's after the diffusion model's, in the background on its first start on a machine class), or of
    the last one at the timeout."""
    deadline = time.time() + timeout_s
    while True:
        info = client.predict("warm-up", 0, api_name="/image_live")[1]
        if (info["unet"] == info["decoder"] == wanted) or time.time() > deadline:
            return info
        time.sleep(5)


def through_the_app(
    rounds: int, steps: int, compile_mode: str
) -> tuple[dict[str, list[float]], dict[str, np.ndarray], dict]:
    """Client, REST and in-app seconds of each prefix's picture, the pictures, and the info of a Live picture
    (which UNet and decoder drew them, in which dtype)."""
    import httpx
    from gradio_client import Client

    times = {"client": [], "rest": [], "app": []}
    pictures = {}
    env = {"AIGC_IMAGE_COMPILE": compile_mode, "AIGC_IMAGE_LIVE_STEPS": str(steps)}
    with running_app(env, start_timeout_s=600) as url:
        client = Client(url, verbose=False)
        served = wait_for_the_student(client, "eager" if compile_mode == "off" else "compiled")
        with httpx.Client(base_url=url, timeout=60) as http:
            rest_live(http, "warm-up")
            for _ in range(rounds):
                for prompt in prefixes():  # the two clients interleaved, so a spell of the VM hits both
                    t0 = time.perf_counter()
                    png, info = client.predict(prompt, 0, api_name="/image_live")
                    times["client"].append(time.perf_counter() - t0)
                    times["app"].append(info["seconds"])
                    pictures[prompt] = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
                    t0 = time.perf_counter()
                    rest_live(http, prompt)
                    times["rest"].append(time.perf_counter() - t0)
    return times, pictures, served


def plain_call(
    rounds: int, threads: int, steps: int, dtype: str = "float32"
) -> tuple[list[float], dict[str, np.ndarray]]:
    import torch
    from diffusers import DiffusionPipeline

    from aigc_demo.config import ImageConfig
    from aigc_demo.models import load_text_encoder

    torch.set_num_threads(threads)
    cfg = ImageConfig()
    tokenizer, text_encoder = load_text_encoder(cfg.text_encoder)
    plain = DiffusionPipeline.from_pretrained(
        cfg.student, text_encoder=text_encoder.float(), tokenizer=tokenizer, safety_checker=None
    ).to(getattr(torch, dtype))
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
    ap.add_argument(
        "--compile",
        default="auto",
        help="the app's AIGC_IMAGE_COMPILE; with the default the bench waits for the compiled student",
    )
    args = ap.parse_args()
    from aigc_demo.config import ImageConfig

    steps = args.steps or ImageConfig().live_steps
    times, ours, served = through_the_app(args.rounds, steps, args.compile)
    dtypes = ["float32"] + ([served["dtype"]] if served["dtype"] != "float32" else [])
    rows, diffs = [], {}
    for dtype in dtypes:
        seconds, theirs = plain_call(args.rounds, args.threads, steps, dtype)
        rows.append((f"plain diffusers `DiffusionPipeline` call, {dtype}", seconds))
        diffs[dtype] = max(int(np.abs(ours[p] - theirs[p]).max()) for p in ours)
    plain_s = rows[0][1]
    median = statistics.median
    client_s, n = times["client"], len(times["client"])
    print(
        f"{n} live pictures ({len(prefixes())} prefixes x {args.rounds} rounds), 64x64, {steps} steps, seed 0, "
        f"the app's student in {served['dtype']}, UNet {served['unet']}, decoder {served['decoder']}"
    )
    print("| path | median s/image | p90 s/image |")
    print("|---|---|---|")
    for name, values in (
        ("through the app, gradio_client wall time (/image_live)", client_s),
        ("through the app, REST with httpx, PNG fetched", times["rest"]),
        ("the app's pipeline alone (reported seconds)", times["app"]),
        *rows,
    ):
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"| {name} | {median(values):.3f} | {p90:.3f} |")
    print(
        f"plain / app: {median(plain_s) / median(client_s):.2f}x (gradio_client), "
        f"{median(plain_s) / median(times['rest']):.2f}x (REST); largest pixel difference from the plain call: "
        + ", ".join(f"{diff} ({dtype})" for dtype, diff in diffs.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
