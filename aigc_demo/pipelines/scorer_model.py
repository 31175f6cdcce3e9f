"""PromptMatch: the project's own CLIP-like scorer for 64x64 emoji.

A small CNN maps an image into the space of the frozen all-MiniLM-L6-v2 sentence embeddings (384-d), trained
contrastively (InfoNCE, as CLIP) on the corpus captions; see ``aigc_demo/training/train_scorer.py``. The
cosine between an image and a prompt is the "prompt match" shown beside generated images, and caption
retrieval with it measures the image models. Self-contained (torch + safetensors).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ScorerConfig:
    image_size: int = 64
    text_dim: int = 384
    channels: tuple[int, ...] = (32, 64, 128, 256)

    @classmethod
    def from_dict(cls, data: dict) -> ScorerConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)


class PromptMatch(nn.Module):
    """Images (B, 3, 64, 64) in [0, 1] -> unit vectors in MiniLM's sentence space."""

    def __init__(self, config: ScorerConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ScorerConfig()
        layers: list[nn.Module] = []
        prev = 3
        for c in cfg.channels:  # 64 -> 32 -> 16 -> 8 -> 4
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
        self.head = nn.Linear(prev, cfg.text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        h = self.body(images01 * 2 - 1).mean((2, 3))
        return F.normalize(self.head(h), dim=-1)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        (directory / CONFIG_NAME).write_text(
            json.dumps({"model_type": "PromptMatch", **asdict(self.config)}, indent=2) + "\n"
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> PromptMatch:
        directory = Path(directory)
        model = cls(ScorerConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text())))
        model.load_state_dict({k: v.float() for k, v in load_file(str(directory / WEIGHTS_NAME)).items()})
        return model.to(device).eval()
