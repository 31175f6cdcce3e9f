"""EmojiGAN: a caption-conditional DCGAN generator and discriminator for 64x64 emoji.

The architecture is the DCGAN of Radford et al. (2015): strided transposed convolutions with BatchNorm
and ReLU in the generator, strided convolutions with LeakyReLU in the discriminator. Conditioning is the
frozen all-MiniLM-L6-v2 *sentence* embedding (mean-pooled, 384-d): the generator concatenates a learned
projection of it to z; the discriminator scores it by projection (Miyato & Koyama 2018), which is the
cheapest form that reliably learns the condition. Training uses the original GAN losses (Goodfellow et al.
2014, non-saturating generator loss); see ``aigc_demo/training/train_gan.py``.

Self-contained (torch + safetensors) because the serving pipeline imports it; the generator ships as
``generator.safetensors`` + ``config.json``; the discriminator stays in ``runs/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import spectral_norm

GENERATOR_WEIGHTS = "generator.safetensors"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class EmojiGANConfig:
    image_size: int = 64
    z_dim: int = 64  # noise dimensions: the sliders of the Image tab move along these
    text_dim: int = 384  # MiniLM sentence embedding
    cond_dim: int = 64  # the caption's learned projection, concatenated to z
    width: int = 32  # channels of the last generator / first discriminator stage (DCGAN's ngf/ndf / 2)

    @classmethod
    def from_dict(cls, data: dict) -> EmojiGANConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Generator(nn.Module):
    """(z, caption embedding) -> image (B, 3, 64, 64) in [-1, 1] (tanh)."""

    def __init__(self, config: EmojiGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EmojiGANConfig()
        w = cfg.width
        self.condition = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2))
        self.project = nn.Sequential(  # z + c -> 4x4 x 8w, as DCGAN's first "deconvolution"
            nn.ConvTranspose2d(cfg.z_dim + cfg.cond_dim, w * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(w * 8),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in ((w * 8, w * 4), (w * 4, w * 2), (w * 2, w)):  # 4 -> 8 -> 16 -> 32
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh()]  # 32 -> 64
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.condition(text)], dim=1)[:, :, None, None]
        return self.body(self.project(h))

    # -- persistence ------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        # BatchNorm's step counter is an integer; everything else ships in ``dtype``.
        state = {k: (v if not v.is_floating_point() else v.to(dtype)) for k, v in state.items()}
        save_file(state, str(directory / GENERATOR_WEIGHTS), metadata={"format": "pt"})
        config = {"model_type": "EmojiGAN", **asdict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Generator:
        directory = Path(directory)
        config = EmojiGANConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
        model = cls(config)
        state = load_file(str(directory / GENERATOR_WEIGHTS))
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
        return model.to(device).eval()


class Discriminator(nn.Module):
    """(image in [-1, 1], caption embedding) -> real/fake logit, with spectral norm for stability."""

    def __init__(self, config: EmojiGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EmojiGANConfig()
        w = cfg.width
        layers: list[nn.Module] = []
        for c_in, c_out in ((3, w), (w, w * 2), (w * 2, w * 4), (w * 4, w * 8)):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        self.body = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(w * 8 * 16, 1))
        self.embed = spectral_norm(nn.Linear(cfg.text_dim, w * 8 * 16, bias=False))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.body(image).flatten(1)
        # Projection conditioning: unconditional realism + agreement of the features with the caption.
        return (self.score(h) + (self.embed(text) * h).sum(1, keepdim=True)).squeeze(1)
