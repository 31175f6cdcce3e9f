"""The one save/load path for the project's own models: diffusers' ModelMixin + ConfigMixin.

A model declares its hyperparameters as keyword arguments of ``__init__`` under ``@register_to_config``;
``save_pretrained`` writes ``config.json`` (with ``_class_name``) and ``diffusion_pytorch_model.safetensors``;
``from_pretrained`` rebuilds it. Here ``from_pretrained`` returns fp32 weights (unless ``torch_dtype`` is
given) in eval mode on the CPU (callers move the model with ``.to(device)``), and ``save_fp16`` ships an fp16
copy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin


class OwnModel(ModelMixin, ConfigMixin):
    """Base class of the project's models: fp32 (or ``torch_dtype``), eval mode, CPU after ``from_pretrained``."""

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> OwnModel:
        kwargs.setdefault("torch_dtype", torch.float32)
        model = super().from_pretrained(str(folder), **kwargs)
        return model.to("cpu").eval()


def save_as(model: OwnModel, folder: str | Path, dtype: torch.dtype) -> Path:
    """Save a ``dtype`` copy of ``model`` with ``save_pretrained``; the caller's model is not touched.

    Only floating-point tensors change dtype, so BatchNorm's ``num_batches_tracked`` stays an integer. The
    copy is built from the config rather than deep-copied: spectral norm's computed ``weight`` is not a
    graph leaf after a training step, and deepcopy refuses it.
    """
    folder = Path(folder)
    # Drop where it was loaded from, and the list of defaulted keys (from_config would reset those to the
    # defaults, losing values set since, e.g. an AutoencoderKL's measured scaling_factor).
    config = {k: v for k, v in model.config.items() if k not in ("_name_or_path", "_use_default_values")}
    shipped = type(model).from_config(config)
    # nn.Module.to, not ModelMixin.to: the latter warns about fp32-only modules on every dtype cast.
    torch.nn.Module.to(shipped, dtype=dtype)
    state = model.state_dict()
    shipped.load_state_dict(
        {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    )
    shipped.save_pretrained(folder, safe_serialization=True)
    return folder


def save_fp16(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write an fp16 copy of ``model`` to ``folder`` (``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
    return save_as(model, folder, torch.float16)
