"""Faster ``nn.Linear`` for inference on CPU: oneDNN with weights packed once, not on every call.

A text decode step is ~200 matrix-vector products. The default ``F.linear`` path (MKL gemv) streams the weights
at ~12 GB/s on a 2-core AMX Xeon; oneDNN's inner product on weights reordered once for its kernel reaches
~20 GB/s (bench/text.py prints both). This is the packing PyTorch's inductor does for CPU linears, without a
compile step. The UNet's attention and feed-forward layers gain ~4% per step the same way, bit for bit.

Only the summation order may change, so outputs can differ from ``F.linear`` in the last bits; the tests and
the benchmarks check that greedy tokens stay identical to plain ``generate``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

_PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


def can_prepack(device: torch.device) -> bool:
    return (
        device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PrepackedLinear(nn.Module):
    """Inference-only stand-in for one ``nn.Linear``: same inputs, same outputs (to rounding)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach()
        # batch-size hint 1: the decode step is what must be fast; prefill shapes still work.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed"


def prepack_linears(model: nn.Module) -> int:
    """Swap every plain ``nn.Linear`` of a CPU model for a ``PrepackedLinear``; returns how many.

    For serving only: the swapped model cannot be trained (fine-tuning loads its own copy).
    """
    param = next(model.parameters(), None)
    if param is None or not can_prepack(param.device) or param.dtype not in _PACKABLE_DTYPES:
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype in _PACKABLE_DTYPES:
                setattr(parent, name, PrepackedLinear(child))
                swapped += 1
    return swapped
