"""Train PromptMatch, the project's CLIP-like image scorer, against frozen MiniLM caption embeddings.

    python -m aigc_demo.training.train_scorer --minutes 12 --threads 1

InfoNCE over a batch (image -> its caption among the batch's captions, and back), as CLIP; the text side is
frozen, so only the image encoder and the temperature learn. Captions are drawn from each image's phrasings;
light augmentation (flips, small shifts). Metric: caption retrieval on the held-out split (top-1/top-5 of
the right caption among all held-out canonical captions). Publishes to weights/prompt-match/ when top-5 improves.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.models import PromptMatch, save_as, save_fp16
from aigc_demo.training import common
from aigc_demo.training.common import TrainState
from aigc_demo.training.text_cache import cached_embeddings, pick_variants

logger = logging.getLogger(__name__)

MODEL_NAME = "prompt-match"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autocast", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--run-dir", type=Path, default=common.RUNS_DIR / MODEL_NAME)
    p.add_argument("--weights-dir", type=Path, default=common.WEIGHTS_DIR / MODEL_NAME)
    return p.parse_args(argv)


@torch.inference_mode()
def retrieval(scorer: PromptMatch, images01: torch.Tensor, captions: torch.Tensor) -> dict[str, float]:
    """Image i's right caption is caption i: top-1 / top-5 accuracy among all given captions."""
    feats = torch.cat([scorer(images01[i : i + 256]) for i in range(0, len(images01), 256)])
    sims = feats @ F.normalize(captions.float(), dim=-1).T
    ranks = (sims > sims.diagonal()[:, None]).sum(1)
    return {"top1": float((ranks < 1).float().mean()), "top5": float((ranks < 5).float().mean())}


def heldout_set(corpus: Corpus, captions: dict) -> tuple[torch.Tensor, torch.Tensor]:
    held = torch.from_numpy(corpus.split_indices("heldout"))
    return common.to_tensor(corpus.images[held.numpy()]), captions["emb"][captions["spans"][held, 0]]


def train(args, corpus: Corpus, captions: dict) -> tuple[PromptMatch, TrainState]:
    ckpt = args.run_dir / "checkpoint"
    state = common.load_state(args.run_dir)
    if (ckpt / "config.json").exists() and state is not None:
        model = PromptMatch.from_pretrained(ckpt)
    elif (args.weights_dir / "config.json").exists():
        model = PromptMatch.from_pretrained(args.weights_dir)
        state = common.state_from_published(args.weights_dir)
    else:
        model, state = PromptMatch(), TrainState()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    autocast = common.resolve_autocast(args.autocast)
    emb, spans = captions["emb"].float(), captions["spans"]
    sampler = common.BatchSampler(corpus.split_indices("train"), args.batch_size, args.seed, state.epoch)
    rng = torch.Generator().manual_seed(args.seed + state.step)
    log = common.LossLog(args.run_dir / "loss.csv", ["loss", "acc"], history=args.weights_dir / "loss.csv")
    timer = common.Timer(args.minutes)
    wall0 = state.wall_seconds
    state.runs += 1

    def save_weights(folder: Path) -> None:
        save_as(model, folder, torch.float32)

    bar = common.time_bar(args.minutes, "scorer")
    while not timer.done():
        rows = torch.from_numpy(sampler.next())
        x = common.hflip_augment(common.to_tensor(corpus.images[rows.numpy()]).contiguous(), rng)
        shift = torch.randint(-3, 4, (2,), generator=rng).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))  # small shifts; the background is white anyway
        text = F.normalize(emb[pick_variants(spans, rows, rng)], dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            feats = model(x)
        logits = model.logit_scale.exp().clamp(max=100) * feats.float() @ text.T
        target = torch.arange(len(rows))
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        if state.step % 10 == 0:
            acc = float((logits.argmax(1) == target).float().mean())
            log.append(
                {
                    "step": state.step,
                    "wall_seconds": wall0 + timer.elapsed(),
                    "loss": float(loss.detach()),
                    "acc": acc,
                }
            )
            bar.set_postfix(step=state.step, loss=f"{float(loss.detach()):.3f}", acc=f"{acc:.2f}")
        bar.n = min(timer.elapsed(), timer.budget)
        bar.refresh()
        if timer.checkpoint_due():
            state.epoch, state.wall_seconds = sampler.epoch, wall0 + timer.elapsed()
            common.save_checkpoint(args.run_dir, save_weights, opt, state)
    bar.close()
    state.epoch, state.wall_seconds = sampler.epoch, wall0 + timer.elapsed()
    common.save_checkpoint(args.run_dir, save_weights, opt, state)
    return model.eval(), state


def model_card(metrics: dict, corpus: Corpus) -> str:
    return f"""# prompt-match: the project's CLIP-like scorer for 64x64 emoji

A {metrics["params_m"]:.2f} M-parameter CNN that maps an image into the sentence-embedding space of the frozen
all-MiniLM-L6-v2, trained contrastively (InfoNCE) on {len(corpus)} corpus images and their caption phrasings.
The cosine between an image and a prompt is the "prompt match" the Image tab shows; caption retrieval with it
measures the image models (see their cards).

- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over {metrics["runs"]} run(s),
  {common.format_minutes(metrics["cumulative_train_seconds"])} on this machine (1 CPU thread).

| held-out caption retrieval ({metrics["heldout_items"]} images, among all {metrics["heldout_items"]} held-out captions) | value |
|---|---|
| top-1 | {metrics["heldout_top1"]:.3f} |
| top-5 | {metrics["heldout_top5"]:.3f} |
| chance top-5 | {5 / metrics["heldout_items"]:.3f} |

## License

{common.DATA_LICENSE_NOTE}
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.setup(args.threads, args.seed)
    command = "python -m aigc_demo.training.train_scorer " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    corpus = load_corpus(args.data_dir)
    captions = cached_embeddings(corpus, "sentence", args.data_dir)
    model, state = train(args, corpus, captions)
    shipped = PromptMatch.from_config(model.config)
    shipped.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    scores = retrieval(shipped.eval(), *heldout_set(corpus, captions))
    metrics = {
        "heldout_top1": scores["top1"],
        "heldout_top5": scores["top5"],
        "heldout_items": len(corpus.split_indices("heldout")),
    }
    logger.info("held-out: %s", json.dumps(metrics))
    old = common.previous_metric(args.weights_dir, "heldout_top5")
    if not common.is_better(metrics["heldout_top5"], old, higher_is_better=True):
        logger.info("NOT published: top-5 %.3f does not beat %s", metrics["heldout_top5"], old)
        return 0
    metrics.update(
        steps=state.step,
        runs=state.runs,
        batch_size=args.batch_size,
        command=command,
        cumulative_train_seconds=round(state.wall_seconds, 1),
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
    )
    save_fp16(model, args.weights_dir)
    (args.weights_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.weights_dir / "README.md").write_text(model_card(metrics, corpus), encoding="utf-8")
    logger.info("published to %s", args.weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
