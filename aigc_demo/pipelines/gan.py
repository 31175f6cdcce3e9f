"""The GAN generator: the project's caption-conditional DCGAN, one forward pass per image."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from aigc_demo.compute import StopFlag
from aigc_demo.imaging import to_pil
from aigc_demo.models import sentence_embeddings
from aigc_demo.pipelines.generator import Drawn

Z_OFFSET_LIMIT = 5.0  # noise dimensions are N(0, 1): beyond +-5 std the generator has never been


class GanGenerator:
    """A resident GANGenerator and the sentence encoder that conditions it."""

    name = "gan"

    def __init__(self, model, sentence_encoder: tuple, model_id: str):
        self.model = model.eval()
        self.sentence_encoder = sentence_encoder  # (tokenizer, BertModel)
        self.model_id = model_id
        self.native_size = int(model.config.image_size)
        self.z_dim = int(model.config.z_dim)
        self.device = next(model.parameters()).device

    def check_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int]:
        native = self.native_size
        if (width or native, height or native) != (native, native):
            raise ValueError(f"the GAN makes {native}x{native} images only, not {width}x{height}")
        return native, native

    def settle(self, params):
        return params, []  # steps, guidance and scheduler mean nothing to it and are recorded as asked

    def prompt_warning(self, name: str, text: str) -> str | None:
        return None  # the sentence embedding reads 128 tokens, far beyond the prompt limit's use

    def noise(self, seed: int) -> torch.Tensor:
        return torch.randn(self.z_dim, generator=torch.Generator().manual_seed(seed))

    @torch.inference_mode()
    def draw(
        self, prompt: str, seeds: Sequence[int], z_offset: np.ndarray | None = None
    ) -> list[Image.Image]:
        """One image per seed; ``z_offset`` moves the first len(z_offset) noise dimensions (the z sliders)."""
        text = sentence_embeddings(*self.sentence_encoder, [prompt]).to(self.device)
        images = []
        for seed in seeds:
            z = self.noise(seed)
            if z_offset is not None:
                z[: len(z_offset)] += torch.from_numpy(np.asarray(z_offset, dtype=np.float32))
            images.append(to_pil(self.model(z[None].to(self.device), text)[0].float() * 0.5 + 0.5))
        return images

    def generate(self, params, interrupt: StopFlag, preview_every_s: float | None) -> Iterator[Drawn]:
        seeds = [params.seed + i for i in range(params.batch_size)]
        yield Drawn(self.draw(params.prompt, seeds), interrupted=False)
