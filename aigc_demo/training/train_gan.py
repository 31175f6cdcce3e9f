"""Train the caption-conditional DCGAN (aigc_demo.models.GANGenerator) on the emoji corpus.

    python -m aigc_demo.training.train_gan --minutes 30 --threads 1

Losses are those of the original GAN paper: the discriminator maximises log D(x) + log(1 - D(G(z))), the
generator minimises -log D(G(z)) (the non-saturating form the paper recommends). As in GAN-CLS (Reed et al.
2016) the discriminator also sees real images with a wrong caption as "fake", which is what makes it care
about the caption. Adam(2e-4, beta1 0.5) as in DCGAN. Resumes from runs/emoji-gan/checkpoint, else from the
committed generator; publishes to weights/emoji-gan/ only when the Fréchet distance improves.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aigc_demo.data.colour import colour_note, with_colour_variants
from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.models import GANDiscriminator, GANGenerator, save_as, save_fp16
from aigc_demo.training import common
from aigc_demo.training.common import TrainState
from aigc_demo.training.image_metrics import VAEFeatures, frechet_distance, retrieval_metrics, retrieval_rows
from aigc_demo.training.text_cache import cached_embeddings, pick_variants

logger = logging.getLogger(__name__)

MODEL_NAME = "emoji-gan"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--colour-augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add hue-rotated copies of single-colour images, captioned with their new colour",
    )
    p.add_argument("--run-dir", type=Path, default=common.RUNS_DIR / MODEL_NAME)
    p.add_argument("--weights-dir", type=Path, default=common.WEIGHTS_DIR / MODEL_NAME)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids in runs/")
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-measure the committed generator with the current metrics and rewrite its card; no training",
    )
    return p.parse_args(argv)


def discriminator_for(gen: GANGenerator) -> GANDiscriminator:
    return GANDiscriminator(
        image_size=gen.config.image_size, text_dim=gen.config.text_dim, width=gen.config.width
    )


def load_models(args) -> tuple[GANGenerator, GANDiscriminator, TrainState, str]:
    ckpt = args.run_dir / "checkpoint"
    state = common.load_state(args.run_dir)
    if (ckpt / "generator" / "config.json").exists() and state is not None:
        gen = GANGenerator.from_pretrained(ckpt / "generator")
        disc = GANDiscriminator.from_pretrained(ckpt / "discriminator")
        return gen, disc, state, f"resumed from {ckpt}"
    if (args.weights_dir / "config.json").exists():
        gen = GANGenerator.from_pretrained(args.weights_dir)
        state = common.state_from_published(args.weights_dir)
        return gen, discriminator_for(gen), state, f"generator from committed {args.weights_dir}"
    gen = GANGenerator()
    return gen, discriminator_for(gen), TrainState(), "from scratch"


def init_dcgan(module: torch.nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, BatchNorm gamma N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)


def train(args, corpus: Corpus, captions: dict) -> tuple[GANGenerator, TrainState]:
    gen, disc, state, origin = load_models(args)
    if origin == "from scratch":
        init_dcgan(gen)
    gen.train()
    disc.train()
    logger.info(
        "GAN %s (G %.2fM, D %.2fM params)",
        origin,
        *(sum(p.numel() for p in m.parameters()) / 1e6 for m in (gen, disc)),
    )
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_path = args.run_dir / "checkpoint" / "optimizer.pt"
    if origin.startswith("resumed") and opt_path.exists():
        both = torch.load(opt_path, weights_only=True)
        opt_g.load_state_dict(both["g"])
        opt_d.load_state_dict(both["d"])
    autocast = common.resolve_autocast(args.autocast)
    logger.info("bf16 autocast: %s", autocast)

    emb = captions["emb"].float()
    spans = captions["spans"]
    sampler = common.BatchSampler(corpus.split_indices("train"), args.batch_size, args.seed, state.epoch)
    rng = torch.Generator().manual_seed(args.seed + state.step)
    fixed_z = torch.randn(16, gen.config.z_dim, generator=torch.Generator().manual_seed(1234))
    log = common.LossLog(
        args.run_dir / "loss.csv",
        ["loss_d", "loss_g", "d_real", "d_fake", "d_wrong"],
        history=args.weights_dir / "loss.csv",
    )
    timer = common.Timer(args.minutes)
    wall0 = state.wall_seconds
    state.runs += 1

    class _Both:  # one optimizer.pt for the checkpoint helper
        def state_dict(self):
            return {"g": opt_g.state_dict(), "d": opt_d.state_dict()}

    def save_weights(folder: Path) -> None:
        save_as(gen, folder / "generator", torch.float32)
        save_as(disc, folder / "discriminator", torch.float32)

    def checkpoint() -> None:
        state.epoch = sampler.epoch
        state.wall_seconds = wall0 + timer.elapsed()
        common.save_checkpoint(args.run_dir, save_weights, _Both(), state)

    bce = F.binary_cross_entropy_with_logits
    bar = common.time_bar(args.minutes, "gan")
    while not timer.done():
        rows = torch.from_numpy(sampler.next())
        real = common.hflip_augment(common.to_tensor(corpus.images[rows.numpy()]).contiguous(), rng) * 2 - 1
        text = emb[pick_variants(spans, rows, rng)]
        wrong = text.roll(1, dims=0)  # another row's caption: a real image that does not match
        z = torch.randn(len(rows), gen.config.z_dim, generator=rng)
        ones, zeros = torch.ones(len(rows)), torch.zeros(len(rows))

        # 1. Discriminator: real-and-matching -> 1; generated -> 0; real-but-mismatched -> 0.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            fake = gen(z, text)
            d_real = disc(real, text).float()
            d_fake = disc(fake.detach(), text).float()
            d_wrong = disc(real, wrong).float()
        loss_d = bce(d_real, ones) + 0.5 * (bce(d_fake, zeros) + bce(d_wrong, zeros))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # 2. Generator: the non-saturating loss -log D(G(z)).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss_g = bce(disc(fake, text).float(), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        state.step += 1
        if state.step % args.log_every == 0:
            vals = {
                "loss_d": float(loss_d),
                "loss_g": float(loss_g),
                "d_real": float(torch.sigmoid(d_real).mean()),
                "d_fake": float(torch.sigmoid(d_fake).mean()),
                "d_wrong": float(torch.sigmoid(d_wrong).mean()),
            }
            log.append({"step": state.step, "wall_seconds": wall0 + timer.elapsed(), **vals})
            bar.set_postfix(step=state.step, d=f"{vals['loss_d']:.3f}", g=f"{vals['loss_g']:.3f}")
        if state.step % args.sample_every == 0:
            gen.eval()
            with torch.no_grad():
                grid = gen(fixed_z, emb[captions["spans"][torch.arange(16) * (len(corpus) // 16), 0]])
            gen.train()
            common.save_grid(grid * 0.5 + 0.5, args.run_dir / "samples" / f"step{state.step:06d}.png", nrow=8)
        bar.n = min(timer.elapsed(), timer.budget)
        bar.refresh()
        if timer.checkpoint_due():
            checkpoint()
    bar.close()
    checkpoint()
    return gen.eval(), state


@torch.inference_mode()
def evaluate(gen: GANGenerator, corpus: Corpus, captions: dict, features: VAEFeatures, seed: int = 0) -> dict:
    """Fréchet distance (VAE features) of one generated image per held-out caption vs the real held-out images."""
    held = torch.from_numpy(corpus.split_indices("heldout"))
    train_rows = corpus.split_indices("train")
    real = common.to_tensor(corpus.images[held.numpy()])
    g = torch.Generator().manual_seed(seed)
    text = captions["emb"].float()[captions["spans"][held, 0]]
    fake = gen(torch.randn(len(held), gen.config.z_dim, generator=g), text) * 0.5 + 0.5
    real_train = common.to_tensor(
        corpus.images[np.random.default_rng(seed).choice(train_rows, len(held), replace=False)]
    )
    f_real, f_fake, f_train = features(real), features(fake.clamp(0, 1)), features(real_train)
    return retrieval_metrics(fake.clamp(0, 1), real, corpus, held.numpy()) | {
        "heldout_fd_vae": frechet_distance(f_fake, f_real),
        "real_train_vs_heldout_fd_vae": frechet_distance(f_train, f_real),
        "heldout_items": len(held),
    }


def model_card(metrics: dict, corpus: Corpus) -> str:
    return f"""# emoji-gan: a caption-conditional DCGAN for 64x64 emoji

