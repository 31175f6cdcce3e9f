"""Grounding: a scene's picture description -> prompts the project's own image model can draw.

The embedded models learnt the emoji corpus's vocabulary ("umbrella with rain drops"), not the whole world.
Each corpus subject's name is embedded once with the MiniLM sentence encoder; a description is matched by
cosine similarity, and the best names become prompts in the corpus's caption form ("umbrella with rain
drops, in Twemoji style"). A hub model (any Stable Diffusion id) knows the world, so it gets no grounding.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

STYLE_LABELS = {"noto": "Noto Color Emoji", "openmoji": "OpenMoji", "twemoji": "Twemoji"}


@dataclass(frozen=True)
class Suggestion:
    name: str  # the corpus subject
    similarity: float  # cosine of the description and the name under MiniLM

    def prompt(self, style: str) -> str:
        return styled(self.name, style)


def styled(subject: str, style: str) -> str:
    """A prompt in the corpus's caption form: "umbrella, in Twemoji style"."""
    return f"{subject}, in {STYLE_LABELS.get(style, style)} style" if style else subject


class Grounding:
    """Nearest corpus subjects to a description, by MiniLM similarity."""

    def __init__(self, names: list[str], encode) -> None:
        self.names = names
        self._encode = encode  # list[str] -> (N, 384) L2-normalised
        self._table = encode(names)

    @classmethod
    def from_index(cls, index: str | Path, encode) -> Grounding:
        """Subjects from a corpus index (``weights/vae-emoji/index.json``): those the models trained on."""
        items = json.loads(Path(index).read_text(encoding="utf-8"))["items"]
        names = sorted({i["name"] for i in items if i.get("split", "train") == "train" and i.get("name")})
        if not names:
            raise ValueError(f"{index} lists no subjects")
        return cls(names, encode)

    def suggest(self, descriptions: list[str], k: int = 3) -> list[list[Suggestion]]:
        """The ``k`` nearest subjects to each description, best first."""
        if not descriptions:
            return []
        scores = self._encode(descriptions) @ self._table.T
        top = torch.topk(scores, min(k, len(self.names)), dim=1)
        return [
            [Suggestion(self.names[int(j)], round(float(v), 3)) for v, j in zip(vals, idx, strict=True)]
            for vals, idx in zip(top.values, top.indices, strict=True)
        ]


@functools.cache
def minilm_encoder(spec: str):
    """A batched ``encode(texts) -> (N, 384)`` on the MiniLM sentence encoder (``models.text_encoder``); one
    per process, shared by the filter, the grounding index and Evaluate."""
    from aigc_demo.models import load_text_encoder, sentence_embeddings

    tokenizer, model = load_text_encoder(spec)

    @torch.inference_mode()
    def encode(texts: list[str]) -> torch.Tensor:
        return torch.cat(
            [sentence_embeddings(tokenizer, model, texts[i : i + 256]) for i in range(0, len(texts), 256)]
        )

    return encode
