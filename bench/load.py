"""Many users at once through the running app's API: what each waits for when the app is shared.

    python bench/load.py [--users 16] [--seconds 120] [--url http://...] [--env AIGC_TEXT_PARALLEL=1 ...]
    python bench/load.py --drawers 8 [--seconds 90]

Starts app.py on a free port (its UNet compiled before it answers) unless --url names a running app, then runs
``--users`` concurrent ``gradio_client`` users on loopback for ``--seconds``, each with its own session. User
*i* mostly does one thing, as people do: users 0, 4, 8, ... chat (a 32-token greedy reply), 1, 5, 9, ... draw
(batch 1, 12 DPM++ 2M steps), 2, 6, 10, ... move latent sliders (``/latent_steer``, a few milliseconds of
work), and 3, 7, 11, ... browse the other tabs, one call each in turn: a Live-mode picture (``/image_live``),
a GAN picture (``/image_gan``), a corpus search (``/latent_search``) and a watermark check (``/verify_text``);
each with a pause of 0.2-1 s between requests. Prints, per endpoint: calls, p50/p95/max latency (for chat,
also the first token, and the first token as the server's stats report it, from the reply's start), errors,
and the "busy" answers of a full queue; and the images each drawing user got, so a starved user shows. Where
the time goes on the server: an app started here runs with Gradio's own profiling (``GRADIO_PROFILING=1``),
and the bench prints, per endpoint, how long events waited in Gradio's queue, how long their handlers ran and
how long Gradio's own pre- and postprocessing took (for a stream, summed over its updates), beside what the
clients saw; the rest is the event stream, file downloads and the clients themselves. Idle machine only; the
load generator shares the app's cores, as on loopback.

``--drawers N`` measures shared UNet calls instead: N users who only draw (batch 1, the default 20 steps, no
pause), once against an app that batches their steps and once against one that draws one picture at a time
(``AIGC_IMAGE_BATCH_IMAGES=1``), each started fresh with its UNet compiled. Prints images per second for both
and their ratio, and compares the pictures both runs drew for the same seeds (user i draws seeds 1000 i, 1000 i
+ 1, ...), pixel by pixel.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import threading
import time
from collections import defaultdict
from contextlib import nullcontext

from running_app import running_app


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_side(url: str) -> str:
    """Gradio's per-event traces as a table per endpoint (milliseconds): queue wait, handler, and Gradio's
    own pre- and postprocessing (file moves included); a stream's are summed over its updates."""
    import httpx

    answer = httpx.get(f"{url.rstrip('/')}/gradio_api/profiling/traces", timeout=30)
    if answer.status_code != 200:
        return "server-side times: not available (start the app with GRADIO_PROFILING=1)"
    by_fn: dict[str, list[dict]] = defaultdict(list)
    for trace in answer.json():
        if trace["fn_name"] != "gradio_file_upload":
            by_fn[trace["fn_name"]].append(trace)
    rows = [
        "| endpoint (server side) | events | queue wait p50 / p95 ms | handler p50 / p95 ms "
        "| Gradio's own p50 / p95 ms |",
        "|---|---|---|---|---|",
    ]
    for name, traces in sorted(by_fn.items()):
        phases = (
            [t["queue_wait_ms"] for t in traces],
            [t["fn_call_ms"] for t in traces],
            [t["total_ms"] - t["fn_call_ms"] for t in traces],  # pre/postprocessing, file moves
        )
        cells = [f"{statistics.median(v):.0f} / {percentile(v, 0.95):.0f}" for v in phases]
        rows.append(f"| /{name} | {len(traces)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.busy: dict[str, int] = defaultdict(int)
        self.per_user: dict[int, int] = defaultdict(int)
        self._lock = threading.Lock()

    def ok(self, name: str, seconds: float, user: int | None = None) -> None:
        with self._lock:
            self.latency[name].append(seconds)
            if user is not None:
                self.per_user[user] += 1

    def failed(self, name: str, err: Exception) -> None:
        with self._lock:
            if "busy" in str(err).lower() or "queue is full" in str(err).lower():
                self.busy[name] += 1
            else:
                self.errors[name].append(f"{type(err).__name__}: {str(err)[:120]}")


# What a browsing user calls, in turn: the other tabs' quick requests.
BROWSING = (
    ("/image_live", ("smiling cat face, in Twemoji style", 0)),
    ("/image_gan", ("grinning face", 0)),
    ("/latent_search", ("cat",)),
    ("/verify_text", ("The sea is wide and the sky is blue.",)),
)


def user(index: int, url: str, until: float, rec: Recorder) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    rng = random.Random(index)
    role = ("chat", "image", "latent", "browse")[index % 4]
    visits = 0
    while time.time() < until:
        t0 = time.perf_counter()
        try:
            if role == "chat":
                job = client.submit(
                    f"Name {rng.randint(2, 9)} colours of the rainbow.",
                    max_new_tokens=32,
                    temperature=0.0,
                    seed=0,
                    api_name="/chat",
                )
                first = None
                for _ in job:
                    first = first or time.perf_counter() - t0
                out = job.result()
                rec.ok("/chat first token", first if first is not None else time.perf_counter() - t0)
                if out.get("time_to_first_token_s") is not None:  # from the reply's start in the server
                    rec.ok("/chat first token, in the server", out["time_to_first_token_s"])
                rec.ok("/chat whole reply", time.perf_counter() - t0)
            elif role == "image":
                client.predict(
                    "grinning face, in Noto Color Emoji style",
                    num_inference_steps=12,
                    seed=rng.randint(0, 10_000),
                    api_name="/image_generate",
                )
                rec.ok("/image_generate", time.perf_counter() - t0, index)
            elif role == "latent":
                coefficients = [round(rng.uniform(-2, 2), 2) for _ in range(4)]
                client.predict(rng.randint(0, 500), coefficients, api_name="/latent_steer")
                rec.ok("/latent_steer", time.perf_counter() - t0)
            else:
                api_name, args = BROWSING[visits % len(BROWSING)]
                visits += 1
                client.predict(*args, api_name=api_name)
                rec.ok(api_name, time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001 - every failure is counted and shown
            rec.failed(role, err)
        time.sleep(rng.uniform(0.2, 1.0))


def drawer(index: int, url: str, until: float, pictures: dict, rec: Recorder) -> None:
    import numpy as np
    from gradio_client import Client
    from PIL import Image

    client = Client(url, verbose=False)
    seed = 1000 * index
    while time.time() < until:
        t0 = time.perf_counter()
        try:
            files, _ = client.predict(
                "grinning face, in Noto Color Emoji style", seed=seed, api_name="/image_generate"
            )
            path = files[0]["path"] if isinstance(files[0], dict) else files[0]
            with Image.open(path) as picture:
                pictures[seed] = np.asarray(picture.convert("RGB"), dtype=np.int16)
            rec.ok("/image_generate", time.perf_counter() - t0, index)
        except Exception as err:  # noqa: BLE001 - every failure is counted and shown
            rec.failed("image", err)
        seed += 1


def compare_drawing(drawers: int, seconds: float) -> int:
    """Images per second with steps shared across requests and without, and the same seeds' pixels."""
    runs = {}
    for name, batch in (("shared UNet calls", str(drawers)), ("one at a time", "1")):
        env = {"AIGC_IMAGE_COMPILE": "now", "AIGC_IMAGE_BATCH_IMAGES": batch}
        with running_app(env, 600) as url:
            rec, pictures = Recorder(), {}
            until = time.time() + seconds
            started = time.perf_counter()
            users = [
                threading.Thread(target=drawer, args=(i, url, until, pictures, rec), daemon=True)
                for i in range(drawers)
            ]
            for t in users:
                t.start()
            for t in users:
                t.join(timeout=seconds + 300)
            wall = time.perf_counter() - started
        runs[name] = (len(pictures) / wall, rec, pictures)
        latency = rec.latency["/image_generate"] or [float("nan")]
        print(
            f"{name}: {len(pictures)} images in {wall:.1f} s = {len(pictures) / wall:.2f} images/s; latency "
            f"p50 {statistics.median(latency):.2f} s, p95 {percentile(latency, 0.95):.2f} s; per user "
            + ", ".join(str(n) for _, n in sorted(rec.per_user.items()))
            + f"; errors {sum(len(v) for v in rec.errors.values())}"
        )
    (shared, _, a), (alone, _, b) = runs["shared UNet calls"], runs["one at a time"]
    print(f"images/s shared / one at a time: {shared / alone:.2f}x")
    both = sorted(set(a) & set(b))
    if both:
        diffs = [int(abs(a[s] - b[s]).max()) for s in both]
        print(f"same seeds drawn in both runs: {len(both)}; largest pixel difference {max(diffs)} of 255")
    return 1 if any(rec.errors for _, rec, _ in runs.values()) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--url", help="a running app (default: start one)")
    ap.add_argument("--drawers", type=int, help="only this many drawing users, with and without shared steps")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the app this starts")
    args = ap.parse_args()
    if args.drawers:
        return compare_drawing(args.drawers, args.seconds)

    env = {"AIGC_IMAGE_COMPILE": "now", "GRADIO_PROFILING": "1", **dict(e.split("=", 1) for e in args.env)}
    started = nullcontext(args.url) if args.url else running_app(env, 600)
    with started as url:
        rec = Recorder()
        cpu_before, wall_before = own_cpu_seconds(), time.time()
        until = time.time() + args.seconds
        users = [
            threading.Thread(target=user, args=(i, url, until, rec), daemon=True) for i in range(args.users)
        ]
        for t in users:
            t.start()
        for t in users:
            t.join(timeout=args.seconds + 300)
        cpu, wall = own_cpu_seconds() - cpu_before, time.time() - wall_before
        server = server_side(url)

    print(f"{args.users} users for {args.seconds:.0f} s")
    # On loopback the clients take cores the server would have: say how much.
    print(f"the load generator's own CPU: {cpu:.0f} s in {wall:.0f} s, {cpu / wall:.2f} of a core on average")
    print("| endpoint | calls | p50 s | p95 s | max s |\n|---|---|---|---|---|")
    for name, values in sorted(rec.latency.items()):
        print(
            f"| {name} | {len(values)} | {statistics.median(values):.2f} | {percentile(values, 0.95):.2f} "
            f"| {max(values):.2f} |"
        )
    drawers = sorted(rec.per_user.items())
    print("images per drawing user:", ", ".join(f"user {u}: {n}" for u, n in drawers) or "none")
    print("queue full (busy) answers:", dict(rec.busy) or 0)
    print(server)
    errors = sum(len(v) for v in rec.errors.values())
    print("errors:", errors)
    for name, messages in rec.errors.items():
        for message in sorted(set(messages))[:5]:
            print(f"  {name}: {message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
