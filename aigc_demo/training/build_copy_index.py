"""Build weights/copy-index: the training pictures' fingerprints, with thresholds calibrated on held-out art.

    python -m aigc_demo.training.build_copy_index [--generated 96]

Needs the corpus (data/emoji) and the committed prompt-match scorer and diffusion model. Writes the scorer
embedding and 192-bit perceptual hash of every training picture and where each came from, then measures how
often pictures are flagged as copies at the thresholds below: held-out corpus art (real, never trained on),
training pictures themselves, and the diffusion model's pictures for held-out and for training captions.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from PIL import Image

from aigc_demo.config import WEIGHTS_DIR, ImageConfig
from aigc_demo.data.corpus import load_corpus
from aigc_demo.provenance.copies import embed_pictures, hamming, perceptual_hash

OUT = WEIGHTS_DIR / "copy-index"
# Close in both: at most 6 of 192 hash bits apart and 0.99 alike under the scorer. Held-out corpus art reaches
# that only where the corpus has one drawing under two names ("man pilot" / "pilot"): 2.4% of it.
PIXEL_BITS, EMBEDDING = 6, 0.99


def embed_all(scorer, images) -> torch.Tensor:
    return torch.cat([embed_pictures(scorer, images[i : i + 256]) for i in range(0, len(images), 256)])


def nearest(scorer, index_emb, index_hash, images) -> tuple[np.ndarray, np.ndarray]:
    """Each picture's highest embedding cosine and fewest differing hash bits to the index."""
    sims = (embed_all(scorer, images) @ index_emb.T).max(dim=1).values.numpy()
    bits = np.array([hamming(index_hash, perceptual_hash(im)).min() for im in images])
    return sims, bits


def card(metrics: dict) -> str:
    rows = "\n".join(f"| {name} | {rate:.1%} |" for name, rate in metrics["flagged"].items())
    return f"""# copy-index: fingerprints of the training pictures, for the copy check

Not a model: for each of the {metrics["training_pictures"]:,} training pictures of the emoji corpus, the
prompt-match scorer's image embedding (384 numbers, fp16) and a 192-bit perceptual hash (per colour channel,
the signs of the 8x8 lowest DCT frequencies of the 32x32 picture against their median), with the picture's
name, caption and style. No pixels. The Image and Verify tabs compare a picture with all of them
(`aigc_demo/provenance/copies.py`) and name the nearest training pictures with their licence.

- **Command**: `python -m aigc_demo.training.build_copy_index` (needs the corpus in `data/emoji`).
- **Likely copy**: one training picture within {metrics["thresholds"]["pixel_bits"]} of 192 hash bits *and* at
  least {metrics["thresholds"]["embedding"]} alike in the scorer's embedding.

## Flagged as likely copies

| pictures | flagged |
|---|---|
{rows}

Held-out corpus art is flagged where the corpus holds one drawing under two names ("man pilot" and
"pilot", "man firefighter" and "firefighter") and where two drawings differ only in colour ("red" and "white
question mark"): copies in the sense the check means. The diffusion
model's pictures come from 20-step DPM-Solver++ at guidance 5, one per caption.

## Known failures

The hash sees 32x32 shapes and the embedding sees subjects: two different drawings of a plain circle, square
or heart can come close in both, and a copy that is recoloured, mirrored or moved off centre can escape.

## License

Derived from the training data, which mixes Noto Color Emoji (SIL OFL 1.1), OpenMoji (CC BY-SA 4.0) and
Twemoji graphics (CC BY 4.0); see `aigc_demo/data/CREDITS.md`. Released under **CC BY-SA 4.0**, with
attribution to OpenMoji, Twemoji (Twitter, Inc and other contributors) and Google's Noto Emoji.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generated", type=int, default=96, help="pictures drawn per caption set for the rates")
    args = ap.parse_args(argv)
    from safetensors.torch import save_file

    from aigc_demo.models import PromptMatch
    from aigc_demo.pipelines.image import ImagePipeline

    torch.manual_seed(0)
    corpus = load_corpus()
    scorer = PromptMatch.from_pretrained(WEIGHTS_DIR / "prompt-match").eval()
    pictures = [Image.fromarray(img[..., :3]) for img in corpus.images]
    train = [i for i, r in enumerate(corpus.rows) if r["split"] == "train"]
    held = [i for i, r in enumerate(corpus.rows) if r["split"] != "train"]
    embeddings = embed_all(scorer, [pictures[i] for i in train])
    hashes = np.stack([perceptual_hash(pictures[i]) for i in train])

    thresholds = {"pixel_bits": PIXEL_BITS, "embedding": EMBEDDING}

    def flagged(images) -> np.ndarray:
        """Per picture: is any one training picture close in both pixels and meaning?"""
        sims = (embed_all(scorer, images) @ embeddings.T).numpy()
        return np.array(
            [((hamming(hashes, perceptual_hash(im)) <= PIXEL_BITS) & (row >= EMBEDDING)).any()
             for im, row in zip(images, sims, strict=True)]
        )  # fmt: skip

    held_real = flagged([pictures[i] for i in held])

    pipe = ImagePipeline.from_config(ImageConfig(compile="off", gan="", student="", upscaler=""))
    rng = np.random.default_rng(0)

    def drawn(rows):
        captions = [corpus.rows[i]["caption"] for i in rng.choice(rows, args.generated, replace=False)]
        out = []
        for k in range(0, len(captions), 8):
            params = {"prompt": captions[k], "seed": k, "num_inference_steps": 20}
            panels = [(c, k + j) for j, c in enumerate(captions[k : k + 8])]
            out += list(pipe.draw_panels(params, panels))[-1].images
        return out

    rates = {
        name: float(flagged(drawn(rows)).mean())
        for name, rows in (("held-out captions", held), ("training captions", train))
    }
    metrics = {
        "training_pictures": len(train),
        "held_out_pictures": len(held),
        "thresholds": thresholds,
        "flagged": {
            "held-out corpus art (real, never trained on)": float(held_real.mean()),
            "training pictures themselves (first 200)": float(
                flagged([pictures[i] for i in train[:200]]).mean()
            ),
            **{f"generated from {name} ({args.generated})": rate for name, rate in rates.items()},
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(
        {"embeddings": embeddings.half(), "hashes": torch.from_numpy(hashes.view(np.int64))},
        str(OUT / "index.safetensors"),
    )
    keep = ("id", "name", "caption", "style")
    items = [{k: corpus.rows[i][k] for k in keep} for i in train]
    (OUT / "index.json").write_text(
        json.dumps({"thresholds": thresholds, "items": items}, ensure_ascii=False)
    )
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (OUT / "README.md").write_text(card(metrics), encoding="utf-8")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
