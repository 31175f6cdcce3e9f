"""Train the exploration VAE (global latent) on the emoji corpus: a VAE-GAN.

    python -m aigc_demo.training.train_vae --minutes 90 --threads 1

The objective is the sigma-VAE's ELBO (Gaussian decoder with a learned shared sigma, plus an image-gradient
term) and, against blur, the two terms of VQGAN/Stable Diffusion's autoencoder: an L1 distance in the LDM
autoencoder's early features (perceptual) and, after ``--adversarial-after`` steps, a hinge loss against a
spectral-norm PatchGAN whose weight adapts to the ratio of the two losses' gradients at the decoder's last
layer (Esser et al. 2021), so neither drowns the other.

Resumes from runs/vae-emoji/checkpoint, else from weights/vae-emoji (a published model with another latent
size lends its convolutions; the latent's linear layers start fresh), else starts from scratch. At the end
it evaluates on the held-out split and publishes to weights/vae-emoji/ only if the reconstructions are not
less faithful (PSNR) and are sharper (edge ratio) than the committed model's. ``--park`` keeps the run (fp16
VAE and discriminator), published or not, in weights/vae-emoji/parked/, where the next run on any machine
resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.models import EmojiVAE, PatchDiscriminator, save_fp16
from aigc_demo.training import common, loop
from aigc_demo.training.common import TrainState
from aigc_demo.training.loop import as_shipped

logger = logging.getLogger(__name__)

MODEL_NAME = "vae-emoji"
LOG2PI = math.log(2 * math.pi)
LOG256 = math.log(256)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = loop.training_parser(MODEL_NAME, minutes=30.0, lr=1e-3, batch_size=64, doc=__doc__)
    p.add_argument("--beta", type=float, default=0.7, help="KL weight after warm-up")
    p.add_argument("--warmup-steps", type=int, default=500, help="linear KL warm-up")
    p.add_argument(
        "--edge-weight", type=float, default=0.5, help="image-gradient likelihood term (sharper edges)"
    )
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="L1 on autoencoder features")
    p.add_argument("--adversarial-weight", type=float, default=0.5, help="times the adaptive weight")
    p.add_argument(
        "--adversarial-after",
        type=int,
        default=1000,
        help="the step, counted over all runs as in metrics.json, from which the PatchGAN joins",
    )
    loop.add_park_option(p)
    return p.parse_args(argv)


# -- objective -------------------------------------------------------------------
def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per-image continuous Gaussian NLL (nats), shared scalar sigma."""
    d = x[0].numel()
    sq = (x - mean).pow(2).flatten(1).sum(1)
    return 0.5 * sq * torch.exp(-2 * log_sigma) + d * (log_sigma + 0.5 * LOG2PI)


