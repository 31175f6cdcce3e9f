"""EmojiVAE: a small convolutional VAE with a global latent vector.

64x64 RGB in [0, 1] -> z (``latent_dim``, default 32) -> 64x64 RGB. The decoder is a Gaussian with one
learned, shared standard deviation (``log_sigma``, the "sigma-VAE" of Rybkin et al. 2021): learning it
balances reconstruction against KL automatically, which keeps samples sharper than a hand-tuned MSE weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn

from aigc_demo.models.base import OwnModel


def _conv_block(c_in: int, c_out: int, groups: int, stride: int = 1) -> nn.Sequential:
    kernel, pad = (4, 1) if stride == 2 else (3, 1)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, pad),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.SiLU(),
    )


def _up_block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.SiLU(),
        _conv_block(c_out, c_out, groups),
    )


class EmojiVAE(OwnModel):
    """Global-latent VAE. Images are float tensors (B, 3, H, W) in [0, 1]."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        latent_dim: int = 32,
        # encoder widths per stride-2 stage; the decoder mirrors them
        channels: Sequence[int] = (32, 64, 128, 256),
        groups: int = 8,  # GroupNorm groups
        min_log_sigma: float = -4.6,  # floor on the decoder std (~0.01) keeps the NLL finite
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        self.register_to_config(channels=chans)  # one form whether built here or read from config.json
        if image_size % 2 ** len(chans):
            raise ValueError("image_size must be divisible by 2**len(channels)")
        enc: list[nn.Module] = [_conv_block(in_channels, chans[0], groups)]
        prev = chans[0]
        for c in chans:
            enc += [_conv_block(prev, c, groups, stride=2), _conv_block(c, c, groups)]
            prev = c
        self.encoder = nn.Sequential(*enc)
        flat = chans[-1] * self.bottleneck**2
        self.to_stats = nn.Linear(flat, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        dec: list[nn.Module] = []
        widths = chans[::-1]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            dec.append(_up_block(c_in, c_out, groups))
        # Last upsampling goes straight to RGB: a full-resolution conv stack
        # would double the cost of a training step on this CPU.
        dec += [
            nn.ConvTranspose2d(chans[0], chans[0], 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(chans[0], in_channels, 3, 1, 1),
        ]
        self.decoder = nn.Sequential(*dec)
        # Shared decoder log-std; starts at sigma ~0.1 (pixel units in [0, 1]).
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))

    @property
    def bottleneck(self) -> int:
        """Spatial size of the last encoder feature map."""
        return self.config.image_size // 2 ** len(self.config.channels)

    # -- core API ---------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> posterior (mean, logvar), each (B, latent_dim)."""
        h = self.encoder(x * 2 - 1).flatten(1)
        mean, logvar = self.to_stats(h).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> decoder mean (B, 3, H, W), *unclamped* (~[0, 1])."""
        side = self.bottleneck
        h = self.from_latent(z).view(-1, self.config.channels[-1], side, side)
        return self.decoder(h) * 0.5 + 0.5

    @staticmethod
    def reparameterize(
        mean: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + eps * (0.5 * logvar).exp()

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction mean, posterior mean, posterior logvar)."""
        mean, logvar = self.encode(x)
        z = self.reparameterize(mean, logvar, generator)
        return self.decode(z), mean, logvar

    def sigma(self) -> torch.Tensor:
        return self.log_sigma.clamp(min=self.config.min_log_sigma).exp()

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Decode ``n`` prior samples; returns images clamped to [0, 1]."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent_dim, generator=generator, dtype=p.dtype) * temperature
        return self.decode(z.to(p.device)).clamp(0, 1)
