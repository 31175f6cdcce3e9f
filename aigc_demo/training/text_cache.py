"""Caption embeddings of the corpus, computed once and cached beside the corpus (never committed).

Every training script conditions on the frozen MiniLM encoder; recomputing it each run would cost minutes of
CPU, so the embeddings of every caption variant are stored in ``data/emoji/`` keyed by the encoder's kind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from aigc_demo.data.captions import caption_variants
from aigc_demo.data.corpus import Corpus
from aigc_demo.data.paths import corpus_dir
from aigc_demo.models import load_text_encoder, sentence_embeddings, token_states

log = logging.getLogger(__name__)


def corpus_captions(corpus: Corpus) -> tuple[list[str], torch.Tensor]:
    """All caption variants (flat list) and, per corpus row, the index of its first variant and count."""
    texts: list[str] = []
    spans = []
    names = frozenset(row["name"].lower() for row in corpus.rows)
    for row in corpus.rows:
        variants = caption_variants(row, other_names=names)
        spans.append((len(texts), len(variants)))
        texts += variants
    return texts, torch.tensor(spans, dtype=torch.int64)


def cached_embeddings(corpus: Corpus, kind: str, data_dir: Path | None = None, batch: int = 256) -> dict:
    """{"texts", "spans" (rows x 2), "emb"}: ``kind`` is "sentence" (N, 384) or "tokens" (N, 32, 384) fp16."""
    texts, spans = corpus_captions(corpus)
    path = (data_dir or corpus_dir()) / f"captions_{kind}.safetensors"
    if path.exists():
        stored = load_file(str(path))
        names = json.loads((path.with_suffix(".json")).read_text(encoding="utf-8"))
        if names == texts:
            return {"texts": texts, "spans": spans, "emb": stored["emb"]}
        log.info("caption cache %s is stale; recomputing", path)
    tokenizer, model = load_text_encoder()
    encode = sentence_embeddings if kind == "sentence" else token_states
    chunks = []
    for start in tqdm(range(0, len(texts), batch), desc=f"MiniLM {kind}", unit="batch"):
        chunks.append(encode(tokenizer, model, texts[start : start + batch]).half())
    emb = torch.cat(chunks)
    save_file({"emb": emb.contiguous()}, str(path))
    path.with_suffix(".json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return {"texts": texts, "spans": spans, "emb": emb}


def pick_variants(spans: torch.Tensor, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random caption variant per row: the index into the flat caption list."""
    start, count = spans[rows, 0], spans[rows, 1]
    offset = (torch.rand(len(rows), generator=generator) * count).long()
    return start + offset