def edge_nll(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Gradient images scored with the same sigma: penalises blurred outlines."""
    gx, gy = common.image_gradients(x)
    mx, my = common.image_gradients(mean)
    sq = (gx - mx).pow(2).flatten(1).sum(1) + (gy - my).pow(2).flatten(1).sum(1)
    return 0.5 * sq * torch.exp(-2 * log_sigma)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)


@dataclass
class Objective:
    """The VAE-GAN loss: ELBO terms, the perceptual distance, and the adaptive adversarial term."""

    beta: float
    edge_weight: float
    perceptual_weight: float
    adversarial_weight: float
    features: common.PerceptualFeatures | None = None

    def elbo(self, model: EmojiVAE, x, recon, mean, logvar, beta: float) -> dict[str, torch.Tensor]:
        log_sigma = model.log_sigma.clamp(min=model.config.min_log_sigma)
        nll = gaussian_nll(x, recon, log_sigma)
        edge = edge_nll(x, recon, log_sigma)
        kl = kl_divergence(mean, logvar)
        d = x[0].numel()
        return {
            "elbo_loss": (nll + self.edge_weight * edge + beta * kl).mean() / d,  # per-dim for a stable lr
            "nll": nll.mean(),
            "kl": kl.mean(),
            "sigma": log_sigma.exp(),
            "mse": (x - recon).pow(2).mean(),
        }

    def perceptual(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        if self.features is None or self.perceptual_weight == 0:
            return torch.zeros(())
        return self.features.distance(recon, x)


def adaptive_weight(
    reconstruction: torch.Tensor, adversarial: torch.Tensor, last: torch.Tensor
) -> torch.Tensor:
    """||grad reconstruction|| / ||grad adversarial|| at the decoder's last layer (VQGAN's balance)."""
    g_rec = torch.autograd.grad(reconstruction, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adversarial, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, 1e4).detach()


def train_step(
    model: EmojiVAE,
    x: torch.Tensor,
    objective: Objective,
    beta: float,
    autocast: bool,
    generator: torch.Generator,
    discriminator: PatchDiscriminator | None = None,
) -> dict[str, torch.Tensor]:
    """The generator side's losses (``loss`` to minimise) and the reconstruction, for the discriminator."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        recon, mean, logvar = model(x, generator)
    recon, mean, logvar = recon.float(), mean.float(), logvar.float()
    out = objective.elbo(model, x, recon, mean, logvar, beta)
    out["perceptual"] = objective.perceptual(x, recon)
    reconstruction = out["elbo_loss"] + objective.perceptual_weight * out["perceptual"]
    out["adversarial"] = out["adaptive"] = torch.zeros(())
    loss = reconstruction
    if discriminator is not None:
        out["adversarial"] = -discriminator(recon).mean()
        out["adaptive"] = adaptive_weight(reconstruction, out["adversarial"], model.decoder[-1].weight)
        loss = loss + objective.adversarial_weight * out["adaptive"] * out["adversarial"]
    out["loss"], out["recon"] = loss, recon
    return out


