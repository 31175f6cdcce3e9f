"""Quality numbers for generated images, measured with the project's own models.

Fréchet distance (the FID formula) on the posterior means of a VAE trained on this corpus
(``weights/vae-emoji-32d``, the 32-d sigma-VAE the exploration VAE grew from, kept fixed so that the
distances in every model card stay comparable), generated images vs real held-out images: no Inception
network can be downloaded here, and a VAE trained on this very corpus knows what emoji look like. Lower is
better; real-vs-real (train vs held-out) is printed beside it as the floor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from aigc_demo.config import WEIGHTS_DIR
from aigc_demo.models import EmojiVAE

FD_FEATURES = WEIGHTS_DIR / "vae-emoji-32d"


class VAEFeatures:
    def __init__(self, folder: str | Path = FD_FEATURES) -> None:
        self.vae = EmojiVAE.from_pretrained(folder)

    @torch.inference_mode()
    def __call__(self, images01: torch.Tensor, batch: int = 256) -> np.ndarray:
        """Images (N, 3, 64, 64) in [0, 1] -> features (N, 32)."""
        out = [self.vae.encode(images01[i : i + batch].float())[0] for i in range(0, len(images01), batch)]
        return torch.cat(out).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as in FID."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def caption_retrieval(
    images01: torch.Tensor, corpus, rows: np.ndarray, scorer_dir=None, data_dir: Path | None = None
) -> dict | None:
    """Top-1/top-5 caption retrieval of ``images01`` (image i belongs to corpus row rows[i]) among the
    canonical captions of all ``rows``, scored by the project's PromptMatch; None until a scorer is trained.
    ``data_dir`` is the corpus folder (its caption-embedding cache), default data/emoji."""
    from aigc_demo.config import WEIGHTS_DIR
    from aigc_demo.models import PromptMatch
    from aigc_demo.training.text_cache import cached_embeddings
    from aigc_demo.training.train_scorer import retrieval

    folder = Path(scorer_dir or WEIGHTS_DIR / "prompt-match")
    if not (folder / "config.json").is_file():
        return None
    captions = cached_embeddings(corpus, "sentence", data_dir)
    text = captions["emb"][captions["spans"][torch.from_numpy(np.asarray(rows)), 0]]
    return retrieval(PromptMatch.from_pretrained(folder), images01.float(), text)


def retrieval_metrics(
    generated01: torch.Tensor, real01: torch.Tensor, corpus, rows: np.ndarray, data_dir: Path | None = None
) -> dict:
    """Caption retrieval of generated vs real images of the same rows (empty until a scorer exists)."""
    generated = caption_retrieval(generated01, corpus, rows, data_dir=data_dir)
    if generated is None:
        return {}
    real = caption_retrieval(real01, corpus, rows, data_dir=data_dir)
    return {
        "heldout_generated_top1": generated["top1"],
        "heldout_generated_top5": generated["top5"],
        "heldout_real_top1": real["top1"],
        "heldout_real_top5": real["top5"],
        "top5_generated_over_real": generated["top5"] / max(real["top5"], 1e-9),
    }


def retrieval_rows(metrics: dict) -> str:
    """Model-card table rows for retrieval_metrics()."""
    if "heldout_generated_top5" not in metrics:
        return "| caption retrieval | not measured (no prompt-match scorer was trained yet) |\n"
    n = metrics["heldout_items"]
    return (
        f"| caption retrieval top-1 / top-5 among {n} held-out captions, generated images | "
        f"{metrics['heldout_generated_top1']:.3f} / {metrics['heldout_generated_top5']:.3f} |\n"
        f"| same, real held-out images | {metrics['heldout_real_top1']:.3f} / {metrics['heldout_real_top5']:.3f} |\n"
        f"| top-5 generated / real (target >= 0.8) | {metrics['top5_generated_over_real']:.3f} |\n"
    )
