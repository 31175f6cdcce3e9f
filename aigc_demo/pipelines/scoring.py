"""Prompt match: how close an image is to a prompt under the project's own CLIP-like scorer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from aigc_demo.models import sentence_embeddings


class PromptScorer:
    """A resident PromptMatch model and the sentence encoder whose space it maps images into."""

    def __init__(self, model, sentence_encoder: tuple):
        self.model = model.eval()
        self.sentence_encoder = sentence_encoder  # (tokenizer, BertModel)
        self.image_size = int(model.config.image_size)
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, images: Sequence[Image.Image], prompt: str) -> list[float]:
        """Cosine of each image and the prompt (higher = closer), rounded to 4 places."""
        side = self.image_size
        arrays = [
            np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)) for im in images
        ]
        x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255).permute(0, 3, 1, 2)
        text = sentence_embeddings(*self.sentence_encoder, [prompt]).to(self.device)
        return [round(float(v), 4) for v in (self.model(x.to(self.device)) @ text.T)[:, 0]]