# -- evaluation ------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: EmojiVAE, images: np.ndarray, batch_size: int = 128) -> dict[str, float]:
    """Held-out negative ELBO (beta=1, no edge term) for 8-bit data, plus PSNR."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    nelbo, kls, psnrs, psnr_sampled, edges, real_edges = [], [], [], [], [], []
    for start in range(0, len(images), batch_size):
        x = common.to_tensor(images[start : start + batch_size])
        mean, logvar = model.encode(x)
        z = model.reparameterize(mean, logvar, gen)
        recon = model.decode(z)
        log_sigma = model.log_sigma.clamp(min=model.config.min_log_sigma)
        # 8-bit pixels: P(bin) ~= density * (1/256) per dim  =>  +D*log(256) nats.
        nll = gaussian_nll(x, recon, log_sigma) + x[0].numel() * LOG256
        kl = kl_divergence(mean, logvar)
        nelbo.append(nll + kl)
        kls.append(kl)
        decoded = model.decode(mean).clamp(0, 1)
        psnrs.append(common.psnr(decoded, x))
        edges.append(common.sharpness(decoded))
        real_edges.append(common.sharpness(x))
        psnr_sampled.append(common.psnr(recon.clamp(0, 1), x))
    model.train()
    nelbo_t = torch.cat(nelbo)
    d = images[0].size
    return {
        "heldout_nelbo_nats": float(nelbo_t.mean()),
        "heldout_bits_per_dim": float(nelbo_t.mean() / (d * math.log(2))),
        "heldout_kl_nats": float(torch.cat(kls).mean()),
        "heldout_psnr_db": float(torch.cat(psnrs).mean()),
        "heldout_psnr_sampled_z_db": float(torch.cat(psnr_sampled).mean()),
        "heldout_edge_ratio": float(torch.cat(edges).mean() / torch.cat(real_edges).mean()),
        "decoder_sigma": float(model.sigma()),
        "heldout_items": len(images),
    }


# -- training ----------------------------------------------------------------------
def warm_started(published: EmojiVAE, latent_dim: int) -> EmojiVAE:
    """A VAE of ``latent_dim`` with every tensor of ``published`` whose shape still fits (the convolutions)."""
    model = EmojiVAE(**{**dict(published.config), "latent_dim": latent_dim})
    own = model.state_dict()
    fitting = {k: v for k, v in published.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    logger.info(
        "%d of %d tensors from the published %d-d model", len(fitting), len(own), published.config.latent_dim
    )
    return model


def published_models(folder: Path, latent_dim: int) -> dict | None:
    if not (folder / "config.json").is_file():
        return None
    vae = EmojiVAE.from_pretrained(folder)
    if vae.config.latent_dim != latent_dim:
        vae = warm_started(vae, latent_dim)
    return {"vae": vae, "discriminator": PatchDiscriminator()}


def train(args: argparse.Namespace, corpus: Corpus) -> tuple[dict[str, torch.nn.Module], TrainState]:
    """The VAE ("vae", ready to evaluate) and its discriminator, and where the run stopped."""
    start = loop.resume(
        args,
        {"vae": EmojiVAE, "discriminator": PatchDiscriminator},
        published=lambda folder: published_models(folder, args.latent_dim),
        scratch=lambda: {"vae": EmojiVAE(latent_dim=args.latent_dim), "discriminator": PatchDiscriminator()},
    )
    model = start.models["vae"].to(memory_format=torch.channels_last).train()
    disc = start.models["discriminator"].train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    objective = Objective(
        args.beta,
        args.edge_weight,
        args.perceptual_weight,
        args.adversarial_weight,
        common.PerceptualFeatures.from_weights() if args.perceptual_weight else None,
    )
    probe = common.to_tensor(corpus.images[corpus.split_indices("train")[: args.batch_size]])
    autocast = common.resolve_autocast(
        args.autocast,
        common.loss_probe(
            model,
            lambda on: train_step(model, probe, objective, args.beta, on, torch.Generator())["loss"],
        ),
    )
    logger.info("bf16 autocast: %s", autocast)
    sampler = common.BatchSampler(
        corpus.split_indices("train"), args.batch_size, args.seed, start.state.epoch
    )
    gen = torch.Generator().manual_seed(args.seed + start.state.step)

    def step(state: TrainState) -> dict[str, torch.Tensor]:
        x = common.hflip_augment(common.to_tensor(corpus.images[sampler.next()]), gen)
        beta = args.beta * min(1.0, (state.step + 1) / max(1, args.warmup_steps))
        adversarial = state.step >= args.adversarial_after and args.adversarial_weight > 0
        out = train_step(model, x, objective, beta, autocast, gen, disc if adversarial else None)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        out["loss_d"] = torch.zeros(())
        if adversarial:
            fake = out["recon"].detach()
            out["loss_d"] = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(fake)).mean()
            opt_d.zero_grad(set_to_none=True)
            out["loss_d"].backward()
            opt_d.step()
        return out

    state = loop.train(
        args,
        start,
        {"vae": opt, "discriminator": opt_d},
        step,
        ["loss", "nll", "kl", "sigma", "mse", "perceptual", "adversarial", "adaptive", "loss_d"],
        lr_at=lambda _, progress: loop.cosine_lr(args.lr, progress),
        sampler=sampler,
        shown=("mse", "kl", "perceptual", "loss_d"),
        desc="vae",
    )
    return {"vae": model.to(memory_format=torch.contiguous_format).eval(), "discriminator": disc}, state


# -- artifacts ------------------------------------------------------------------------
@torch.no_grad()
def corpus_latents(
    model: EmojiVAE, images: np.ndarray, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    means, logvars = [], []
    for start in range(0, len(images), batch_size):
        m, lv = model.encode(common.to_tensor(images[start : start + batch_size]))
        means.append(m)
        logvars.append(lv)
    return torch.cat(means), torch.cat(logvars)


def pca(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """PCA of the posterior means: components are rows, sorted by variance."""
    mean = z.mean(0)
    centred = z - mean
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    var = s.pow(2) / (len(z) - 1)
    return {
        "pca_mean": mean,
        "pca_components": vh,
        "pca_explained_variance": var,
        "pca_explained_variance_ratio": var / var.sum(),
    }


def write_latents(model: EmojiVAE, corpus: Corpus, out: Path) -> dict:
    mean, logvar = corpus_latents(model, corpus.images)
    stats = pca(mean.double())
    styles = sorted({r["style"] for r in corpus.rows})
    style_idx = torch.tensor([styles.index(r["style"]) for r in corpus.rows])
    style_means = torch.stack([mean[style_idx == i].mean(0) for i in range(len(styles))])
    centred = mean.double() - stats["pca_mean"]
    tensors = {
        "mean": mean.half(),
        "logvar": logvar.half(),
        "pca_coords": (centred @ stats["pca_components"][:2].T).half(),
        "style_means": style_means.float(),
        **{k: v.float() for k, v in stats.items()},
    }
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(out / "latents.safetensors"),
    )
    index = {
        "model": MODEL_NAME,
        "latent_dim": model.config.latent_dim,
        "rows": len(corpus.rows),
        "styles": styles,
        "items": [
            {
                k: r[k]
                for k in (
                    "row",
                    "id",
                    "char",
                    "name",
                    "caption",
                    "style",
                    "split",
                    "group",
                    "keywords",
                )
            }
            for r in corpus.rows
        ],
    }
    (out / "index.json").write_text(json.dumps(index, ensure_ascii=False) + "\n", encoding="utf-8")
    return {
        "explained_variance_ratio_top4": [
            round(float(v), 4) for v in stats["pca_explained_variance_ratio"][:4]
        ]
    }


SOURCES = {  # the Latent tab's sampling sources, as the card names them
    "prior": "N(0, I) prior",
    "corpus": "Gaussian fitted to the corpus",
    "posterior": "aggregate posterior",
}


def source_latents(model: EmojiVAE, folder: Path, source: str, n: int, seed: int) -> torch.Tensor:
    """``n`` latents from one of the Latent tab's sources, drawn by the tab's own pipeline."""
    from aigc_demo.config import LatentConfig
    from aigc_demo.pipelines.latent import LatentPipeline
    from aigc_demo.pipelines.latent_atlas import LatentAtlas

    pipe = LatentPipeline(model, atlas=LatentAtlas.from_folder(folder), cfg=LatentConfig(threads=1))
    drawn = [pipe.sample(n=min(64, n - i), seed=seed + i, source=source).latents for i in range(0, n, 64)]
    return torch.from_numpy(np.concatenate(drawn))


@torch.no_grad()
def sample_sharpness(model: EmojiVAE, corpus: Corpus, folder: Path, seed: int, n: int = 256) -> dict:
    """Edge statistic of samples from each source over that of real held-out tiles (1.0 = as sharp)."""
    real = common.sharpness(common.to_tensor(corpus.images[corpus.split_indices("heldout")])).mean()
    return {
        f"sample_edge_ratio_{source}": round(
            float(
                common.sharpness(
                    model.decode(source_latents(model, folder, source, n, seed)).clamp(0, 1)
                ).mean()
                / real
            ),
            3,
        )
        for source in SOURCES
    }


@torch.no_grad()
def write_grids(model: EmojiVAE, corpus: Corpus, out: Path, seed: int) -> None:
    for source in SOURCES:
        z = source_latents(model, out, source, 32, seed)
        common.save_grid(model.decode(z).clamp(0, 1), out / f"samples_{source}.png", nrow=8)
    held = corpus.split_indices("heldout")
    pick = held[np.linspace(0, len(held) - 1, 16).round().astype(int)]
    x = common.to_tensor(corpus.images[pick]).contiguous()
    recon = model.decode(model.encode(x)[0]).clamp(0, 1)
    # rows alternate: originals, reconstructions
    pairs = torch.cat([x[:8], recon[:8], x[8:], recon[8:]])
    common.save_grid(pairs, out / "reconstructions.png", nrow=8)
    a, b = model.encode(x[[0, 2, 4, 6]])[0], model.encode(x[[1, 3, 5, 7]])[0]
    t = torch.linspace(0, 1, 8).view(1, 8, 1)
    z = (a[:, None] * (1 - t) + b[:, None] * t).reshape(-1, a.shape[1])
    common.save_grid(model.decode(z).clamp(0, 1), out / "interpolation.png", nrow=8)


def blind_line(metrics: dict) -> str:
    """The blind tests of these weights' samples, once judges have made them (``bench/blind_vae.py``)."""
    tests = metrics.get("blind_samples")
    if not tests:
        return ""
    counts = " and ".join(
        f"**{t['named']} of {t['samples']}** (seed {t['seed']}: {t['detail']})" for t in tests
    )
    return (
        f"\n**Blind test** (`python bench/blind_vae.py --source {tests[0]['source']} --seed N`, {tests[0]['date']}):"
        f" judges who saw only a numbered sheet of samples, one judge per sheet, named as specific emoji {counts}.\n"
    )