A DCGAN (Radford et al. 2015) generator, {metrics["params_g_m"]:.2f} M parameters (fp16 safetensors),
conditioned on the all-MiniLM-L6-v2 sentence embedding of the caption; trained with the original GAN
losses (non-saturating generator loss) plus GAN-CLS mismatched-caption negatives, and a spectral-norm
projection discriminator (kept in `runs/`, not shipped). It makes a 64x64 image in one step.

```python
from aigc_demo.models import GANGenerator
gen = GANGenerator.from_pretrained("weights/{MODEL_NAME}")
image = gen(z, sentence_embedding) * 0.5 + 0.5   # z: (B, {metrics["z_dim"]}) ~ N(0, I)
```

- **Data**: {len(corpus)} captioned emoji tiles (3 styles), captions in up to 4 phrasings per image
  (`aigc_demo/data/captions.py`); horizontal flips. Held-out subjects are never trained on. {colour_note(corpus)}
- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over {metrics["runs"]} run(s);
  cumulative wall time on this machine (1 CPU thread): {common.format_minutes(metrics["cumulative_train_seconds"])}.

## Metrics (held-out captions, one sample each)

| metric | value |
|---|---|
| Fréchet distance on the exploration VAE's 32-d features, generated vs real held-out | {metrics["heldout_fd_vae"]:.2f} |
| same, real training images vs real held-out (the floor) | {metrics["real_train_vs_heldout_fd_vae"]:.2f} |
{retrieval_rows(metrics)}
Odd rows: real corpus images; even rows: the GAN's image for the same caption (seed 0). Then the losses of G and D
and their mean outputs on real (d_real) and generated (d_fake) images:

