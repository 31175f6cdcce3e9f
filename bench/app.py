"""End-to-end speed through the running app's API: what a user (or a script) actually waits for.

    python bench/app.py [--repeats 4]

Starts app.py on a free port, calls /image_generate (20 DPM++ 2M steps, guidance 5, batch 1) several times
with gradio_client, and prints the seconds the pipeline reports for each. Compare with bench/image.py's
main-thread numbers: the gap is what the compute thread (aigc_demo/compute.py) closes. Idle machine only.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    from gradio_client import Client

    port = free_port()
    env = dict(os.environ, AIGC_PORT=str(port))
    app = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline or app.poll() is not None:
                    raise SystemExit("the app did not start") from None
                time.sleep(1)
        seconds = []
        for seed in range(args.repeats):
            _, info = client.predict(
                "grinning face, in Noto Color Emoji style",
                "",
                20,
                5.0,
                "DPM++ 2M",
                seed,
                1,
                64,
                64,
                "diffusion",
                api_name="/image_generate",
            )
            seconds.append(info["seconds"])
        print(
            "app /image_generate, 20 steps, batch 1, seconds per call:",
            ", ".join(f"{s:.3f}" for s in seconds),
        )
    finally:
        app.terminate()
        app.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
