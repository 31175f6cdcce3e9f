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

With ``autoencoder`` (an AutoencoderKL's config) the generator draws that autoencoder's latent instead of
pixels (as latent diffusion does) and carries its decoder, frozen, to turn the latent into the picture: the
GAN works in a space 12x smaller than the picture (16x16x4 for 64x64x3), and the outlines and flat colours
come from a decoder trained to draw them.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder
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


# The AutoencoderKL config keys the carried decoder is built from.
DECODER_KEYS = (
    "latent_channels",
    "out_channels",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "act_fn",
    "mid_block_add_attention",
    "scaling_factor",
)


class GANGenerator(OwnModel):
    """(z, caption embedding) -> image (B, 3, 64, 64) in [-1, 1] (tanh, or the carried decoder's output)."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        z_dim: int = 64,  # noise dimensions: the sliders of the Image tab move along these
        text_dim: int = 384,  # MiniLM sentence embedding
        cond_dim: int = 64,  # the caption's learned projection, concatenated to z
        width: int = 32,  # channels of the last generator stage (DCGAN's ngf / 2)
        conditional_norm: bool = False,  # every BatchNorm's gain and bias from (z, caption)
        autoencoder: dict | None = None,  # an AutoencoderKL's DECODER_KEYS: draw its latent, decode it
    ) -> None:
        super().__init__()
        w = width
        self.condition = nn.Sequential(nn.Linear(text_dim, cond_dim), nn.LeakyReLU(0.2))
        if autoencoder is not None:
            self._build_latent(z_dim + cond_dim, w, autoencoder)
            return
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

    def _build_latent(self, in_dim: int, w: int, autoencoder: dict) -> None:
        """DCGAN stages from 4x4 up to the autoencoder's latent side, a 3x3 stage there, a linear 3x3 output
        (latents are not bounded); then the autoencoder's decoder."""
        side = self.config.image_size // 2 ** (len(autoencoder["block_out_channels"]) - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, w * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(w * 8),
            nn.ReLU(True),
        ]
        c, size = w * 8, 4
        while size < side:  # 4 -> 8 -> ... -> side, halving the channels
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(True),
            ]
            c, size = c // 2, size * 2
        layers += [nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        layers += [nn.Conv2d(c, autoencoder["latent_channels"], 3, 1, 1)]
        self.to_latent = nn.Sequential(*layers)
        channels = autoencoder["latent_channels"]
        self.post_quant_conv = nn.Conv2d(channels, channels, 1)
        self.decoder = Decoder(
            in_channels=channels,
            out_channels=autoencoder["out_channels"],
            up_block_types=tuple(autoencoder["up_block_types"]),
            block_out_channels=tuple(autoencoder["block_out_channels"]),
            layers_per_block=autoencoder["layers_per_block"],
            norm_num_groups=autoencoder["norm_num_groups"],
            act_fn=autoencoder["act_fn"],
            mid_block_add_attention=autoencoder["mid_block_add_attention"],
        )

    @property
    def draws_latents(self) -> bool:
        return self.config.autoencoder is not None

    def carried_decoder(self) -> list[nn.Module]:
        """The autoencoder's modules the generator carries (frozen in training)."""
        return [self.post_quant_conv, self.decoder] if self.draws_latents else []

    def take_decoder(self, autoencoder) -> None:
        """Copy the decoder weights of ``autoencoder`` (an AutoencoderKL with this generator's DECODER_KEYS)."""
        state = autoencoder.state_dict()
        for name in ("post_quant_conv", "decoder"):
            prefix = name + "."
            getattr(self, name).load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def latents(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The drawn latent, scaled as the autoencoder's latent diffusion model sees it (unit variance)."""
        zc = torch.cat([z, self.condition(text)], dim=1)
        return self.to_latent(zc[:, :, None, None])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        scaled = latents / self.config.autoencoder["scaling_factor"]
        return self.decoder(self.post_quant_conv(scaled)).clamp(-1, 1)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if self.draws_latents:
            return self.decode(self.latents(z, text))
        zc = torch.cat([z, self.condition(text)], dim=1)
        if not self.config.conditional_norm:
            return self.body(self.project(zc[:, :, None, None]))
        h = zc[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = torch.relu(norm(conv(h), zc))
        return self.to_rgb(h)


class GANDiscriminator(OwnModel):
    """(image in [-1, 1] or latent, caption embedding) -> real/fake logit, with spectral norm for stability.

    Strided convolutions halve the side down to 4x4, doubling the channels up to 8 x ``width``; a latent
    (``in_channels`` 4, side 16) first passes a 3x3 convolution of ``stem_channels`` at its full side."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        text_dim: int = 384,
        width: int = 32,
        in_channels: int = 3,
        stem_channels: int = 0,
    ) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        c = in_channels
        if stem_channels:
            layers += [spectral_norm(nn.Conv2d(c, stem_channels, 3, 1, 1)), nn.LeakyReLU(0.2, True)]
            c = stem_channels
        halvings = (image_size // 4).bit_length() - 1
        for c_out in (w, w * 2, w * 4, w * 8)[-halvings:]:  # e.g. 64 -> 32 -> 16 -> 8 -> 4
            layers += [spectral_norm(nn.Conv2d(c, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            c = c_out
        self.body = nn.Sequential(*layers)
        flat = c * 4 * 4  # the last stage: 4x4
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
