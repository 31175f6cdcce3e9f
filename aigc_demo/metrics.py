"""Quality figures for a set of generations, each with its n and an interval, or a plain "too few" instead.

Pictures are compared in a feature space, the prompt-match scorer's image embedding (L2-normalised, the space
the copy index keeps for every training picture), the way the field compares them in Inception's:

- **alignment**: the mean prompt match, with a t-interval;
- **diversity**: the mean cosine distance between pairs of pictures, and the share of pictures with a
  near-duplicate (within a few bits of the copy check's perceptual hash);
- **precision / recall** (Kynkäänniemi et al. 2019): the share of generated pictures inside the real pictures'
  k-nearest-neighbour balls (realism), and of real pictures inside the generated ones' (coverage; against
  random real subsets of the generated set's size, so a small set is not penalised for being small), with
  Wilson intervals;
- **KID** (Bińkowski et al. 2018): the unbiased MMD² under the cubic polynomial kernel, mean and spread over
  random subsets; unbiased at any n, but its interval says how little a few pictures tell.
- Fréchet distances are not computed under ``FRECHET_MIN`` pictures: with fewer, their bias is larger than
  the differences between models.

Text: distinct-n (the share of unique n-grams across replies), the repetition rate within a reply, length,
and the replies' mutual similarity (MiniLM cosine); perplexity comes from the text engine.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

FRECHET_MIN = 2000
KID_MIN = 4  # the unbiased estimate needs pairs within each set; below this its interval is meaningless
PR_K = 3
Z95 = 1.959964


@dataclass(frozen=True)
class Figure:
    """One number as the page shows it: the value with its 95% interval and n, or why there is none."""

    name: str
    value: float | None
    n: int
    low: float | None = None
    high: float | None = None
    note: str = ""

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return f"— ({self.note})"
        interval = f" [{self.low:.{digits}f}, {self.high:.{digits}f}]" if self.low is not None else ""
        return f"{self.value:.{digits}f}{interval} (n={self.n}{', ' + self.note if self.note else ''})"

    def as_dict(self) -> dict:
        return {
            "value": self.value, "low": self.low, "high": self.high, "n": self.n, "note": self.note,
        }  # fmt: skip


def too_few(name: str, n: int, needed: int, why: str = "") -> Figure:
    return Figure(name, None, n, note=f"too few pictures for this number: {n}, needs {needed}{why}")


def mean_interval(name: str, values: np.ndarray, note: str = "") -> Figure:
    """Mean with a normal-approximation 95% interval (a single value has none)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return too_few(name, 0, 1)
    mean = float(values.mean())
    if len(values) == 1:
        return Figure(name, mean, 1, note=note)
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Figure(name, mean, len(values), mean - half, mean + half, note)


def wilson(name: str, hits: float, n: int, note: str = "") -> Figure:
    """A proportion with its Wilson 95% interval (sound at 0, 1 and small n)."""
    if n == 0:
        return too_few(name, 0, 1)
    p = hits / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return Figure(name, p, n, 0.0 if hits == 0 else low, 1.0 if hits == n else high, note)


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def diversity(features: np.ndarray) -> Figure:
    """The mean cosine distance between pairs of pictures."""
    f = normalised(features)
    n = len(f)
    if n < 2:
        return too_few("diversity", n, 2)
    pairs = (f @ f.T)[np.triu_indices(n, 1)]
    figure = mean_interval("diversity", 1 - pairs, note=f"{len(pairs)} pairs")
    return Figure(figure.name, figure.value, n, figure.low, figure.high, figure.note)


def near_duplicates(hashes: np.ndarray, max_bits: int) -> Figure:
    """The share of pictures with another within ``max_bits`` of their perceptual hash: the same drawing,
    barely changed (the copy check's pixel criterion)."""
    from aigc_demo.provenance.copies import hamming

    n = len(hashes)
    if n < 2:
        return too_few("near-duplicates", n, 2)
    duplicated = sum(bool((np.delete(hamming(hashes, hashes[i]), i) <= max_bits).any()) for i in range(n))
    return wilson("near-duplicates", duplicated, n, note=f"within {max_bits} of 192 hash bits")


