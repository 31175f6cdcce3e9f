"""Blind pairs for judging the 4x upscaler: each sheet shows the same held-out emoji enlarged two ways.

    python bench/blind_pairs.py --out /tmp/pairs [--pairs 20] [--seed 0]

For each of ``--pairs`` held-out corpus items (inputs passed through the LDM's autoencoder, as generated
pictures are), one sheet ``pair-NN.png`` shows the upscaler's 256-px picture and either nearest-neighbour or
bicubic enlargement (alternating), left and right in random order, unlabelled. ``key.json`` records which
side is which; a judge who has not seen it picks the better picture of each sheet, then
``--score answers.json`` (a list of "left"/"right") counts how often the upscaler won.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def make_sheets(out: Path, pairs: int, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL
    from PIL import Image

    from aigc_demo.data.corpus import load_corpus
    from aigc_demo.models import EmojiUpscaler
    from aigc_demo.training import common
    from aigc_demo.training.train_upscaler import AUTOENCODER, autoencoded, upscalers

    corpus = load_corpus(None, 64)
    held = corpus.split_indices("heldout")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(held, pairs, replace=False))
    autoencoder = AutoencoderKL.from_pretrained(AUTOENCODER, torch_dtype=torch.float32).eval()
    low = common.to_tensor(autoencoded(autoencoder, corpus.images[rows]))
    methods = upscalers(EmojiUpscaler.from_pretrained(common.WEIGHTS_DIR / "emoji-upscaler"))
    with torch.inference_mode():
        made = {name: fn(low).clamp(0, 1) for name, fn in methods.items()}
    out.mkdir(parents=True, exist_ok=True)
    key = []
    for i in range(pairs):
        rival = ("nearest", "bicubic")[i % 2]
        ours_left = bool(rng.integers(2))
        left, right = ("upscaler", rival) if ours_left else (rival, "upscaler")
        tiles = [made[left][i], made[right][i]]
        sheet = Image.new("RGB", (256 * 2 + 24, 256 + 16), "white")
        for j, tile in enumerate(tiles):
            arr = (tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            sheet.paste(Image.fromarray(arr), (8 + j * (256 + 8), 8))
        sheet.save(out / f"pair-{i:02d}.png")
        key.append({"sheet": f"pair-{i:02d}.png", "left": left, "right": right, "row": int(rows[i])})
    (out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"wrote {pairs} sheets and key.json to {out}")


def score(out: Path, answers_path: Path) -> None:
    key = json.loads((out / "key.json").read_text())
    answers = json.loads(answers_path.read_text())
    if len(answers) != len(key):
        raise SystemExit(f"{len(answers)} answers for {len(key)} sheets")
    wins = {"nearest": [0, 0], "bicubic": [0, 0]}
    for k, side in zip(key, answers, strict=True):
        rival = k["left"] if k["right"] == "upscaler" else k["right"]
        wins[rival][1] += 1
        wins[rival][0] += k[side] == "upscaler"
    total = sum(w for w, _ in wins.values())
    print(f"upscaler preferred in {total} of {len(key)} pairs", {k: f"{w}/{n}" for k, (w, n) in wins.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score", type=Path, default=None, help="a JSON list of 'left'/'right', one per sheet")
    args = ap.parse_args()
    if args.score:
        score(args.out, args.score)
    else:
        make_sheets(args.out, args.pairs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
