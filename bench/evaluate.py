"""What a sweep costs beyond its pictures, through the running app's API.

    python bench/evaluate.py [--rounds 3]

Starts app.py on a free port (its UNet compiled before it answers) and, in each round, times a 3x3 X/Y/Z sweep
of 20-step images (/evaluate_sweep: guidance 3, 5, 7 by seeds 1, 2, 3) at the client, and the same nine pictures
as nine /image_generate calls one after another. Prints both and their ratio, and the sweep's own split: the
pictures, then the grid, the figures (precision/recall and KID against ~6,000 training pictures) and the
corpus map. Idle machine only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from running_app import running_app

PROMPT = "grinning face, in Noto Color Emoji style"
GUIDANCE, SEEDS = (3.0, 5.0, 7.0), (1, 2, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from gradio_client import Client

    with running_app({"AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=600) as url:
        client = Client(url, verbose=False)

        def sweep() -> tuple[float, dict]:
            t0 = time.perf_counter()
            _, info = client.predict(
                PROMPT, "guidance_scale", ", ".join(map(str, GUIDANCE)), "seed", ", ".join(map(str, SEEDS)),
                "nothing", "", num_inference_steps=20, api_name="/evaluate_sweep",
            )  # fmt: skip
            return time.perf_counter() - t0, info

        def nine() -> float:
            t0 = time.perf_counter()
            for seed in SEEDS:
                for guidance in GUIDANCE:
                    client.predict(
                        PROMPT,
                        num_inference_steps=20,
                        guidance_scale=guidance,
                        seed=seed,
                        api_name="/image_generate",
                    )
            return time.perf_counter() - t0

        sweep()  # warm: the reference set's k-NN radii, first calls
        ratios = []
        for r in range(args.rounds):
            swept, info = sweep()
            alone = nine()
            ratios.append(swept / alone)
            rest = info["seconds"] - info["images_seconds"]
            print(
                f"round {r}: 3x3 sweep {swept:.2f} s at the client (in the app: pictures {info['images_seconds']:.2f} s,"
                f" grid and figures {rest:.2f} s) | nine /image_generate calls {alone:.2f} s | sweep/nine {swept / alone:.3f}",
                flush=True,
            )
        print(f"median sweep/nine: {statistics.median(ratios):.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