def model_card(metrics: dict, corpus: Corpus) -> str:
    styles = {}
    for r in corpus.rows:
        styles[r["style_label"]] = styles.get(r["style_label"], 0) + 1
    style_list = ", ".join(f"{k} ({v})" for k, v in styles.items())
    sample_rows = "\n".join(
        f'| {label} (`source="{source}"`) | {metrics[f"sample_edge_ratio_{source}"]:.2f} | ![{source}](samples_{source}.png) |'
        for source, label in SOURCES.items()
    )
    return f"""# vae-emoji: exploration VAE-GAN with a global {metrics["latent_dim"]}-d latent

A small convolutional VAE (`aigc_demo.models.EmojiVAE`, {metrics["params_m"]:.2f} M
parameters, fp16 safetensors) trained from scratch on this project's emoji corpus. It powers the
Latent tab: samples, interpolation, PCA sliders, attribute vectors, the corpus map and nearest neighbours.

- **Data**: {len(corpus)} captioned 64x64 emoji tiles on white ({style_list}), built by
  `python -m aigc_demo.data.build_corpus`; {metrics["heldout_items"]} held-out items (split by
  subject, so no subject is seen in training in any style).
- **Objective**: Gaussian decoder with a learned shared sigma (sigma-VAE) + image-gradient term
  (weight {metrics["edge_weight"]}), KL weight beta={metrics["beta"]} after a linear warm-up; against blur,
  {metrics["perceptual_weight"]} x L1 on the LDM autoencoder's early features (perceptual) and, from step
  {metrics["adversarial_after"]}, a hinge loss against a spectral-norm PatchGAN weighted {metrics["adversarial_weight"]}
  x VQGAN's adaptive weight (the ratio of the reconstruction and adversarial gradients at the decoder's last
  layer). The discriminator stays in `runs/`.
- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over
  {metrics["runs"]} run(s); cumulative wall time {common.format_minutes(metrics["cumulative_train_seconds"])}
  (fp32; {common.trained_on(metrics)}). Runs before the VAE-GAN objective trained a 32-d sigma-VAE whose
  convolutions this model started from.

## Held-out metrics

| metric | value |
|---|---|
| reconstruction PSNR (posterior mean) | {metrics["heldout_psnr_db"]:.2f} dB |
| reconstruction edge ratio (mean gradient energy of the reconstructions over the real tiles'; 1.0 = as sharp) | {metrics["heldout_edge_ratio"]:.2f} |
| negative ELBO (beta=1, 8-bit data), nats/image | {metrics["heldout_nelbo_nats"]:.1f} |
| same, bits/dim | {metrics["heldout_bits_per_dim"]:.3f} |
| KL | {metrics["heldout_kl_nats"]:.1f} nats/image |
| decoder sigma | {metrics["decoder_sigma"]:.4f} |

## Samples

The Latent tab draws from three sources. Edge ratio: the samples' mean gradient energy over that of real
held-out tiles (256 samples).

| source | edge ratio | 32 samples |
|---|---|---|
{sample_rows}

The fitted Gaussian is `pca_mean + (eps * sqrt(pca_explained_variance)) @ pca_components`; the aggregate
posterior picks a random corpus row and adds noise at that row's own posterior spread (`mean`, `logvar` in
`latents.safetensors`), so its samples are variations of real emoji.
{blind_line(metrics)}
Held-out reconstructions (odd rows: input, even rows: reconstruction), interpolations between held-out pairs,
and the training curves (pixel MSE, KL, the perceptual distance and the discriminator's hinge loss) of the
VAE-GAN runs:

![reconstructions](reconstructions.png)

![interpolation](interpolation.png)

![loss](loss.png)

## Known failures

A single Gaussian does not fit where the corpus codes lie: draws from N(0, I) and from the fitted Gaussian
fall between emoji and mix their parts. Fine detail (text, thin strokes, flags' emblems) is lost at 64 px in
{metrics["latent_dim"]} numbers.

## Files

- `diffusion_pytorch_model.safetensors`, `config.json`: `aigc_demo.models.EmojiVAE.from_pretrained(dir)`.
- `latents.safetensors`: `mean`/`logvar` (N x {metrics["latent_dim"]}, fp16, posterior of every
  corpus row), `pca_mean`, `pca_components` (rows = directions), `pca_explained_variance(_ratio)`,
  `pca_coords` (N x 2), `style_means` (styles x {metrics["latent_dim"]}, order in `index.json`).
- `index.json`: row -> corpus item id, emoji, name, caption, style, split, group, keywords.

## License

{common.DATA_LICENSE_NOTE}
"""


