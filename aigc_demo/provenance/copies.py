"""Copies: how close a picture comes to the training images, and whose artwork those are.

Two measures against every training picture of the emoji corpus, both kept in ``weights/copy-index`` (built by
``python -m aigc_demo.provenance.copies --build``; fingerprints, not pictures):

- meaning: the cosine of the prompt-match scorer's image embeddings (the same subject drawn alike scores high);
- pixels: the Hamming distance of 192-bit perceptual hashes (per colour channel, the DCT of the 32x32 picture,
  the sign of its lowest frequencies against their median): near-identical pictures differ in a few bits.

A picture is flagged as a likely copy when one training picture is close in both: within ``pixel_bits`` in
pixels and at least ``embedding`` in meaning. The card (``weights/copy-index/README.md``) gives the rates on
held-out corpus art (which has its own near-duplicates: "man pilot" and "pilot" are one drawing) and on the
diffusion model's pictures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

LICENCES = {
    "noto": ("SIL OFL 1.1", "Noto Color Emoji, Copyright Google LLC"),
    "openmoji": ("CC BY-SA 4.0", "OpenMoji, the open-source emoji and icon project (openmoji.org)"),
    "twemoji": ("CC BY 4.0", "Twemoji graphics, Copyright Twitter, Inc and other contributors"),
}


def perceptual_hash(image: Image.Image) -> np.ndarray:
    """3 x 64 bits, one per colour channel: the 8x8 lowest DCT frequencies (DC excluded) of the channel at
    32x32 against their median. Per channel, so a red square and a blue one differ."""
    from scipy.fft import dctn

    rgb = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    words = []
    for channel in range(3):
        low = dctn(rgb[..., channel], norm="ortho")[:8, :8].ravel()
        bits = low > np.median(low[1:])
        bits[0] = False  # the DC term says how bright, not what
        words.append(np.packbits(bits).view(">u8")[0])
    return np.array(words, dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between each row of hashes ``a`` (N, 3) and the hash ``b`` (3,)."""
    x = np.bitwise_xor(a, b[None, :]).astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(len(a), -1), axis=1).sum(axis=1)


@dataclass(frozen=True)
class Neighbour:
    item_id: str  # "<style>:<code points>": data.sources.render_item draws it again from its source
    name: str
    caption: str
    style: str
    licence: str
    attribution: str
    similarity: float  # scorer embedding cosine
    pixel_bits: int  # perceptual-hash bits that differ (of 192)


@dataclass(frozen=True)
class CopyCheck:
    nearest: list[Neighbour]  # by meaning, closest first
    nearest_in_pixels: Neighbour
    likely_copy: bool
    reason: str


class CopyIndex:
    """The training pictures' fingerprints and where each came from; checks run on the image pipeline's thread."""

    def __init__(
        self, embeddings: torch.Tensor, hashes: np.ndarray, items: list[dict], thresholds: dict, scorer
    ):
        self.embeddings = embeddings.float()  # (N, D), L2-normalised
        self.hashes = hashes.astype(np.uint64)
        self.items = items
        self.pixel_bits = int(thresholds["pixel_bits"])
        self.embedding = float(thresholds["embedding"])
        self.scorer = scorer  # a PromptScorer (its model embeds pictures)

    @classmethod
    def from_folder(cls, folder: Path, scorer) -> CopyIndex:
        from safetensors.torch import load_file

        tensors = load_file(Path(folder) / "index.safetensors")
        meta = json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))
        hashes = tensors["hashes"].numpy().view(np.uint64).reshape(-1, 3)
        return cls(tensors["embeddings"], hashes, meta["items"], meta["thresholds"], scorer)

    def neighbour(self, row: int, similarity: float, bits: int) -> Neighbour:
        item = self.items[row]
        licence, attribution = LICENCES.get(item["style"], ("unknown", "unknown"))
        return Neighbour(
            item["id"], item["name"], item["caption"], item["style"], licence, attribution, similarity, bits
        )

    def check(self, image: Image.Image, k: int = 3) -> CopyCheck:
        embedding = embed_pictures(self.scorer.model, [image])[0]
        sims = self.embeddings @ embedding
        bits = hamming(self.hashes, perceptual_hash(image))
        top = torch.topk(sims, k).indices.tolist()
        nearest = [self.neighbour(r, round(float(sims[r]), 4), int(bits[r])) for r in top]
        p = int(bits.argmin())
        in_pixels = self.neighbour(p, round(float(sims[p]), 4), int(bits[p]))
        close = (bits <= self.pixel_bits) & (sims.numpy() >= self.embedding)
        if not close.any():
            return CopyCheck(
                nearest, in_pixels, False, "no training picture is close in both pixels and meaning"
            )
        row = int(close.argmax())
        c = self.neighbour(row, round(float(sims[row]), 4), int(bits[row]))
        reason = (
            f"“{c.caption}” is within {c.pixel_bits} of 192 hash bits and {c.similarity:.3f} alike in meaning"
        )
        return CopyCheck(nearest, in_pixels, True, reason)


@torch.inference_mode()
def embed_pictures(model, images: list[Image.Image]) -> torch.Tensor:
    """The scorer's L2-normalised image embeddings (N, D)."""
    side = int(model.config.image_size)
    arrays = [np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)) for im in images]
    x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255).permute(0, 3, 1, 2)
    return model(x.to(next(model.parameters()).device)).float().cpu()
