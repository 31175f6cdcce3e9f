"""End-to-end speed through the running app's API: what a user (or a script) actually waits for.

    python bench/app.py [--rounds 3]

Starts app.py on a free port (its UNet compiled before it answers, as it does in the background when serving)
and, in each round, calls /chat (greedy, 128 new tokens), /image_generate at batch 1 twice and at batch 8 once
(20 DPM++ 2M steps, guidance 5), then /chat again: text and images served by one process, one after the other,
as users mix them. Prints the app's own numbers (time to first token, tokens/s, seconds per image, the image
dtype). Compare with bench/image.py and bench/text.py, which time each pipeline alone. Idle machine only.
"""

from __future__ import annotations

import argparse
import sys

from running_app import running_app

PROMPT = "grinning face, in Noto Color Emoji style"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from gradio_client import Client

    with running_app({"AIGC_IMAGE_COMPILE": "now"}, start_timeout_s=600) as url:
        client = Client(url, verbose=False)

        def chat() -> str:
            out = client.predict(
                "Write a detailed essay about the history of the printing press.",
                [],
                "",
                128,
                0.0,
                api_name="/chat",
            )
            return f"chat {out['new_tokens']} tokens: first {out['time_to_first_token_s'] * 1e3:.0f} ms, {out['tokens_per_s']:.0f} tok/s"

        def image(batch: int, seed: int) -> str:
            _, info = client.predict(
                PROMPT, "", 20, 5.0, "DPM++ 2M", seed, batch, 64, 64, "diffusion", api_name="/image_generate"
            )
            return f"image b{batch} ({info.get('dtype', '?')}, UNet {info['unet']}): {info['seconds'] / batch:.3f} s/image"

        for r in range(args.rounds):
            print(
                f"round {r}:",
                chat(),
                "|",
                image(1, r),
                "|",
                image(1, r + 100),
                "|",
                image(8, r),
                "|",
                chat(),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
