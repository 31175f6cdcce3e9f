"""A statistical watermark for generated text: the green-list scheme of Kirchenbauer et al. (2023).

At every step a keyed hash of the previous token splits the vocabulary: a fraction ``GAMMA`` of it is "green"
and gets ``DELTA`` added to its logits, so the model prefers green tokens where it has a choice and barely
notices where it has none. Detection needs only the key and a tokenizer: count green tokens in the text and
compare with the ``GAMMA`` expected by chance, as a z-score. Unwatermarked text scores near 0; watermarked text
climbs with the square root of its length (SmolLM2 replies: z of 0.7-1.0 x sqrt(tokens)). Limits: short texts cannot reach the threshold,
low-entropy text (code, lists, a quote) carries little of the mark, and a paraphrase or translation removes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GAMMA = 0.25  # the green fraction of the vocabulary
DELTA = 2.0  # added to green logits
Z_THRESHOLD = 4.0  # one false alarm in ~30,000 unwatermarked texts (one-sided normal tail)
DEFAULT_KEY = 15485863
_MASK32 = np.uint64(0xFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser: a well-spread hash of 32-bit integers (in uint64 arithmetic)."""
    x = x & _MASK32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & _MASK32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & _MASK32
    x ^= x >> np.uint64(16)
    return x


def green(previous: int, tokens: np.ndarray, key: int = DEFAULT_KEY) -> np.ndarray:
    """Which of ``tokens`` are green after ``previous`` (a bool array)."""
    seed = _mix(np.uint64((key ^ (previous * 0x9E3779B1)) & 0xFFFFFFFF))
    h = _mix(np.asarray(tokens, dtype=np.uint64) * np.uint64(0x27D4EB2F) ^ seed)
    return h < np.uint64(int(GAMMA * 2**32))


class GreenListBias:
    """A logits processor for both engines: llama.cpp's ``(ids, scores: ndarray)`` and transformers'
    ``(ids: LongTensor (1, T), scores: FloatTensor (1, V))``; adds DELTA to the green tokens' logits."""

    def __init__(self, vocab_size: int, key: int = DEFAULT_KEY):
        self.key = key
        self.vocab = np.arange(vocab_size, dtype=np.uint64)

    def bias(self, previous: int) -> np.ndarray:
        return green(previous, self.vocab, self.key).astype(np.float32) * DELTA

    def __call__(self, input_ids, scores):
        if isinstance(scores, np.ndarray):  # llama.cpp: 1-D over the vocabulary
            bias = self.bias(int(input_ids[-1]))
            return scores + bias[: scores.shape[-1]]
        import torch

        bias = torch.from_numpy(self.bias(int(input_ids[0, -1])))[: scores.shape[-1]]
        return scores + bias.to(scores.device, scores.dtype)


@dataclass(frozen=True)
class Detection:
    tokens_scored: int  # tokens after the first (each needs its predecessor)
    green_tokens: int
    z: float
    watermarked: bool  # z >= Z_THRESHOLD
    tokens_needed: int | None  # at this green rate, the length at which z would reach the threshold

    @property
    def green_fraction(self) -> float:
        return self.green_tokens / self.tokens_scored if self.tokens_scored else 0.0

    def summary(self) -> str:
        if self.tokens_scored == 0:
            return "Too short to score: the text needs at least two tokens."
        verdict = "watermarked (made with this app's key)" if self.watermarked else "no watermark found"
        text = (
            f"{verdict}: z = {self.z:.1f} over {self.tokens_scored} tokens, {self.green_fraction:.0%} green "
            f"(chance: {GAMMA:.0%}; threshold z ≥ {Z_THRESHOLD:g})"
        )
        if not self.watermarked and self.tokens_needed is not None:
            text += f"; at this rate it would need about {self.tokens_needed} tokens"
        return text


def detect(token_ids: list[int], key: int = DEFAULT_KEY) -> Detection:
    """The z-score of the green count in ``token_ids`` against chance."""
    ids = np.asarray(token_ids, dtype=np.int64)
    n = max(len(ids) - 1, 0)
    if n == 0:
        return Detection(0, 0, 0.0, False, None)
    hits = sum(bool(green(int(p), np.array([t]), key)[0]) for p, t in zip(ids[:-1], ids[1:], strict=True))
    spread = math.sqrt(GAMMA * (1 - GAMMA))
    z = (hits - GAMMA * n) / (math.sqrt(n) * spread)
    rate = hits / n
    needed = math.ceil((Z_THRESHOLD * spread / (rate - GAMMA)) ** 2) if rate > GAMMA else None
    return Detection(n, hits, z, z >= Z_THRESHOLD, needed)
