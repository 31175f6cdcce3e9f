"""Fine-tuning the language model (Tune tab): data checks, the in-app loop, adapters saved, loaded and merged,
the GGUF adapter, and the memorisation meter. A tiny random Llama; the real model in test_tune_real.py."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from aigc_demo.config import TextConfig, TuneConfig
from aigc_demo.pipelines.text import TextPipeline
from aigc_demo.pipelines.tune import AdapterShelf, Preparation, TextTuner, TuneResult
from aigc_demo.pipelines.tune_data import (
    IGNORE,
    build_dataset,
    chat_examples,
    longest_copied_run,
    parse_chat_pairs,
    read_upload,
    split_held_out,
    style_examples,
)
from aigc_demo.training.fine_tune import FitProgress

TEXT = "\n".join(
    f"The red fox jumps over the lazy dog number {i % 7}. A happy cat sleeps in the sun all day."
    for i in range(60)
)
PAIRS = "\n".join(
    json.dumps(
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"Arr, {i}!"}]}
    )
    for i in range(8)
)


@pytest.fixture(scope="module")
def tuner(tiny_llama_dir, tmp_path_factory):
    text = TextPipeline.from_config(TextConfig(model=str(tiny_llama_dir), engine="transformers"))
    return TextTuner(text, TuneConfig(adapters_dir=tmp_path_factory.mktemp("adapters")))


def run(tuner, text=TEXT, **kwargs):
    events = list(tuner.tune(text, **kwargs))
    assert isinstance(events[0], Preparation) and isinstance(events[-1], TuneResult)
    return events


# -- data -----------------------------------------------------------------------------------------------------
def test_blocks_and_a_held_out_share_spread_through_the_text():
    examples = style_examples(list(range(1000)), 100)
    assert [len(e.ids) for e in examples] == [100] * 10
    train, held = split_held_out(examples, 0.2)
    assert len(held) == 2 and len(train) == 8
    assert examples[0] in train and examples[-1] in train  # not the last pages
    assert len(style_examples(list(range(1010)), 100)) == 10  # a 10-token tail is dropped


def test_chat_pairs_train_only_on_the_reply():
    conversations = parse_chat_pairs(PAIRS)

    def render(messages, generation_prompt):  # like ChatML: the reply follows its opening marker
        text = "".join((">" if m["role"] == "assistant" else "") + m["content"] + "|" for m in messages)
        return [ord(c) for c in text + (">" if generation_prompt else "")]

    examples, cut = chat_examples(conversations, render, block=64)
    assert cut == 0
    first = examples[0]
    trained = [i for i, label in zip(first.ids, first.labels, strict=True) if label != IGNORE]
    assert "".join(map(chr, trained)) == "Arr, 0!|"
    assert all(label == IGNORE for label in first.labels[:3])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "there is no training text"),
        ("   \n ", "there is no training text"),
        ("just one line", "one line is too little"),
        ("word " * 30 + "\n" + "more " * 20, "tuning needs at least 128"),
    ],
)
def test_too_little_text_is_refused_with_what_to_do(text, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(text, "style", lambda s: s.split(), None, 256, 0.1, 10_000)


def test_malformed_chat_pairs_are_reported_by_line_number():
    lines = PAIRS.splitlines()
    lines[2] = "{not json"
    lines[4] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    lines[5] = json.dumps({"text": "no messages"})
    with pytest.raises(ValueError) as err:
        parse_chat_pairs("\n".join(lines))
    message = str(err.value)
    assert "line 3: not JSON" in message and "line 5: must end with the assistant" in message
    assert 'line 6: needs {"messages"' in message
    with pytest.raises(ValueError, match="at least 4"):
        build_dataset("\n".join(lines[:2]), "format", None, lambda m, g: [1, 2], 64, 0.1, 10_000)


def test_uploads_are_checked_before_they_are_read(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # 50 MB without writing it: refused on its size alone
        f.truncate(50_000_000)
    with pytest.raises(ValueError, match="big.txt is 50.0 MB; the limit is 5.0 MB"):
        read_upload(big, 5_000_000)
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(ValueError, match="photo.txt is not text"):
        read_upload(binary, 5_000_000)
    latin = tmp_path / "latin.md"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_upload(latin, 5_000_000)
    other = tmp_path / "notes.pdf"
    other.write_text("x")
    with pytest.raises(ValueError, match="use a .txt, .md, .jsonl file"):
        read_upload(other, 5_000_000)
    good = tmp_path / "good.md"
    good.write_text("# Title\n\nSome text.", encoding="utf-8")
    assert read_upload(good, 5_000_000).startswith("# Title")


def test_the_memorisation_meter_finds_the_longest_copied_run():
    source = [np.array([5, 6, 7, 8, 9, 1, 2, 3, 4, 10, 11])]
    copied = longest_copied_run([0, 1, 2, 3, 4, 0, 7, 8], source, lambda ids: " ".join(map(str, ids)))
    assert copied.tokens == 4 and copied.text == "1 2 3 4"
    assert longest_copied_run([42, 43], source, str).tokens == 0
    assert longest_copied_run([], source, str).tokens == 0
    # Two training blocks are not one text: a run across their boundary was never in the training data.
    blocks = [np.array([1, 2, 3]), np.array([4, 5, 6])]
    assert longest_copied_run([2, 3, 4, 5], blocks, str).tokens == 2


# -- training -------------------------------------------------------------------------------------------------
def test_a_lora_run_lowers_the_loss_and_saves_an_adapter_that_loads_back_identically(tuner, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    events = iter(
        tuner.tune(TEXT, name="fox", params={"epochs": 10, "block_tokens": 64, "learning_rate": 1e-2})
    )
    prep = next(events)
    assert prep.dataset.train_tokens > 500 and prep.eta_s > 0
    progress = result = None
    for event in events:
        if isinstance(event, FitProgress):
            progress = event
        else:
            result = event
            ids = torch.tensor([tuner._tokenize("The red fox jumps over the lazy cat")])
            with torch.no_grad():  # the trained model, in memory, before it is unwrapped
                trained = tuner._model(input_ids=ids).logits
    assert progress.train_curve[-1][1] < progress.train_curve[0][1]
    assert result.tuned_perplexity < 0.8 * result.base_perplexity
    folder = result.adapter.folder
    assert {p.name for p in folder.iterdir()} >= {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
    }
    assert not (folder / "adapter.gguf").exists()  # a hub folder, not a GGUF: no llama.cpp adapter
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["base_model_name_or_path"] == str(tiny_llama_dir)
    card = (folder / "README.md").read_text()
    assert prep.dataset.sha256[:16] in card and "held-out perplexity" in card
    assert type(tuner._model).__name__ == "LlamaForCausalLM"  # unwrapped for the next run

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), folder).eval()
    with torch.no_grad():
        unmerged = loaded(input_ids=ids).logits
        merged = tuner.serving("fox").engine.model(input_ids=ids).logits
    assert torch.equal(unmerged, trained)
    assert torch.allclose(merged, unmerged, atol=1e-4)


def test_the_tuned_model_serves_and_compares_with_the_base(tuner):
    run(tuner, name="cmp", params={"epochs": 2, "block_tokens": 64, "learning_rate": 1e-2})
    result = tuner.compare("cmp", "The red fox", seed=5, max_new_tokens=12, temperature=0)
    assert result.seed == 5 and result.base.text != result.tuned.text
    assert result.tuned.copied is not None  # the meter knows this run's training text
    assert "cmp" in tuner.shelf.names()
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        tuner.serving("nope")


def test_chat_pairs_tune_the_format_preset(tuner):
    *_, result = run(
        tuner, PAIRS, name="pairs", params={"preset": "format", "epochs": 2, "learning_rate": 1e-2}
    )
    assert result.adapter.record["preset"] == "format" and result.tuned_perplexity < result.base_perplexity


def test_stop_keeps_the_best_state_so_far_or_saves_nothing_before_the_first_step(tuner):
    flag = threading.Event()
    flag.set()
    *_, result = run(tuner, name="never", stop=flag)
    assert result.adapter is None and result.progress.finish == "stopped"
    assert "never" not in tuner.shelf.names()

    class AfterTwoSteps:
        def __init__(self):
            self.calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 2

    *_, result = run(tuner, name="stopped", stop=AfterTwoSteps(), params={"block_tokens": 64})
    assert result.progress.finish == "stopped" and result.progress.step == 2
    assert result.adapter.record["finish"] == "stopped"


def test_names_are_checked_and_never_overwrite(tuner):
    run(tuner, name="taken", params={"epochs": 1})
    with pytest.raises(ValueError, match="an adapter named 'taken' exists"):
        next(tuner.tune(TEXT, name="taken"))
    with pytest.raises(ValueError, match="use letters, digits"):
        next(tuner.tune(TEXT, name="../escape"))
    with pytest.raises(ValueError, match="learning_rate"):
        next(tuner.tune(TEXT, params={"learning_rate": 5}))


def test_the_shelf_prunes_the_oldest_adapters_past_its_cap(tmp_path):
    import os
    import time

    for k, name in enumerate(["old", "middle", "new"]):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "tune.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(b"x" * 1000)
        os.utime(folder, (time.time() - 100 + k, time.time() - 100 + k))
    shelf = AdapterShelf(tmp_path, max_bytes=2100)
    assert shelf.names() == ["new", "middle", "old"]
    assert shelf.prune(keep="new") == ["old"]
    assert shelf.names() == ["new", "middle"]


def test_the_gguf_adapter_names_shapes_and_rotary_order(tmp_path):
    import gguf

    from aigc_demo.models.gguf_lora import rotary_permute, write_gguf_lora

    rng = np.random.default_rng(0)
    prefix = "base_model.model.model.layers.0."
    state = {
        prefix + "self_attn.q_proj.lora_A.weight": rng.normal(size=(4, 16)).astype(np.float32),
        prefix + "self_attn.q_proj.lora_B.weight": rng.normal(size=(16, 4)).astype(np.float32),
        prefix + "self_attn.v_proj.lora_A.weight": rng.normal(size=(4, 16)).astype(np.float32),
        prefix + "self_attn.v_proj.lora_B.weight": rng.normal(size=(8, 4)).astype(np.float32),
    }
    path = write_gguf_lora(state, alpha=8, heads=2, kv_heads=1, path=tmp_path / "a.gguf")
    reader = gguf.GGUFReader(str(path))
    fields = {k: v.contents() for k, v in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0
    tensors = {t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist()))) for t in reader.tensors}
    assert set(tensors) == {
        "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b",
        "blk.0.attn_v.weight.lora_a", "blk.0.attn_v.weight.lora_b",
    }  # fmt: skip
    b = state[prefix + "self_attn.q_proj.lora_B.weight"]
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], rotary_permute(b, 2))
    assert not np.array_equal(rotary_permute(b, 2), b)
    assert np.array_equal(
        tensors["blk.0.attn_v.weight.lora_b"], state[prefix + "self_attn.v_proj.lora_B.weight"]
    )
    with pytest.raises(ValueError, match="no LoRA matrices"):
        write_gguf_lora({"something.else": b}, 8, 2, 1, tmp_path / "b.gguf")


def test_evaluate_compares_the_base_and_a_tuned_model(tuner):
    from aigc_demo.pipelines.evaluate import EvaluatePipeline

    run(tuner, name="judged", params={"epochs": 3, "block_tokens": 64, "learning_rate": 1e-2})
    evaluate = EvaluatePipeline(None, tuner.text, None, tuner.serving)
    settings = {
        "A": {"temperature": 0.7, "max_new_tokens": 8, "seed": 1},
        "B": {"temperature": 0.7, "max_new_tokens": 8, "seed": 1, "adapter": "judged"},
    }
    *_, result = evaluate.compare_text("The red fox", settings, replies=2)
    base, tuned = result
    assert (base.adapter, tuned.adapter) == ("", "judged")
    assert base.figures[0].name == "perplexity" and base.figures[0].value != tuned.figures[0].value
    with pytest.raises(ValueError, match="no adapter named"):
        next(evaluate.compare_text("x", {"A": {"adapter": "missing"}}, replies=2))


def test_chat_pairs_whose_prompt_fills_the_block_are_left_out():
    long_question = {"role": "user", "content": "x" * 100}
    lines = [json.dumps({"messages": [long_question, {"role": "assistant", "content": "ok"}]})]
    text = "\n".join(lines + PAIRS.splitlines())

    def render(messages, generation_prompt):
        text = "".join((">" if m["role"] == "assistant" else "") + m["content"] + "|" for m in messages)
        return [ord(c) for c in text + (">" if generation_prompt else "")]

    data = build_dataset(text, "format", None, render, 32, 0.1, 10_000)
    assert any("no room for the reply" in w for w in data.warnings)
    assert all(e.trained_tokens > 0 for e in data.train + data.held_out)


def test_an_adapter_of_another_base_model_is_refused(tuner):
    run(tuner, name="elsewhere", params={"epochs": 1, "block_tokens": 64, "learning_rate": 1e-2})
    record = tuner.shelf.root / "elsewhere" / "tune.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "base_model": "some/other-model"}))
    with pytest.raises(ValueError, match="was trained on some/other-model"):
        tuner.serving("elsewhere")
    with pytest.raises(ValueError, match="text must be a string"):
        next(tuner.tune(12345))
