"""The green-list text watermark: the bias it adds, the z-score it reads, and a tiny model's text with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc_demo.config import TextConfig
from aigc_demo.pipelines.text import GenerationParams, TextPipeline
from aigc_demo.provenance.text_watermark import DELTA, GAMMA, GreenListBias, detect, green


def test_the_bias_lifts_a_quarter_of_the_vocabulary_by_delta_for_both_engines():
    bias = GreenListBias(5000)
    scores = np.zeros(5000, dtype=np.float32)
    lifted = bias(np.array([1, 2, 42]), scores)  # llama.cpp: the previous token is the last id
    assert set(np.unique(lifted)) == {0.0, DELTA}
    assert abs((lifted > 0).mean() - GAMMA) < 0.02
    assert np.array_equal(lifted > 0, green(42, np.arange(5000)))
    as_torch = bias(torch.tensor([[7, 42]]), torch.zeros(1, 5000))  # transformers: (1, T) ids, (1, V) scores
    assert np.array_equal(as_torch[0].numpy(), lifted)
    assert not np.array_equal(bias.bias(43), bias.bias(42)), "each previous token has its own green list"


@pytest.mark.parametrize("seed", range(5))
def test_unmarked_token_streams_score_near_zero(seed):
    ids = np.random.default_rng(seed).integers(0, 49152, 400).tolist()
    found = detect(ids)
    assert found.tokens_scored == 399 and abs(found.z) < 4 and not found.watermarked


def test_too_short_says_so():
    assert "Too short" in detect([5]).summary()


@pytest.fixture(scope="module")
def pipe(tiny_llama_dir):
    return TextPipeline.from_config(
        TextConfig(model=str(tiny_llama_dir), engine="transformers", context_length=512)
    )


def test_a_watermarked_generation_is_found_and_an_unmarked_one_is_not(pipe):
    prompt = pipe.engine.tokenize("the", add_special=True)

    def tokens(watermark: bool) -> list[int]:
        params = GenerationParams(max_new_tokens=200, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                                  repetition_penalty=1.0, seed=3, watermark=watermark)  # fmt: skip
        out = []
        for token in pipe.engine.generate_ids(prompt, params):
            out.append(token)
            if len(out) == 200:
                return out
        return out

    marked, plain = detect(tokens(True)), detect(tokens(False))
    assert marked.watermarked and marked.z > 6, marked
    assert not plain.watermarked and plain.z < 3, plain
