"""EmojiGAN: a caption-conditional DCGAN generator and discriminator for 64x64 emoji.

The architecture is the DCGAN of Radford et al. (2015): strided transposed convolutions with BatchNorm
and ReLU in the generator, strided convolutions with LeakyReLU in the discriminator. Conditioning is the
frozen all-MiniLM-L6-v2 *sentence* embedding (mean-pooled, 384-d): the generator concatenates a learned
projection of it to z; the discriminator scores it by projection (Miyato & Koyama 2018), which is the
cheapest form that reliably learns the condition. With ``conditional_norm`` the generator also sets every
BatchNorm's gain and bias from z and the caption (BigGAN's conditional BatchNorm, Brock et al. 2019), so
the caption steers each stage, not only the first. Training uses the original GAN losses (Goodfellow et al.
2014, non-saturating generator loss); see ``aigc_demo/training/train_gan.py``. The generator ships in
``weights/emoji-gan``; the discriminator stays in ``runs/``.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils import spectral_norm

from aigc_demo.models.base import OwnModel


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose gain and bias come from a condition vector (starting as plain BatchNorm)."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)
        for layer in (self.gain, self.bias):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain, bias = 1 + self.gain(cond), self.bias(cond)
        return self.norm(x) * gain[:, :, None, None] + bias[:, :, None, None]


class GANGenerator(OwnModel):
    """(z, caption embedding) -> image (B, 3, 64, 64) in [-1, 1] (tanh)."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        z_dim: int = 64,  # noise dimensions: the sliders of the Image tab move along these
        text_dim: int = 384,  # MiniLM sentence embedding
        cond_dim: int = 64,  # the caption's learned projection, concatenated to z
        width: int = 32,  # channels of the last generator stage (DCGAN's ngf / 2)
        conditional_norm: bool = False,  # every BatchNorm's gain and bias from (z, caption)
    ) -> None:
        super().__init__()
        w = width
        self.condition = nn.Sequential(nn.Linear(text_dim, cond_dim), nn.LeakyReLU(0.2))
        if conditional_norm:
            self._build_conditional(z_dim + cond_dim, w)
            return
        self.project = nn.Sequential(  # z + c -> 4x4 x 8w, as DCGAN's first "deconvolution"
            nn.ConvTranspose2d(z_dim + cond_dim, w * 8, 4, 1, 0, bias=False),
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

    def _build_conditional(self, in_dim: int, w: int) -> None:
        """The same stages (4 -> 8 -> 16 -> 32 -> 64), each normalised by a ConditionalBatchNorm."""
        channels = (w * 8, w * 8, w * 4, w * 2, w)
        self.convs = nn.ModuleList([nn.ConvTranspose2d(in_dim, w * 8, 4, 1, 0, bias=False)])
        self.convs.extend(
            nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in zip(channels[1:-1], channels[2:])
        )
        self.norms = nn.ModuleList(ConditionalBatchNorm(c, in_dim) for c in channels[1:])
        self.to_rgb = nn.Sequential(nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        zc = torch.cat([z, self.condition(text)], dim=1)
        if not self.config.conditional_norm:
            return self.body(self.project(zc[:, :, None, None]))
        h = zc[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = torch.relu(norm(conv(h), zc))
        return self.to_rgb(h)


class GANDiscriminator(OwnModel):
    """(image in [-1, 1], caption embedding) -> real/fake logit, with spectral norm for stability."""

    @register_to_config
    def __init__(self, image_size: int = 64, text_dim: int = 384, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        for c_in, c_out in ((3, w), (w, w * 2), (w * 2, w * 4), (w * 4, w * 8)):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        self.body = nn.Sequential(*layers)
        flat = w * 8 * (image_size // 16) ** 2
        self.score = spectral_norm(nn.Linear(flat, 1))
        self.embed = spectral_norm(nn.Linear(text_dim, flat, bias=False))

    @classmethod
    def from_pretrained(cls, folder, **kwargs) -> GANDiscriminator:
        # spectral_norm keeps `weight` as a plain attribute computed from weight_orig/u/v; built on the
        # meta device it would stay meta until the next forward, so build the model for real.
        kwargs.setdefault("low_cpu_mem_usage", False)
        return super().from_pretrained(folder, **kwargs)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.body(image).flatten(1)
        # Projection conditioning: unconditional realism + agreement of the features with the caption.
        return (self.score(h) + (self.embed(text) * h).sum(1, keepdim=True)).squeeze(1)
