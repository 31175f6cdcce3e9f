"""The project's own models, one save/load path (diffusers' ModelMixin + ConfigMixin), and the shared
frozen text encoder.

    vae = EmojiVAE.from_pretrained("weights/vae-emoji").to(device)   # fp32, eval mode
    save_fp16(vae, "weights/vae-emoji")                               # config.json + fp16 safetensors

Names are imported on first use, so ``resolve_model_path`` (which the text pipeline needs) does not pay
for importing diffusers (~3 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOME = {
    "OwnModel": "base",
    "save_as": "base",
    "save_fp16": "base",
    "EmojiVAE": "vae",
    "GANGenerator": "gan",
    "GANDiscriminator": "gan",
    "EmojiUpscaler": "upscaler",
    "PatchDiscriminator": "upscaler",
    "PromptMatch": "scorer",
    "resolve_model_path": "specs",
    "DEFAULT_TEXT_ENCODER": "text_encoder",
    "load_text_encoder": "text_encoder",
    "sentence_embeddings": "text_encoder",
    "text_encoder_path": "text_encoder",
    "token_states": "text_encoder",
}
__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "EmojiUpscaler",
    "EmojiVAE",
    "GANDiscriminator",
    "GANGenerator",
    "OwnModel",
    "PatchDiscriminator",
    "PromptMatch",
    "load_text_encoder",
    "resolve_model_path",
    "save_as",
    "save_fp16",
    "sentence_embeddings",
    "text_encoder_path",
    "token_states",
]

if TYPE_CHECKING:
    from aigc_demo.models.base import OwnModel, save_as, save_fp16
    from aigc_demo.models.gan import GANDiscriminator, GANGenerator
    from aigc_demo.models.scorer import PromptMatch
    from aigc_demo.models.specs import resolve_model_path
    from aigc_demo.models.text_encoder import (
        DEFAULT_TEXT_ENCODER,
        load_text_encoder,
        sentence_embeddings,
        text_encoder_path,
        token_states,
    )
    from aigc_demo.models.upscaler import EmojiUpscaler, PatchDiscriminator
    from aigc_demo.models.vae import EmojiVAE


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
