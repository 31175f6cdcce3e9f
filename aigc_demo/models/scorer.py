"""PromptMatch: the project's own CLIP-like scorer for 64x64 emoji.

A small CNN maps an image into the space of the frozen all-MiniLM-L6-v2 sentence embeddings (384-d), trained
contrastively (InfoNCE, as CLIP) on the corpus captions; see ``aigc_demo/training/train_scorer.py``. The
cosine between an image and a prompt is the "prompt match" shown beside generated images, and caption
retrieval with it measures the image models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from aigc_demo.models.base import OwnModel


class PromptMatch(OwnModel):
    """Images (B, 3, 64, 64) in [0, 1] -> unit vectors in MiniLM's sentence space."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        text_dim: int = 384,
        channels: Sequence[int] = (32, 64, 128, 256),  # one stride-2 stage each: 64 -> 32 -> 16 -> 8 -> 4
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        self.register_to_config(channels=chans)  # one form whether built here or read from config.json
        layers: list[nn.Module] = []
        prev = 3
        for c in chans:
            layers += [
                nn.Conv2d(prev, c, 3, 1, 1),
                nn.GroupNorm(8, c),
                nn.SiLU(),
                nn.Conv2d(c, c, 4, 2, 1),
                nn.GroupNorm(8, c),
                nn.SiLU(),
            ]
            prev = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        h = self.body(images01 * 2 - 1).mean((2, 3))
        return F.normalize(self.head(h), dim=-1)
