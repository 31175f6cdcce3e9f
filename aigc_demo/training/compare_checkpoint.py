"""Committed emoji-ldm vs the training checkpoint, side by side, for judging the grids by eye.

    python -m aigc_demo.training.compare_checkpoint --threads 2

Writes runs/emoji-ldm/compare_train.png (the 20 training captions at each grid seed: a committed row, then the
checkpoint's row) and compare_novel.png (the 20 paraphrases at seed 0, same order), upscaled 2x without
smoothing. Both sides sample exactly as the model card's grids do (fp16-rounded EMA weights, DPM++ 2M).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from aigc_demo.training import common
from aigc_demo.training.loop import as_shipped
from aigc_demo.training.train_diffusion import (
    AUTOENCODER,
    GRID_SEEDS,
    MODEL_NAME,
    NOVEL_PROMPTS,
    TRAIN_PROMPTS,
    build_pipeline,
    generate,
)


def checkpoint_unet(checkpoint: Path) -> UNet2DConditionModel:
    """The EMA weights of a training checkpoint (``checkpoint/ema/``), as they would ship."""
    return as_shipped(UNet2DConditionModel.from_pretrained(checkpoint / "ema", torch_dtype=torch.float32))


def side_by_side(pipes: list, prompts: list[str], seeds: range, steps: int) -> torch.Tensor:
    """(len(seeds) * len(pipes) * len(prompts), 3, H, W): for each seed, one row of prompts per pipeline."""
    return torch.cat([generate(pipe, prompts, steps, seed=seed) for seed in seeds for pipe in pipes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--weights-dir", type=Path, default=common.WEIGHTS_DIR / MODEL_NAME)
    p.add_argument("--run-dir", type=Path, default=common.RUNS_DIR / MODEL_NAME)
    args = p.parse_args(argv)
    common.setup(args.threads, 0)
    from aigc_demo.models import load_text_encoder

    tokenizer, text_encoder = load_text_encoder()
    vae = AutoencoderKL.from_pretrained(AUTOENCODER, torch_dtype=torch.float32).eval()
    committed = UNet2DConditionModel.from_pretrained(args.weights_dir / "unet", torch_dtype=torch.float32)
    unets = [committed.eval(), checkpoint_unet(args.run_dir / "checkpoint").eval()]
    pipes = [build_pipeline(unet, vae, tokenizer, text_encoder) for unet in unets]
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    for prompts, seeds, name in (
        (TRAIN_PROMPTS, range(GRID_SEEDS), "compare_train.png"),
        (NOVEL_PROMPTS, range(1), "compare_novel.png"),
    ):
        images = F.interpolate(
            side_by_side(pipes, prompts, seeds, args.steps), scale_factor=2, mode="nearest"
        )
        common.save_grid(images, args.run_dir / name, nrow=len(prompts))
        print(args.run_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
