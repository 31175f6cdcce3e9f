"""A peft LoRA adapter of a Llama-family model, written as a llama.cpp GGUF adapter (``Llama(lora_path=...)``).

llama.cpp applies ``W x + scale * B (A x)`` with ``scale = alpha / rank``, as peft does, so the matrices are
copied as they are, but for one detail: GGUF stores a Llama model's query and key projections with their rows
permuted for its rotary kernel (the HF→GGUF converter's ``permute``), so the rows of those adapters' B matrices
are permuted the same way. Tensor and key names follow llama.cpp's ``convert_lora_to_gguf.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# transformers module name -> GGUF tensor name in block {i}
_GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY = re.compile(r"layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


def rotary_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """The row order GGUF gives a Llama query/key projection (convert_hf_to_gguf.py's ``permute``)."""
    return (
        rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def write_gguf_lora(
    lora_state: dict[str, np.ndarray],
    alpha: float,
    heads: int,
    kv_heads: int,
    path: str | Path,
    architecture: str = "llama",
    name: str = "adapter",
) -> Path:
    """Write the LoRA tensors of a peft state dict (``...layers.N.self_attn.q_proj.lora_A.weight`` ->
    array) as a GGUF adapter for llama.cpp."""
    import gguf

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("general.name", name)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    written = 0
    for key in sorted(lora_state):
        match = _KEY.search(key)
        if match is None:
            continue
        layer, module, side = match.groups()
        tensor = np.ascontiguousarray(np.asarray(lora_state[key], dtype=np.float32))
        if side == "B" and module == "self_attn.q_proj":
            tensor = rotary_permute(tensor, heads)
        elif side == "B" and module == "self_attn.k_proj":
            tensor = rotary_permute(tensor, kv_heads)
        writer.add_tensor(f"blk.{layer}.{_GGUF_NAMES[module]}.weight.lora_{side.lower()}", tensor)
        written += 1
    if written == 0:
        raise ValueError("the adapter has no LoRA matrices on attention or MLP projections")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
