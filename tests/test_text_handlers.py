"""The Text tab's handlers, called directly (no server) on the tiny random Llama.

The tab is built inside ``gr.Blocks()``; handlers get the ``{component: value}`` dict Gradio would pass."""

from __future__ import annotations

import inspect
import random
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch

from aigc_demo.config import TextConfig
from aigc_demo.pipelines.text import GenerationParams, TextPipeline
from aigc_demo.pipelines.text_presets import PRESETS, PRESETS_BY_KEY
from aigc_demo.ui.strings import EN, t
from aigc_demo.ui.text_tab import DEFAULT, TextTab, build_text_tab


@pytest.fixture(scope="module")
def pipe(tiny_llama_dir):
    return TextPipeline.from_config(
        TextConfig(model=str(tiny_llama_dir), engine="transformers", context_length=256)
    )


@pytest.fixture(scope="module")
def built(pipe):
    with gr.Blocks() as demo:
        tab = build_text_tab(pipe, None)
    return demo, tab


@pytest.fixture
def tab(built) -> TextTab:
    return built[1]


def ui(tab: TextTab, message="Hi", history=(), prompt="Once upon a time", preset=DEFAULT.key, **settings):
    """What Gradio passes a handler whose inputs are a set: every input component and its value."""
    values = {**tab.pipe.schema.defaults(), "max_new_tokens": 8, **settings}
    data = {tab.controls[name]: value for name, value in values.items()}
    data.update(
        {
            tab.message: message,
            tab.chatbot: list(history),
            tab.system_prompt: DEFAULT.system_prompt,
            tab.prompt: prompt,
            tab.preset: preset,
        }
    )
    return data


def session(name="alice"):
    return SimpleNamespace(session_hash=name)


def test_chat_streams_and_ends_with_a_stats_line(tab):
    updates = list(tab.handlers.chat(ui(tab, "Hello", temperature=1.0, seed=7), request=session()))
    first, last = updates[0], updates[-1]
    assert first == {tab.chatbot: [{"role": "user", "content": "Hello"}], tab.message: ""}
    assert len(updates) >= 2
    chat = last[tab.chatbot]
    assert chat[0] == {"role": "user", "content": "Hello"} and chat[-1]["role"] == "assistant"
    assert chat[-1]["content"].strip()
    stats = last[tab.chat_stats]
    assert (
        "tokens" in stats and "seed `7`" in stats and ("finish: stop" in stats or "finish: length" in stats)
    )
    assert last[tab.last_seed] == 7


def test_regenerate_answers_the_last_message_again(tab):
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "old reply"}]
    last = list(tab.handlers.regenerate(ui(tab, history=history, seed=3), request=session()))[-1]
    chat = last[tab.chatbot]
    assert chat[0] == history[0] and "old reply" not in [m["content"] for m in chat]
    with pytest.raises(gr.Error, match="Nothing to regenerate"):
        list(tab.handlers.regenerate(ui(tab, history=[]), request=session()))


def test_completion_streams_into_the_prompt_box(tab):
    last = list(tab.handlers.complete(ui(tab, prompt="Once upon a time", seed=1), request=session()))[-1]
    assert last[tab.prompt].startswith("Once upon a time") and last[tab.last_seed] == 1
    assert "finish:" in last[tab.completion_stats]


def test_stop_before_the_first_token_leaves_no_empty_bubble(tab):
    """Stop pressed while the prompt is still being read: no empty reply, and the page says why."""
    alice = session("alice-stops-early")
    stream = tab.handlers.chat(ui(tab, "Tell me a long story", max_new_tokens=50), request=alice)
    assert next(stream)[tab.chatbot] == [{"role": "user", "content": "Tell me a long story"}]
    tab.handlers.stop(alice)  # before the stream asks for its first token
    rest = list(stream)
    last = rest[-1]
    assert last[tab.chatbot] == [{"role": "user", "content": "Tell me a long story"}], "empty bubble"
    stats = last[tab.chat_stats]
    assert str(t("text_nothing_generated")) in stats and "finish: stopped" in stats
    assert "0** tokens" not in stats


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(temperature=5), "temperature must be between 0.0 and 2.0, not 5"),
        (dict(top_p=0), "top_p must be above 0.0 and at most 1.0, not 0"),
        (dict(top_k=1.5), "top_k must be a whole number, not 1.5"),
        (dict(max_new_tokens=10**9), "max_new_tokens must be between 1 and 2048"),
        (dict(seed="abc"), "seed must be a whole number, not 'abc'"),
        (dict(message="   "), "message is empty"),
    ],
)
def test_bad_values_give_a_gradio_error_with_the_validation_wording(tab, settings, words):
    message = settings.pop("message", "Hi")
    with pytest.raises(gr.Error, match=words):
        list(tab.handlers.chat(ui(tab, message, **settings), request=session()))
    with pytest.raises(gr.Error, match=words):
        list(tab.handlers.api_chat(message, **settings))