![samples](samples.png)

![loss](loss.png)

## License

{common.DATA_LICENSE_NOTE}
"""


def publish(gen: GANGenerator, corpus: Corpus, captions: dict, metrics: dict, args) -> None:
    out = args.weights_dir
    save_fp16(gen, out)
    shipped = GANGenerator.from_pretrained(out)
    rows = torch.linspace(0, len(corpus) - 1, 32).long()
    z = torch.randn(32, gen.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        images = shipped(z, captions["emb"].float()[captions["spans"][rows, 0]]) * 0.5 + 0.5
    real = common.to_tensor(corpus.images[rows.numpy()])
    grid = torch.cat([torch.cat([real[i : i + 8], images[i : i + 8]]) for i in range(0, 32, 8)])
    common.save_grid(grid, out / "samples.png", nrow=8)
    common.LossLog(args.run_dir / "loss.csv", []).plot(
        out / "loss.png", ["loss_d", "loss_g", "d_real", "d_fake"], "emoji-gan training", log_y=False
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(model_card(metrics, corpus), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.setup(args.threads, args.seed)
    command = "python -m aigc_demo.training.train_gan " + shlex.join(sys.argv[1:] if argv is None else argv)
    corpus = load_corpus(args.data_dir)
    if args.colour_augment:
        corpus = with_colour_variants(corpus)
    captions = cached_embeddings(corpus, "sentence", args.data_dir)
    if args.evaluate_only:
        gen = GANGenerator.from_pretrained(args.weights_dir)
        metrics = json.loads((args.weights_dir / "metrics.json").read_text())
        metrics.update(evaluate(gen, corpus, captions, VAEFeatures()))
        (args.weights_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.weights_dir / "README.md").write_text(model_card(metrics, corpus), encoding="utf-8")
        logger.info("re-measured %s: %s", args.weights_dir, json.dumps(metrics))
        return 0
    gen, state = train(args, corpus, captions)
    # Evaluate what would ship: fp16 weights.
    shipped = GANGenerator.from_config(gen.config)
    shipped.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in gen.state_dict().items()}
    )
    shipped.eval()
    metrics = evaluate(shipped, corpus, captions, VAEFeatures())
    logger.info("held-out: %s", json.dumps(metrics))
    old = common.previous_metric(args.weights_dir, "heldout_fd_vae")
    if not common.is_better(metrics["heldout_fd_vae"], old, higher_is_better=False):
        logger.info("NOT published: FD %.2f does not beat %s", metrics["heldout_fd_vae"], old)
        return 0
    metrics.update(
        steps=state.step,
        runs=state.runs,
        batch_size=args.batch_size,
        cumulative_train_seconds=round(state.wall_seconds, 1),
        params_g_m=sum(p.numel() for p in gen.parameters()) / 1e6,
        z_dim=gen.config.z_dim,
        command=command,
    )
    publish(gen, corpus, captions, metrics, args)
    logger.info("published to %s (FD %.2f, previous %s)", args.weights_dir, metrics["heldout_fd_vae"], old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
