"""Load the built emoji corpus (images + manifest) for training and analysis."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aigc_demo.data.paths import corpus_dir


@dataclass
class Corpus:
    images: np.ndarray  # uint8, N x S x S x 3
    rows: list[dict]  # manifest rows, same order as images

    def split_indices(self, split: str) -> np.ndarray:
        return np.array([i for i, r in enumerate(self.rows) if r["split"] == split], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)


def load_corpus(root: Path | None = None, size: int = 64) -> Corpus:
    root = root or corpus_dir()
    images_path = root / f"images_{size}.npy"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} not found; build the corpus with: python -m aigc_demo.data.build_corpus"
            + (f" --sizes {size}" if size != 64 else "")
        )
    images = np.load(images_path)
    with open(root / "manifest.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    if len(rows) != len(images):
        raise ValueError(f"manifest has {len(rows)} rows but {images_path} has {len(images)}")
    return Corpus(images=images, rows=rows)