def publish(model: EmojiVAE, corpus: Corpus, metrics: dict, args: argparse.Namespace) -> None:
    out = args.weights_dir
    out.mkdir(parents=True, exist_ok=True)
    save_fp16(model, out)
    # Artifacts come from the fp16 weights actually shipped, not the fp32 copy.
    shipped = EmojiVAE.from_pretrained(out)
    metrics.update(write_latents(shipped, corpus, out))
    metrics.update(sample_sharpness(shipped, corpus, out, args.seed))
    write_grids(shipped, corpus, out, args.seed)
    card = model_card(metrics, corpus)
    loop.write_record(
        out, args.run_dir, metrics, card, ["mse", "kl", "perceptual", "loss_d"], "vae-emoji training"
    )


def sharper_than_committed(weights_dir: Path, metrics: dict, heldout: np.ndarray) -> bool:
    """The publish rule: held-out reconstructions at least as faithful (PSNR) and with edges closer to the
    real tiles' (edge ratio nearer 1: blur is below it, noise above) than the committed model's, both measured
    now by ``evaluate``."""
    if not (weights_dir / "config.json").is_file():
        return True
    committed = evaluate(EmojiVAE.from_pretrained(weights_dir, torch_dtype=torch.float32), heldout)

    def edge_gap(m: dict) -> float:
        return abs(math.log(max(m["heldout_edge_ratio"], 1e-6)))

    better = metrics["heldout_psnr_db"] >= committed["heldout_psnr_db"] and edge_gap(metrics) < edge_gap(
        committed
    )
    logger.info(
        "%s: PSNR %.2f dB, edge ratio %.3f (committed %.2f dB, %.3f)",
        "publishing" if better else "NOT published",
        metrics["heldout_psnr_db"],
        metrics["heldout_edge_ratio"],
        committed["heldout_psnr_db"],
        committed["heldout_edge_ratio"],
    )
    return better


def main(argv: list[str] | None = None) -> int:
    args, command = loop.begin("aigc_demo.training.train_vae", parse_args, argv)
    corpus = load_corpus(args.data_dir)
    models, state = train(args, corpus)
    model = models["vae"]

    heldout = corpus.images[corpus.split_indices("heldout")]
    metrics = evaluate(as_shipped(model), heldout)
    logger.info("held-out: %s", json.dumps(metrics))
    if not sharper_than_committed(args.weights_dir, metrics, heldout):
        loop.after_evaluation(args, models, published=False)
        return 0
    metrics.update(
        beta=args.beta,
        edge_weight=args.edge_weight,
        perceptual_weight=args.perceptual_weight,
        adversarial_weight=args.adversarial_weight,
        adversarial_after=args.adversarial_after,
        latent_dim=model.config.latent_dim,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        **loop.run_metrics(args, state, command),
    )
    publish(model, corpus, metrics, args)
    loop.after_evaluation(args, models, published=True)
    logger.info("published to %s", args.weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