def test_preset_sets_exactly_its_values_by_name(tab):
    for preset in PRESETS:
        tab.pipe.schema.parse(preset.params)  # every preset is a valid request
    current = {**tab.pipe.schema.defaults(), "top_k": 7, "seed": 5}
    data = ui(tab, preset="preset_news", **current)
    out = tab.handlers.apply_preset(data)
    news = PRESETS_BY_KEY["preset_news"]
    assert {**current, **tab.controls.read(out)} == {**news.settings(), "seed": 5}
    assert tab.controls["seed"] not in out, "a preset never changes the seed"
    assert out[tab.system_prompt] == news.system_prompt
    # Only what changes: min_p is already the preset's 0.05.
    assert set(tab.controls.read(out)) == {k for k, v in news.settings().items() if current[k] != v}
    # The same preset again changes nothing, and says so with a skip (Gradio fails an event on {}).
    again = tab.handlers.apply_preset(
        ui(tab, preset="preset_news", **news.settings()) | {tab.system_prompt: news.system_prompt}
    )
    assert tab.controls.read(again) == {} and again == {tab.system_prompt: gr.skip()}
    with pytest.raises(gr.Error, match="unknown preset"):
        tab.handlers.apply_preset(ui(tab, preset="News brief"))


def test_chinese_page_gets_translated_names_not_english(built):
    demo, tab = built
    # Preset dropdown: translated names, stable keys as values.
    assert [value for _, value in tab.preset.choices] == [p.key for p in PRESETS]
    assert [str(label) for label, _ in tab.preset.choices] == [str(t(p.key)) for p in PRESETS]
    english = {EN[p.key] for p in PRESETS}
    config = str(demo.get_config_file())
    assert not any(f'"{name}' in config or f": {name}" in config for name in english), (
        "an English preset name"
    )
    # The model line: one translated phrase, then the model and the engine, no English words.
    line = next(
        b.value
        for b in demo.blocks.values()
        if isinstance(b, gr.Markdown) and "text_model_engine" in str(b.value)
    )
    rest = line.replace(str(t("text_model_engine")), "")
    assert "engine" not in rest.replace("`transformers`", "") and "Model" not in rest


def test_api_defaults_are_the_schemas(built, pipe, monkeypatch):
    demo, tab = built
    endpoints = {fn.api_name: fn.fn for fn in demo.fns.values()}
    defaults = pipe.schema.defaults()
    sampling = dict(
        max_new_tokens=256, temperature=0.7, top_p=0.9, top_k=50, min_p=0.05, repetition_penalty=1.1
    )
    assert defaults == {**sampling, "seed": -1, "watermark": False}
    chat = inspect.signature(endpoints["chat"]).parameters
    assert list(chat) == ["message", "history", "system_prompt", *defaults, "adapter", "request"]
    assert chat["history"].default is None and chat["system_prompt"].default is None
    assert {name: chat[name].default for name in defaults} == defaults
    complete = inspect.signature(endpoints["complete"]).parameters
    assert list(complete) == ["prompt", *defaults, "adapter", "request"]
    assert {name: complete[name].default for name in defaults} == defaults

    # Called with a message alone, the pipeline gets exactly the schema's defaults.
    seen = []
    original = pipe.chat

    def spy(message, history=None, system_prompt=None, params=None, stop=None):
        seen.append(params)
        return original(message, history, system_prompt, GenerationParams(max_new_tokens=2, seed=0), stop)

    monkeypatch.setattr(pipe, "chat", spy)
    final = list(endpoints["chat"]("Hi"))[-1]
    assert seen == [GenerationParams()] and final["seed"] == 0 and set(final) >= {"text", "finish_reason"}


def test_random_seed_is_fresh_per_request_whatever_the_rngs(tab):
    """Model code seeds random, numpy and torch; a "random" seed must not follow them."""

    def reported_seed(run):
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        return run()

    def ui_chat():
        return list(tab.handlers.chat(ui(tab, seed=-1, max_new_tokens=2), request=session()))[-1][
            tab.last_seed
        ]

    def api_chat():
        return list(tab.handlers.api_chat("Hi", max_new_tokens=2, seed=-1))[-1]["seed"]

    assert reported_seed(ui_chat) != reported_seed(ui_chat)
    assert reported_seed(api_chat) != reported_seed(api_chat)
