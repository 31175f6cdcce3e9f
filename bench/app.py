"""End-to-end speed through the running app's API: what a user (or a script) actually waits for.

    python bench/app.py [--repeats 4]

Starts app.py on a free port, calls /image_generate (20 DPM++ 2M steps, guidance 5, batch 1) several times
with gradio_client, and prints the seconds the pipeline reports for each. Compare with bench/image.py's
main-thread numbers: the gap is what the compute thread (aigc_demo/compute.py) closes. Idle machine only.
"""

from __future__ import annotations

import argparse
import sys

from running_app import running_app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    from gradio_client import Client

    # The app as it serves once warm: its UNet compiled before it answers (it does this in the background).
    with running_app({"AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=600) as url:
        client = Client(url, verbose=False)
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
            assert info["unet"] == "compiled", info["unet"]
        print(
            "app /image_generate, 20 steps, batch 1, seconds per call:",
            ", ".join(f"{s:.3f}" for s in seconds),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
