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
import sys

import torch
import torch.nn.functional as F

from aigc_demo.data.corpus import Corpus, load_corpus
from aigc_demo.models import PromptMatch, save_fp16
from aigc_demo.training import common, loop
from aigc_demo.training.common import TrainState
from aigc_demo.training.loop import as_shipped
from aigc_demo.training.text_cache import cached_embeddings, pick_variants

logger = logging.getLogger(__name__)

MODEL_NAME = "prompt-match"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return loop.training_parser(MODEL_NAME, minutes=12.0, lr=1e-3, batch_size=128, doc=__doc__).parse_args(
        argv
    )


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


def train(args: argparse.Namespace, corpus: Corpus, captions: dict) -> tuple[PromptMatch, TrainState]:
    start = loop.resume(
        args,
        {"scorer": PromptMatch},
        published=lambda folder: (
            {"scorer": PromptMatch.from_pretrained(folder)} if (folder / "config.json").is_file() else None
        ),
        scratch=lambda: {"scorer": PromptMatch()},
    )
    model = start.models["scorer"].train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    autocast = common.resolve_autocast(args.autocast)
    emb, spans = captions["emb"].float(), captions["spans"]
    sampler = common.BatchSampler(
        corpus.split_indices("train"), args.batch_size, args.seed, start.state.epoch
    )
    rng = torch.Generator().manual_seed(args.seed + start.state.step)

    def step(state: TrainState) -> dict[str, torch.Tensor]:
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
        return {"loss": loss, "acc": (logits.argmax(1) == target).float().mean()}

    state = loop.train(
        args,
        start,
        {"scorer": opt},
        step,
        ["loss", "acc"],
        sampler=sampler,
        shown=("loss", "acc"),
        desc="scorer",
    )
    return model.eval(), state


def model_card(metrics: dict, corpus: Corpus) -> str:
    return f"""# prompt-match: the project's CLIP-like scorer for 64x64 emoji

A {metrics["params_m"]:.2f} M-parameter CNN that maps an image into the sentence-embedding space of the frozen
all-MiniLM-L6-v2, trained contrastively (InfoNCE) on {len(corpus)} corpus images and their caption phrasings.
The cosine between an image and a prompt is the "prompt match" the Image tab shows; caption retrieval with it
measures the image models (see their cards).

- **Command** (last run): `{metrics["command"]}`
- **Training**: {metrics["steps"]} steps of batch {metrics["batch_size"]} over {metrics["runs"]} run(s),
  {common.format_minutes(metrics["cumulative_train_seconds"])} ({common.trained_on(metrics)}).

| held-out caption retrieval ({metrics["heldout_items"]} images, among all {metrics["heldout_items"]} held-out captions) | value |
|---|---|
| top-1 | {metrics["heldout_top1"]:.3f} |
| top-5 | {metrics["heldout_top5"]:.3f} |
| chance top-5 | {5 / metrics["heldout_items"]:.3f} |

## License

{common.DATA_LICENSE_NOTE}
"""


def main(argv: list[str] | None = None) -> int:
    args, command = loop.begin("aigc_demo.training.train_scorer", parse_args, argv)
    corpus = load_corpus(args.data_dir)
    captions = cached_embeddings(corpus, "sentence", args.data_dir)
    model, state = train(args, corpus, captions)
    scores = retrieval(as_shipped(model), *heldout_set(corpus, captions))
    metrics = {
        "heldout_top1": scores["top1"],
        "heldout_top5": scores["top5"],
        "heldout_items": len(corpus.split_indices("heldout")),
    }
    logger.info("held-out: %s", json.dumps(metrics))
    if not loop.beats_published(args.weights_dir, "heldout_top5", metrics["heldout_top5"], True):
        return 0
    metrics.update(
        params_m=sum(p.numel() for p in model.parameters()) / 1e6, **loop.run_metrics(args, state, command)
    )
    save_fp16(model, args.weights_dir)
    card = model_card(metrics, corpus)
    loop.write_record(
        args.weights_dir, args.run_dir, metrics, card, ["loss", "acc"], "prompt-match", log_y=False
    )
    logger.info("published to %s", args.weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
