"""EmojiUpscaler: a one-step 4x super-resolution network for the project's 64x64 pictures.

In the spirit of ESRGAN (Wang et al. 2018) but sized for a 2-core CPU: EDSR-style residual blocks without
BatchNorm (Lim et al. 2017) run at the *input* resolution, where they are 16x cheaper than at the output's,
and two sub-pixel convolutions (ESPCN, Shi et al. 2016) upsample 2x twice. The network predicts a residual on
top of a bicubic upscale, so an untrained network already gives the bicubic picture. Trained with pixel,
perceptual-feature and adversarial losses (``aigc_demo/training/train_upscaler.py``); ships in
``weights/emoji-upscaler``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils import spectral_norm

from aigc_demo.models.base import OwnModel


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with a scaled skip (EDSR's residual scaling keeps deep stacks stable without BN)."""

    def __init__(self, width: int, scale: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(F.relu(self.conv1(x), inplace=True))


class EmojiUpscaler(OwnModel):
    """Image in [0, 1], (B, 3, H, W) -> (B, 3, 4H, 4W) in [0, 1] (clamped at inference)."""

    @register_to_config
    def __init__(self, width: int = 48, blocks: int = 6, tail_width: int = 16) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.body_end = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.Sequential(
            nn.Conv2d(width, tail_width * 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(tail_width, 3 * 4, 3, padding=1),
            nn.PixelShuffle(2),
        )
        nn.init.zeros_(self.up[-2].weight)  # start as exact bicubic upscaling
        nn.init.zeros_(self.up[-2].bias)

    scale = 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(image, scale_factor=self.scale, mode="bicubic", align_corners=False)
        features = self.head(image * 2 - 1)
        features = features + self.body_end(self.body(features))
        out = base + self.up(features)
        return out if self.training else out.clamp(0, 1)


class PatchDiscriminator(OwnModel):
    """A PatchGAN (Isola et al. 2017) with spectral norm: one real/fake logit per ~30-px patch."""

    @register_to_config
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        for c_in, c_out in ((3, w), (w, w * 2), (w * 2, w * 4)):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        layers.append(spectral_norm(nn.Conv2d(w * 4, 1, 3, 1, 1)))
        self.body = nn.Sequential(*layers)

    @classmethod
    def from_pretrained(cls, folder, **kwargs):
        kwargs.setdefault(
            "low_cpu_mem_usage", False
        )  # spectral norm's computed weight (see GANDiscriminator)
        return super().from_pretrained(folder, **kwargs)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image * 2 - 1)
