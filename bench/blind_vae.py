"""A blind test of the exploration VAE's samples: does a judge see specific emoji, or blobs?

    python bench/blind_vae.py --out /tmp/vae-blind [--source posterior] [--temperature 1] [--seed 0]
        [--model weights/vae-emoji]
    python bench/blind_vae.py --out /tmp/vae-blind --score answers.json

Draws 16 samples through the Latent tab's own pipeline from one of its sources (``corpus``: the Gaussian
fitted to the corpus latents; ``posterior``: the aggregate posterior; ``prior``: N(0, I)) and writes
``sheet.png`` (numbered pictures, nothing else) and ``key.json`` (each sample's nearest training emoji in the
latent, and for ``posterior`` the corpus emoji it was drawn around). A judge who has not seen the key names
each numbered picture as a specific emoji ("grinning face", "red apple") or "unclear" in ``answers.json``
(``{"1": "red apple", "2": "unclear", ...}``); ``--score`` counts the named pictures and prints them beside
the key, so a reader can check the names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CELL = 160
SAMPLES = 16


def make_sheet(out: Path, source: str, temperature: float, seed: int, model: str) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from aigc_demo.config import LatentConfig
    from aigc_demo.pipelines.latent import LatentPipeline

    pipe = LatentPipeline.from_config(LatentConfig(model=model))
    samples = pipe.sample(n=SAMPLES, seed=seed, source=source, temperature=temperature)
    atlas = pipe.atlas
    sheet = Image.new("RGB", (4 * CELL, 4 * (CELL + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    key = {}
    for n, (image, z) in enumerate(zip(samples.images, samples.latents, strict=True), 1):
        x, y = (n - 1) % 4 * CELL, (n - 1) // 4 * (CELL + 24)
        sheet.paste(image.resize((CELL, CELL), Image.Resampling.LANCZOS), (x, y + 24))
        draw.text((x + 6, y + 6), str(n), fill="black")
        nearest = pipe.nearest(z, k=1)[0][0]
        entry = {"nearest": nearest.name}
        if source == "posterior":  # drawn around one row: the row whose code is closest in its own units
            row = int(np.argmin((((atlas.means - z.reshape(-1)) / atlas.stds) ** 2).sum(1)))
            entry["drawn_around"] = atlas.items[row].name
        key[str(n)] = entry
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "sheet.png")
    (out / "key.json").write_text(
        json.dumps(
            {"model": model, "source": source, "temperature": temperature, "seed": seed, "key": key}, indent=1
        )
    )
    print(f"{out / 'sheet.png'}: {SAMPLES} samples from {source} at temperature {temperature} (seed {seed})")


def score(out: Path, answers_path: Path) -> None:
    key = json.loads((out / "key.json").read_text())
    answers = json.loads(answers_path.read_text())
    named = [n for n in key["key"] if str(answers.get(n, "unclear")).strip().lower() not in ("", "unclear")]
    for n, entry in key["key"].items():
        reference = ", ".join(f"{k}: {v}" for k, v in entry.items())
        print(f"{n:>2}  judged: {answers.get(n, '-'):<28} key: {reference}")
    print(
        f"named as a specific emoji: {len(named)} of {len(key['key'])} ({key['source']}, temperature "
        f"{key.get('temperature', 1.0)}, seed {key['seed']})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", default="posterior", choices=["posterior", "corpus", "prior"])
    ap.add_argument("--temperature", type=float, default=1.0, help="the tab's temperature slider")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="a VAE folder (default: the app's)")
    ap.add_argument("--score", type=Path, help="a judge's answers.json")
    args = ap.parse_args()
    if args.score:
        score(args.out, args.score)
    else:
        from aigc_demo.config import LatentConfig

        make_sheet(args.out, args.source, args.temperature, args.seed, args.model or LatentConfig().model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
