"""A blind recognition test of an image generator: can a judge tell what each picture shows?

    python bench/blind_recognition.py --out /tmp/blind [--generator student] [--steps N] [--seed 0]
    python bench/blind_recognition.py --out /tmp/blind --score answers.json

Draws the 20 training captions of the diffusion model's card (``train_diffusion.TRAIN_PROMPTS``) through the
app's image pipeline with the chosen generator and its own defaults (the student: its configured steps, no
guidance; ``--steps`` overrides),
shuffles them and writes ``sheet.png`` (numbered pictures, no captions), ``subjects.txt`` (the 20 subjects in
alphabetical order, without styles) and ``key.json``. A judge who has not seen the key names each numbered
picture with one subject from the list, or "unclear", in ``answers.json`` (``{"1": "ghost", ...}``);
``--score`` counts the pictures named correctly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CELL = 192


def subject(caption: str) -> str:
    return caption.split(", in ")[0]


def make_sheet(out: Path, generator: str, seed: int, steps: int | None = None) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from aigc_demo.config import ImageConfig
    from aigc_demo.pipelines.image import ImagePipeline
    from aigc_demo.training.train_diffusion import TRAIN_PROMPTS

    gan = ImageConfig.gan if generator == "gan" else ""  # loaded only when it is the one judged
    pipe = ImagePipeline.from_config(ImageConfig(compile="off", upscaler="", gan=gan))
    default = {"student": pipe.student.student_steps if pipe.student else 0, "gan": 1}.get(
        generator, pipe.cfg.num_inference_steps
    )
    steps = steps or default
    order = np.random.default_rng(seed).permutation(len(TRAIN_PROMPTS))
    sheet = Image.new("RGB", (5 * CELL, 4 * (CELL + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    key = {}
    for n, i in enumerate(order, 1):
        caption = TRAIN_PROMPTS[i]
        params = {"prompt": caption, "seed": seed, "generator": generator, "num_inference_steps": steps}
        picture = pipe(params).images[0].image.resize((CELL, CELL), Image.Resampling.NEAREST)
        x, y = (n - 1) % 5 * CELL, (n - 1) // 5 * (CELL + 28)
        sheet.paste(picture, (x, y + 28))
        draw.text((x + 6, y + 6), str(n), fill="black")
        key[str(n)] = subject(caption)
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "sheet.png")
    (out / "subjects.txt").write_text("\n".join(sorted(set(key.values()))) + "\n")
    (out / "key.json").write_text(json.dumps({"generator": generator, "steps": steps, "key": key}, indent=1))
    print(
        f"{out / 'sheet.png'}: {len(key)} pictures by the {generator} ({steps} step{'s' * (steps != 1)});"
        " subjects in subjects.txt"
    )


def score(out: Path, answers_path: Path) -> None:
    key = json.loads((out / "key.json").read_text())
    answers = json.loads(answers_path.read_text())
    right = [n for n, name in key["key"].items() if str(answers.get(n, "")).strip().lower() == name.lower()]
    for n, name in key["key"].items():
        print(f"{n:>2}  {name:<28} judged: {answers.get(n, '-')}{'' if n in right else '  ✗'}")
    print(f"recognised {len(right)} of {len(key['key'])} ({key['generator']}, {key['steps']} steps)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--generator", default="student", choices=["student", "diffusion", "gan"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="denoising steps (default: the generator's own)")
    ap.add_argument("--score", type=Path, help="a judge's answers.json: count the pictures named correctly")
    args = ap.parse_args()
    if args.score:
        score(args.out, args.score)
    else:
        make_sheet(args.out, args.generator, args.seed, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
