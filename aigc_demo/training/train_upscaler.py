"""Train the 4x upscaler (aigc_demo.models.EmojiUpscaler): 64x64 emoji -> 256x256.

    python -m aigc_demo.data.build_corpus --sizes 64 256     # the 256-px targets, rendered from the sources
    python -m aigc_demo.training.train_upscaler --minutes 85 --threads 1

Pairs are the corpus's 64-px tiles and the same artwork rendered at 256 px in the 64-px tile's layout at 4x
(``aigc_demo.data.render.layout``), so input and target line up to the sub-pixel (OpenMoji and Twemoji are
vector art; Noto's 136-px bitmaps are resampled). A share of the inputs (``--degraded-fraction``, half by
default) is first passed through the LDM's autoencoder (``weights/autoencoder-kl-emoji``), because the
pictures the app upscales are that autoencoder's output, softer than the rendered tiles: the network learns
to restore them, not only to enlarge clean ones (the degradation idea of Real-ESRGAN, with the degradation
the app actually has).

The loss is ESRGAN's (Wang et al. 2018) with the project's own features: L1 on pixels; L1 on the autoencoder
encoder's first two stages (the perceptual term; no ImageNet VGG here); and, after ``--adversarial-after``
steps, a hinge loss against a small spectral-norm PatchGAN discriminator. Training uses random 128-px
crops (32-px inputs); evaluation uses whole held-out tiles. Publishes to weights/emoji-upscaler/ only when
held-out PSNR improves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm import tqdm

from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.data.paths import corpus_dir
from aigc_demo.models import EmojiUpscaler, PatchDiscriminator, save_fp16
from aigc_demo.training import common, loop
from aigc_demo.training.common import TrainState
from aigc_demo.training.loop import as_shipped

logger = logging.getLogger(__name__)

MODEL_NAME = "emoji-upscaler"
AUTOENCODER = common.WEIGHTS_DIR / "autoencoder-kl-emoji"
SCALE = EmojiUpscaler.scale
CROP = 128  # output crop; the input crop is CROP // SCALE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loop.training_parser(MODEL_NAME, minutes=60.0, lr=4e-4, batch_size=16, doc=__doc__)
    p.add_argument("--perceptual-weight", type=float, default=0.2)
    p.add_argument("--adversarial-weight", type=float, default=5e-3)
    p.add_argument(
        "--adversarial-after", type=int, default=1200, help="pixel+perceptual only before this step"
    )
    p.add_argument(
        "--degraded-fraction", type=float, default=0.5, help="inputs passed through the autoencoder"
    )
    p.add_argument("--evaluate-only", action="store_true")
    return p.parse_args(argv)


@torch.inference_mode()
def autoencoded(autoencoder: AutoencoderKL, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The 64-px tiles as the LDM's autoencoder returns them (posterior mean): the app's real inputs."""
    out = []
    for i in tqdm(range(0, len(images), batch), desc="autoencoding inputs"):
        x = common.to_tensor(images[i : i + batch]) * 2 - 1
        y = autoencoder.decode(autoencoder.encode(x).latent_dist.mean).sample
        out.append(((y * 0.5 + 0.5).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def cached_autoencoded(autoencoder: AutoencoderKL, corpus: Corpus, data_dir: Path | None) -> np.ndarray:
    """``autoencoded`` over the whole corpus, computed once (~10 CPU-minutes) and kept beside the corpus,
    keyed by the autoencoder's weights."""
    key = hashlib.sha256((AUTOENCODER / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()[:16]
    path = (data_dir or corpus_dir()) / f"images_64_autoencoded_{key}.npy"
    if path.is_file():
        return np.load(path)
    images = autoencoded(autoencoder, corpus.images)
    np.save(path, images)
    return images


class Pairs:
    """Low/high-resolution pairs: clean and autoencoded 64-px inputs, 256-px targets, same rows."""

    def __init__(self, data_dir: Path | None, autoencoder: AutoencoderKL) -> None:
        self.corpus: Corpus = load_corpus(data_dir, 64)
        self.high = load_corpus(data_dir, 256).images
        self.degraded = cached_autoencoded(autoencoder, self.corpus, data_dir)

    def crops(self, rows: np.ndarray, degraded: np.ndarray, rng: np.random.Generator):
        lo_size = CROP // SCALE
        low, high = [], []
        for row, deg in zip(rows, degraded, strict=True):
            y, x = rng.integers(0, 64 - lo_size + 1, size=2)
            src = self.degraded if deg else self.corpus.images
            low.append(src[row, y : y + lo_size, x : x + lo_size])
            high.append(self.high[row, y * SCALE : (y + lo_size) * SCALE, x * SCALE : (x + lo_size) * SCALE])
        low_t, high_t = common.to_tensor(np.stack(low)), common.to_tensor(np.stack(high))
        flip = torch.from_numpy(rng.random(len(rows)) < 0.5)
        low_t[flip], high_t[flip] = low_t[flip].flip(-1), high_t[flip].flip(-1)
        return low_t, high_t


def published(folder: Path) -> dict | None:
    if not (folder / "config.json").is_file():
        return None
    return {"upscaler": EmojiUpscaler.from_pretrained(folder), "discriminator": PatchDiscriminator()}


def scratch() -> dict:
    return {"upscaler": EmojiUpscaler(), "discriminator": PatchDiscriminator()}


def train(args, pairs: Pairs, features: common.PerceptualFeatures) -> tuple[EmojiUpscaler, TrainState]:
    start = loop.resume(
        args, {"upscaler": EmojiUpscaler, "discriminator": PatchDiscriminator}, published, scratch
    )
    net, disc = start.models["upscaler"].train(), start.models["discriminator"].train()
    opt_g = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sampler = common.BatchSampler(
        pairs.corpus.split_indices("train"), args.batch_size, args.seed, start.state.epoch
    )
    rng = np.random.default_rng(args.seed + start.state.step)

    def step(state: TrainState) -> dict[str, torch.Tensor]:
        rows = sampler.next()
        low, high = pairs.crops(rows, rng.random(len(rows)) < args.degraded_fraction, rng)
        out = net(low)
        pixel = F.l1_loss(out, high)
        loss, perceptual = pixel, torch.zeros(())
        if args.perceptual_weight > 0:  # the feature pass costs ~4x the network's own step
            perceptual = features.distance(out, high)
            loss = loss + args.perceptual_weight * perceptual
        adversarial = torch.zeros(())
        if state.step >= args.adversarial_after:
            adversarial = -disc(out).mean()
            loss = loss + args.adversarial_weight * adversarial
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

        loss_d = torch.zeros(())
        if state.step >= args.adversarial_after:
            loss_d = F.relu(1 - disc(high)).mean() + F.relu(1 + disc(out.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        return {"pixel": pixel, "perceptual": perceptual, "adversarial": adversarial, "loss_d": loss_d}

    state = loop.train(
        args,
        start,
        {"upscaler": opt_g, "discriminator": opt_d},
        step,
        ["pixel", "perceptual", "adversarial", "loss_d"],
        lr_at=lambda step, progress: loop.cosine_lr(args.lr, progress, floor=0.1, warmup=0.02),
        sampler=sampler,
        shown=("pixel", "perceptual"),
        desc="upscaler",
    )
    return net.eval(), state


def upscalers(net: EmojiUpscaler) -> dict:
    """The methods the card compares, each (B, 3, 64, 64) -> (B, 3, 256, 256) in [0, 1]."""
    return {
        "nearest": lambda x: F.interpolate(x, scale_factor=SCALE, mode="nearest"),
        "bicubic": lambda x: F.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(
            0, 1
        ),
        "upscaler": net,
    }


@torch.inference_mode()
def evaluate(net: EmojiUpscaler, pairs: Pairs) -> dict:
    """Held-out PSNR and edge statistic (output's mean gradient / the real 256-px tile's) per method and input."""
    held = pairs.corpus.split_indices("heldout")
    high = common.to_tensor(pairs.high[held])
    real_edges = common.sharpness(high)
    metrics: dict = {"heldout_items": len(held)}
    for input_name, source in (("clean", pairs.corpus.images), ("autoencoded", pairs.degraded)):
        low = common.to_tensor(source[held])
        for name, method in upscalers(net).items():
            out = torch.cat([method(low[i : i + 32]) for i in range(0, len(low), 32)])
            metrics[f"{input_name}_{name}_psnr"] = float(common.psnr(out, high).mean())
            metrics[f"{input_name}_{name}_edge_ratio"] = float((common.sharpness(out) / real_edges).mean())
    metrics["heldout_psnr"] = (metrics["clean_upscaler_psnr"] + metrics["autoencoded_upscaler_psnr"]) / 2
    return metrics


def loss_line(metrics: dict) -> str:
    if metrics["perceptual_weight"] == 0 and metrics["adversarial_after"] >= metrics["steps"]:
        return (
            "- **Loss** (last run): L1 on pixels only, ESRGAN's PSNR-oriented objective, continuing a network\n"
            "  trained first with pixel, perceptual and adversarial terms (the curves in `loss.csv`)."
        )
    return (
        f"- **Loss**: L1 on pixels + {metrics['perceptual_weight']} × L1 on the autoencoder encoder's first two\n"
        f"  stages (perceptual) + {metrics['adversarial_weight']} × hinge loss against a spectral-norm PatchGAN\n"
        f"  (kept in `runs/`), the last from step {metrics['adversarial_after']}."
    )


def blind_line(metrics: dict) -> str:
    """The blind comparison of these weights, once a judge has made one (``bench/blind_pairs.py``)."""
    blind = metrics.get("blind_pairs")
    if not blind:
        return ""
    return (
        f"\n**Blind comparison** (`{blind['command']}`, {blind['date']}): {blind['pairs']} sheets, each a held-out\n"
        "autoencoded emoji enlarged by the upscaler and by nearest-neighbour or bicubic, sides shuffled; a judge\n"
        f"who did not see the key preferred the upscaler in **{blind['preferred']} of {blind['pairs']}** "
        f"({blind['detail']}).\n"
    )


def model_card(metrics: dict) -> str:
    def row(input_name: str) -> str:
        cells = []
        for method in ("nearest", "bicubic", "upscaler"):
            cells.append(
                f"{metrics[f'{input_name}_{method}_psnr']:.2f} dB / {metrics[f'{input_name}_{method}_edge_ratio']:.2f}"
            )
        return f"| {input_name} | " + " | ".join(cells) + " |"

    return f"""# emoji-upscaler: 4x super-resolution for 64x64 emoji

A one-step residual CNN, {metrics["params_m"]:.2f} M parameters (fp16 safetensors): six EDSR residual blocks
at the input resolution, two sub-pixel (PixelShuffle) 2x stages, and a learned residual on top of bicubic
upscaling. It is the Image tab's "Upscale ×4" stage and makes the Story tab's film frames.

```python
from aigc_demo.models import EmojiUpscaler
net = EmojiUpscaler.from_pretrained("weights/{MODEL_NAME}")
big = net(small)   # (B, 3, 64, 64) in [0, 1] -> (B, 3, 256, 256)
```

- **Data**: the emoji corpus's 64-px tiles and the same artwork rendered at 256 px, laid out as the 64-px
  tile at exactly 4x (`python -m aigc_demo.data.build_corpus --sizes 64 256`);
  {metrics.get("degraded_fraction", 0.5):.0%} of the inputs pass through the LDM's autoencoder first, as the app's generated
  pictures do. Random 128-px crops, horizontal flips. Held-out subjects are never trained on.
{loss_line(metrics)}
- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over {metrics["runs"]} run(s);
  cumulative wall time {common.format_minutes(metrics["cumulative_train_seconds"])} ({common.trained_on(metrics)}).

## Metrics ({metrics["heldout_items"]} held-out tiles, whole 64 → 256)

PSNR against the 256-px rendering / edge statistic (gradient energy, output ÷ real; 1.0 is as sharp as the
real artwork). "autoencoded" inputs went through the LDM's autoencoder first, like generated pictures.

| input | nearest | bicubic | upscaler |
|---|---|---|---|
{row("clean")}
{row("autoencoded")}

Speed: `python bench/upscale.py` (docs/performance.md).
{blind_line(metrics)}
Each row: the 64-px input (nearest), bicubic, the upscaler, the real 256-px rendering; held-out items,
autoencoded inputs.

![samples](samples.png)

![loss](loss.png)

## Known failures

Fine text and thin strokes that the 64-px input has lost are not recovered; the network sharpens what is
there. Photographs and pictures unlike emoji art are outside its training data.

## License

{common.DATA_LICENSE_NOTE}
"""


@torch.inference_mode()
def sample_grid(net: EmojiUpscaler, pairs: Pairs, path: Path) -> None:
    held = pairs.corpus.split_indices("heldout")
    rows = held[np.linspace(0, len(held) - 1, 6).astype(int)]
    low = common.to_tensor(pairs.degraded[rows])
    methods = upscalers(net)
    tiles = [methods["nearest"](low), methods["bicubic"](low), net(low), common.to_tensor(pairs.high[rows])]
    grid = torch.stack(tiles, dim=1).flatten(0, 1)
    common.save_grid(grid, path, nrow=4)


def main(argv: list[str] | None = None) -> int:
    args, command = loop.begin("aigc_demo.training.train_upscaler", parse_args, argv)
    autoencoder = AutoencoderKL.from_pretrained(AUTOENCODER, torch_dtype=torch.float32).eval()
    pairs = Pairs(args.data_dir, autoencoder)
    if args.evaluate_only:
        net = EmojiUpscaler.from_pretrained(args.weights_dir)
        logger.info("held-out: %s", json.dumps(evaluate(net, pairs)))
        return 0
    net, state = train(args, pairs, common.PerceptualFeatures(autoencoder))
    shipped = as_shipped(net)
    metrics = evaluate(shipped, pairs)
    logger.info("held-out: %s", json.dumps(metrics))
    sample_grid(shipped, pairs, args.run_dir / "samples" / f"step{state.step:06d}.png")
    if not loop.beats_published(args.weights_dir, "heldout_psnr", metrics["heldout_psnr"], True):
        return 0
    metrics.update(
        params_m=sum(p.numel() for p in net.parameters()) / 1e6,
        perceptual_weight=args.perceptual_weight,
        adversarial_weight=args.adversarial_weight,
        adversarial_after=args.adversarial_after,
        degraded_fraction=args.degraded_fraction,
        **loop.run_metrics(args, state, command),
    )
    out = args.weights_dir
    save_fp16(net, out)
    sample_grid(EmojiUpscaler.from_pretrained(out), pairs, out / "samples.png")
    loop.write_record(
        out, args.run_dir, metrics, model_card(metrics), ["pixel", "perceptual"], "emoji-upscaler"
    )
    logger.info("published to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