def knn_radii(f: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Each (normalised) point's distance to its k-th nearest other point, ``chunk`` rows at a time."""
    radii = np.empty(len(f))
    for start in range(0, len(f), chunk):
        d = np.sqrt(np.maximum(2 - 2 * (f[start : start + chunk] @ f.T), 0))
        d[np.arange(len(d)), np.arange(start, start + len(d))] = np.inf
        radii[start : start + chunk] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(2 - 2 * (points @ centres.T), 0))
    return (d <= radii[None, :]).any(axis=1)


def precision_recall(
    real: np.ndarray,
    fake: np.ndarray,
    k: int = PR_K,
    draws: int = 20,
    seed: int = 0,
    real_radii: np.ndarray | None = None,
) -> tuple[Figure, Figure]:
    """Improved precision and recall (k-NN manifolds). ``real`` is the reference set (e.g. the corpus);
    ``real_radii``, its knn_radii(real, k), can be passed in when it is used again and again."""
    real, fake = normalised(real), normalised(fake)
    n = len(fake)
    if n <= k or len(real) <= k:
        return too_few("precision", n, k + 1), too_few("recall", n, k + 1)
    radii = knn_radii(real, k) if real_radii is None else real_radii
    precision = wilson("precision", int(_inside(fake, real, radii).sum()), n, f"k={k}")
    rng = np.random.default_rng(seed)
    fake_radii = knn_radii(fake, k)
    covered, total = 0, 0
    for _ in range(draws):
        subset = real[rng.choice(len(real), min(n, len(real)), replace=False)]
        covered += int(_inside(subset, fake, fake_radii).sum())
        total += len(subset)
    # The draws share one generated set: the interval is the single-draw one, not narrowed by repetition.
    recall = wilson("recall", covered / draws, n, f"k={k}, real subsets of {n}, {draws} draws")
    return precision, recall


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx, kyy, kxy = (((a @ b.T) / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 50, max_subset: int = 1000, seed: int = 0
) -> Figure:
    """Kernel Inception Distance in the given feature space: mean and 2.5-97.5 percentiles over subsets of
    both sets (each of min(len(fake), max_subset) pictures)."""
    real, fake = normalised(real), normalised(fake)
    n = len(fake)
    if n < KID_MIN:
        return too_few("KID", n, KID_MIN)
    size = min(n, len(real), max_subset)
    rng = np.random.default_rng(seed)
    values = [
        _mmd2_unbiased(
            real[rng.choice(len(real), size, replace=False)], fake[rng.choice(n, size, replace=False)]
        )
        for _ in range(subsets)
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return Figure("KID", float(np.mean(values)), n, float(low), float(high), f"{subsets} subsets of {size}")


def frechet_note(n: int) -> Figure:
    """Fréchet distances are shown only from FRECHET_MIN pictures (the offline cards compute them)."""
    if n < FRECHET_MIN:
        return too_few("Fréchet distance", n, FRECHET_MIN, "; below that its bias hides the differences")
    return Figure("Fréchet distance", None, n, note="computed offline (model cards)")


# -- text ---------------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: list[str], n: int) -> Figure:
    """Unique n-grams / all n-grams, over all replies together (Li et al. 2016)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    if not grams:
        return Figure(f"distinct-{n}", None, len(texts), note="no text")
    return Figure(f"distinct-{n}", len(set(grams)) / len(grams), len(texts), note=f"{len(grams)} {n}-grams")


def repetition_rate(text: str, n: int = 4) -> float:
    """Share of a reply's n-grams that repeat an earlier one in it (0: none; loops approach 1)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    return sum(c - 1 for c in Counter(grams).values()) / len(grams)


def mutual_similarity(embeddings: np.ndarray) -> Figure:
    """Mean cosine between different replies (sentence embeddings): high means the replies say the same."""
    f = normalised(embeddings)
    if len(f) < 2:
        return Figure("similarity", None, len(f), note="needs 2 replies")
    pairs = (f @ f.T)[np.triu_indices(len(f), 1)]
    figure = mean_interval("similarity", pairs, note=f"{len(pairs)} pairs")
    return Figure(figure.name, figure.value, len(f), figure.low, figure.high, figure.note)
