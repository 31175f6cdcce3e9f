"""Quality metrics on synthetic features with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from aigc_demo import metrics


def cloud(n: int, centre: int, seed: int, dim: int = 16, spread: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.zeros(dim)
    base[centre] = 1.0
    return base + spread * rng.standard_normal((n, dim))


def test_identical_sets_have_full_precision_and_recall_and_no_kid():
    real = cloud(200, 0, seed=1)
    p, r = metrics.precision_recall(real[:50], real[:50])
    assert p.value == r.value == 1.0 and p.n == 50
    assert p.low < 1.0 <= p.high
    p, r = metrics.precision_recall(real, cloud(50, 0, seed=4))  # the same distribution, other samples
    assert p.value >= 0.7 and r.value >= 0.6, (p, r)
    same = metrics.kid(real, real[:100])
    assert abs(same.value) < 0.01 and same.low < 0.01 and same.n == 100


def test_disjoint_sets_score_low_and_kid_is_large():
    real, fake = cloud(200, 0, seed=1), cloud(50, 5, seed=2)
    p, r = metrics.precision_recall(real, fake)
    assert p.value == 0.0 and r.value == 0.0 and p.high < 0.1
    far = metrics.kid(real, fake)
    assert far.value > 10 * abs(metrics.kid(real, cloud(50, 0, seed=3)).value) and far.low > 0


def test_diversity_and_near_duplicates():
    assert metrics.diversity(np.repeat(cloud(1, 0, seed=1), 6, axis=0)).value == pytest.approx(0, abs=1e-9)
    varied = metrics.diversity(np.eye(6))
    assert varied.value == pytest.approx(1.0) and varied.n == 6 and varied.note == "15 pairs"
    hashes = np.array([[0, 0, 0], [0, 0, 0b111], [2**40 - 1, 0, 0], [0, 2**50 - 1, 0]], dtype=np.uint64)
    dupes = metrics.near_duplicates(hashes, max_bits=6)  # the first two differ in 3 bits, the others in 40+
    assert dupes.value == 0.5 and dupes.n == 4


def test_knn_radii_in_chunks_equal_the_whole():
    f = metrics.normalised(cloud(300, 0, seed=5))
    d = np.sqrt(np.maximum(2 - 2 * f @ f.T, 0))
    np.fill_diagonal(d, np.inf)
    assert np.allclose(metrics.knn_radii(f, 3, chunk=64), np.sort(d, axis=1)[:, 2])


def test_small_sets_say_too_few_instead_of_a_number():
    one = cloud(1, 0, seed=1)
    assert metrics.diversity(one).value is None and "too few" in metrics.diversity(one).text()
    assert metrics.kid(cloud(100, 0, 1), cloud(3, 0, 2)).value is None
    assert metrics.precision_recall(cloud(100, 0, 1), cloud(3, 0, 2))[0].value is None
    frechet = metrics.frechet_note(9)
    assert frechet.value is None and "needs 2000" in frechet.note


def test_text_metrics():
    loop = "the cat sat on the mat " * 5
    assert metrics.repetition_rate(loop) > 0.7 and metrics.repetition_rate("a b c d e f g") == 0
    assert metrics.distinct_n(["a b c", "a b c"], 1).value == 0.5
    assert metrics.distinct_n(["a b c", "d e f"], 2).value == 1.0
    same = metrics.mutual_similarity(np.ones((3, 4)))
    assert same.value == pytest.approx(1.0) and same.n == 3
