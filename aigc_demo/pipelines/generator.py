"""What the image pipeline needs from a generator (diffusion, GAN, and whatever comes next)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from aigc_demo.compute import StopFlag


@dataclass(frozen=True, eq=False)
class Progress:
    step: int
    total: int
    elapsed_s: float
    previews: list[Image.Image]  # the predicted clean images, when a preview was due


@dataclass(frozen=True, eq=False)
class Drawn:
    images: list[Image.Image]  # at the requested size, in seed order
    interrupted: bool
    unet: str = "none"  # "compiled" | "eager" (aigc_demo/pipelines/cpu_compile.py) | "none" (no UNet)
    decoder: str = "none"  # the latent decoder's, the same way


class ImageGenerator(Protocol):
    name: str  # the value of ImageParams.generator that selects it
    model_id: str
    native_size: int

    def check_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int]:
        """(width, height) it will make for a request (0 = native); ValueError if it cannot."""

    def prompt_warning(self, name: str, text: str) -> str | None:
        """A warning when only part of a prompt is read."""

    def settle(self, params):
        """(params as this generator runs them, warnings for what it changed)."""

    def generate(
        self, params, interrupt: StopFlag, preview_every_s: float | None
    ) -> Iterator[Progress | Drawn]:
        """Progress events (multi-step generators), then one Drawn."""
