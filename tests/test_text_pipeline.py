"""Text pipeline on a tiny random Llama loaded from a local folder (the same path hub models take)."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import pytest
import torch

from aigc_demo import validation
from aigc_demo.config import AppConfig, TextConfig
from aigc_demo.pipelines.text import GenerationParams, TextPipeline, parse_messages


@pytest.fixture(scope="module")
def pipe(tiny_llama_dir):
    return TextPipeline.from_config(
        TextConfig(model=str(tiny_llama_dir), engine="transformers", context_length=256)
    )


def run(stream):
    last = None
    for last in stream:
        pass
    return last


def plain_model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def test_greedy_matches_plain_generate(pipe, tiny_llama_dir):
    params = GenerationParams(max_new_tokens=24, temperature=0, repetition_penalty=1.0, seed=0)
    ours = run(pipe.complete("Hello world", params))
    engine = pipe.engine
    ids = torch.tensor([engine.tokenize("Hello world", add_special=True)])
    ref = plain_model(tiny_llama_dir).generate(
        ids, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    ref_text = engine.tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    # The tiny random model may emit its end-of-turn token, where we stop; compare up to there.
    assert ours.text and ref_text.startswith(ours.text)
    assert ours.stats.finish_reason in ("length", "stop")


def test_cpu_linears_are_prepacked_and_agree_with_plain_linears(pipe, tiny_llama_dir):
    from aigc_demo.pipelines.cpu_linear import PrepackedLinear, can_prepack

    if not can_prepack(torch.device("cpu")):
        pytest.skip("this torch build has no oneDNN")
    packed = [m for m in pipe.engine.model.modules() if isinstance(m, PrepackedLinear)]
    assert len(packed) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head
    ids = torch.tensor([pipe.engine.tokenize("Once upon a time there was", add_special=True)])
    with torch.inference_mode():
        got = pipe.engine.model(ids).logits
        want = plain_model(tiny_llama_dir)(ids).logits
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()


def test_same_seed_same_text_and_seed_reported(pipe):
    params = GenerationParams(max_new_tokens=20, temperature=1.0, top_k=0, min_p=0.0, seed=1234)
    a, b = (
        run(pipe.chat("Tell me a story", params=params)),
        run(pipe.chat("Tell me a story", params=params)),
    )
    assert a.text == b.text and a.stats.seed == 1234
    others = {
        run(
            pipe.chat(
                "Tell me a story",
                params=replace(params, seed=s),
            )
        ).text
        for s in range(5)
    }
    assert len(others) > 1, "different seeds should give different samples"


def test_random_seed_is_chosen_and_reusable(pipe):
    first = run(pipe.chat("Hi", params=GenerationParams(max_new_tokens=10, temperature=1.0)))
    assert first.params.seed == first.stats.seed and 0 <= first.stats.seed <= validation.MAX_SEED
    again = run(
        pipe.chat(
            "Hi",
            params=GenerationParams(max_new_tokens=10, temperature=1.0, seed=first.stats.seed),
        )
    )
    assert again.text == first.text


def test_stop_ends_the_generation_job(pipe):
    produced = []
    original = pipe.engine.generate_ids

    def counting(prompt_ids, params, json_schema=None, logprobs=None):
        for token_id in original(prompt_ids, params, json_schema):
            produced.append(token_id)
            yield token_id

    pipe.engine.generate_ids = counting
    try:
        stream = pipe.chat(
            "Tell me a long story",
            params=GenerationParams(max_new_tokens=100, temperature=1.0, min_p=0.0, seed=3),
        )
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()  # what gradio does when the user presses Stop or the client goes away
        # The compute thread is free at once, and the model stopped within a token or two of the stop.
        pipe.worker.submit(lambda: None).result(timeout=1)
        assert len(produced) <= 4 + 2 + 1, len(produced)  # 4 shown, at most 2 in flight, the last checked
    finally:
        del pipe.engine.generate_ids
    # The model is free again at once.
    assert run(pipe.chat("Hi", params=GenerationParams(max_new_tokens=3, seed=1))).stats.new_tokens >= 1


def test_stop_flag_ends_the_stream_with_what_was_written(pipe):
    """The UI's Stop button: the stream ends normally, its last update keeps the text, finish "stopped"."""
    import threading

    stop = threading.Event()
    params = GenerationParams(max_new_tokens=100, temperature=1.0, min_p=0.0, seed=3)
    updates = []
    for update in pipe.chat("Tell me a long story", params=params, stop=stop):
        updates.append(update)
        if len(updates) == 4:
            stop.set()
    last = updates[-1]
    assert last.stats.finish_reason == "stopped"
    assert last.stats.new_tokens == 4 and last.text.startswith(updates[3].text) and last.text.strip()
    pipe.worker.submit(lambda: None).result(timeout=1)  # the model was released
    # A flag set before the start writes nothing, and the next request runs normally.
    assert run(pipe.chat("Hi", params=params, stop=stop)).stats.new_tokens == 0
    assert run(pipe.chat("Hi", params=GenerationParams(max_new_tokens=3, seed=1))).stats.new_tokens >= 1


def test_stop_button_reaches_only_its_own_sessions_latest_job():
    import threading
    from types import SimpleNamespace

    from aigc_demo.ui.sessions import SessionStops

    stops = SessionStops(threading.Event)
    alice, bob = SimpleNamespace(session_hash="alice"), SimpleNamespace(session_hash="bob")
    alice_old = stops.arm(alice)
    alice_new, bob_job = stops.arm(alice), stops.arm(bob)
    stops.stop(alice)
    assert alice_new.is_set() and not bob_job.is_set() and not alice_old.is_set()
    stops.stop(SimpleNamespace(session_hash="nobody"))  # no job: nothing to do, no error
    assert not stops.arm(alice).is_set(), "an earlier Stop must not stop the next job"
    # Calls without a session (plain REST) share no flag: one such client's Stop ends nobody's job.
    for anonymous in (None, SimpleNamespace(session_hash=None), SimpleNamespace(session_hash="")):
        job = stops.arm(anonymous)
        stops.stop(anonymous)
        assert not job.is_set()


def test_streams_growing_text_with_stats(pipe):
    updates = list(pipe.chat("Hello", params=GenerationParams(max_new_tokens=12, temperature=1.0, seed=7)))
    texts = [u.text for u in updates]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    final = updates[-1].stats
    assert final.new_tokens >= 1 and final.time_to_first_token_s is not None
    assert final.finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("temperature", -1, "temperature"),
        ("temperature", 2.5, "temperature must be between 0.0 and 2.0"),
        ("top_p", 5, "top_p"),
        ("top_p", 0, "top_p must be above 0.0"),
        ("top_k", 201, "top_k"),
        ("repetition_penalty", 0.9, "repetition_penalty"),
        ("max_new_tokens", 10**9, "max_new_tokens"),
        ("seed", "abc", "seed"),
        ("top_k", 1.5, "top_k"),
        ("temperature", float("nan"), "temperature"),
        ("repetition_penalty", "lots", "repetition_penalty"),
    ],
)
def test_bad_parameters_are_named(pipe, field, value, words):
    with pytest.raises(ValueError, match=words):
        pipe.parse_params(**{field: value})


def test_loose_types_are_coerced(pipe):
    p = pipe.parse_params(max_new_tokens="12", temperature="0.5", seed="42", top_k=5.0)
    assert (p.max_new_tokens, p.temperature, p.seed, p.top_k) == (12, 0.5, 42, 5)
    assert pipe.parse_params(seed=-1).seed == -1, "-1 stays: the pipeline draws the seed per request"
    assert pipe.parse_params() == GenerationParams()


@pytest.mark.parametrize("message", ["", "   \n\t ", "\x00\x01"])
def test_empty_messages_rejected(pipe, message):
    with pytest.raises(ValueError, match="empty"):
        next(pipe.chat(message))


def test_huge_message_rejected(pipe):
    with pytest.raises(ValueError, match="limit"):
        next(pipe.chat("x" * 100_000))


def test_control_chars_and_invalid_unicode_are_cleaned(pipe):
    cleaned = validation.text("m", "a\x00b\x1bc\ud800d\ne", 100)
    assert "\x00" not in cleaned and "\x1b" not in cleaned and "\ud800" not in cleaned and "\n" in cleaned
    history = parse_messages([{"role": "user", "content": "hi\ud800\x00"}], 10, 1000)
    assert history == [{"role": "user", "content": "hi"}]
    assert run(pipe.chat("hello\x00 wor\ud800ld", params=GenerationParams(max_new_tokens=2, seed=0)))


@pytest.mark.parametrize(
    "history",
    [
        "not a list",
        [1, 2],
        [{"role": "wizard", "content": "x"}],
        [{"content": "no role"}],
        {"role": "user"},
    ],
)
def test_history_in_wrong_shape_rejected(history):
    with pytest.raises(ValueError, match="history"):
        parse_messages(history, 10, 1000)


def test_gradio_style_content_parts_accepted():
    msgs = parse_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], 10, 1000)
    assert msgs == [{"role": "user", "content": "hi"}]


def test_long_conversation_drops_oldest_turns(pipe):
    history = []
    for i in range(30):
        history += [
            {"role": "user", "content": f"question {i} " * 5},
            {"role": "assistant", "content": "answer " * 5},
        ]
    final = run(pipe.chat("last question", history, params=GenerationParams(max_new_tokens=8, seed=0)))
    assert any("dropped" in w for w in final.stats.warnings)
    assert final.stats.prompt_tokens <= pipe.engine.context_length - 8


def test_single_message_longer_than_context_is_cut_with_warning(pipe):
    final = run(pipe.chat("hello world " * 400, params=GenerationParams(max_new_tokens=8, seed=0)))
    assert any("cut" in w for w in final.stats.warnings)


def test_system_prompt_filling_the_context_is_a_clear_error(pipe):
    params = GenerationParams(max_new_tokens=256 - 20, seed=0)  # 20 tokens left for the whole prompt
    with pytest.raises(ValueError, match="no room"):
        run(
            pipe.chat(
                "Tell me a story", system_prompt="You are a helpful, concise assistant. " * 3, params=params
            )
        )


def test_max_new_tokens_larger_than_context_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="context"):
        next(pipe.chat("hi", params=GenerationParams(max_new_tokens=1000)))


def test_config_env_overrides():
    cfg = AppConfig.from_env(
        {
            "AIGC_TEXT_MODEL": "/tmp/x",
            "AIGC_PORT": "9000",
            "AIGC_SERVER_WARMUP": "false",
        }
    )
    assert cfg.text.model == "/tmp/x" and cfg.server.port == 9000 and cfg.server.warmup is False
    with pytest.raises(ValueError, match="AIGC_SERVER_PORT"):
        AppConfig.from_env({"AIGC_SERVER_PORT": "abc"})


def test_a_long_generation_leaves_room_for_short_jobs(pipe, monkeypatch):
    """A reply runs on the compute thread in ~50 ms slices, so another user's short job gets in between."""
    original = pipe.engine.generate_ids

    def slow(
        prompt_ids, params, json_schema=None, logprobs=None
    ):  # ~100 tokens/s instead of the tiny model's thousands
        for token_id in original(prompt_ids, params, json_schema):
            time.sleep(0.01)
            yield token_id

    monkeypatch.setattr(pipe.engine, "generate_ids", slow)
    params = GenerationParams(max_new_tokens=60, temperature=0, repetition_penalty=1.0, seed=0)
    stream = pipe.complete("Hello world", params)
    next(stream)
    job_done = pipe.worker.submit(time.perf_counter).result(timeout=5)
    arrivals = [time.perf_counter() for _ in stream]
    assert sum(t > job_done for t in arrivals) >= 10, "the short job waited for the whole reply"


def test_page_updates_are_paced_but_keep_the_first_and_last():
    from aigc_demo.pipelines.text import TextStats, TextUpdate
    from aigc_demo.ui.text_tab import paced

    def updates():
        for i in range(1, 51):
            reason = "length" if i == 50 else "running"
            stats = TextStats("m", "e", 1, 3, i, 0.01, 100.0, reason, ())
            yield TextUpdate(text="x" * i, stats=stats, params=GenerationParams())

    shown = [u.stats.new_tokens for u in paced(updates(), interval_s=3600)]
    assert shown == [1, 50], "first token at once, then the final update with the whole text"
    assert [u.stats.new_tokens for u in paced(updates(), interval_s=0)] == list(range(1, 51))


def test_recorded_logprobs_are_the_models_own(pipe, tiny_llama_dir):
    """TokenLogprobs sees the raw logits: each chosen token's log-probability equals a plain forward pass's,
    whatever the sampling settings."""
    from aigc_demo.pipelines.text_engines import TokenLogprobs

    recorder = TokenLogprobs()
    prompt = pipe.engine.tokenize("Once upon a time", add_special=True)
    params = GenerationParams(max_new_tokens=12, temperature=1.3, top_p=0.8, repetition_penalty=1.2, seed=3)
    made = list(itertools.islice(pipe.engine.generate_ids(prompt, params, None, recorder), 12))
    assert len(recorder.values) == len(made) - 1
    with torch.inference_mode():
        logits = plain_model(tiny_llama_dir)(torch.tensor([prompt + made])).logits[0].float()
    expected = torch.log_softmax(logits, -1)[len(prompt) - 1 : -2].gather(1, torch.tensor(made[:-1])[:, None])
    assert torch.allclose(torch.tensor(recorder.values, dtype=torch.float32), expected[:, 0], atol=2e-3)


def test_two_text_settings_compared_with_their_figures(pipe):
    from aigc_demo.pipelines.evaluate import EvaluatePipeline

    evaluate = EvaluatePipeline(None, pipe, encode=lambda texts: torch.randn(len(texts), 8))
    settings = {
        "A": {"temperature": 0.0, "max_new_tokens": 12},
        "B": {"temperature": 1.5, "max_new_tokens": 12},
    }
    events = list(evaluate.compare_text("Tell me a story", settings, replies=3))
    assert events[:-1] == [(k, 6) for k in range(1, 7)]
    greedy, hot = events[-1]
    assert len(set(greedy.replies)) == 1, "greedy: the same reply for every seed"
    assert len(set(hot.replies)) > 1, "sampled: the seeds give different replies"
    figures = {f.name: f for f in hot.figures}
    assert [f.name for f in greedy.figures] == list(figures)
    assert figures["perplexity"].value > 1 and figures["perplexity"].n == 3
    assert figures["length"].value > 0 and figures["similarity"].n == 3
    with pytest.raises(ValueError, match="replies"):
        next(iter(evaluate.compare_text("x", settings, replies=100)))


def test_a_reply_keeps_its_place_until_the_engine_is_done_with_it():
    """A reader that gives up on a slow prompt leaves; the engine is still reading it, so its place (the
    engine's context) stays taken, and a fine-tune still waits, until the engine is done."""
    import time

    from aigc_demo.compute import compute_thread
    from aigc_demo.config import TextConfig
    from aigc_demo.pipelines.text import GenerationTimeout, TextPipeline

    class Detokenizer:
        def add(self, token_id):
            return "x"

        def flush(self):
            return ""

    class SlowEngine:
        name = model_id = "slow"
        context_length, thread_name, parallel = 64, "test-slow-engine", 1

        def render_chat(self, messages):
            return " ".join(m["content"] for m in messages)

        def tokenize(self, text, add_special):
            return [1, 2, 3]

        def new_detokenizer(self):
            return Detokenizer()

        def is_end_of_turn(self, token_id):
            return token_id == 0

        def generate_ids(self, prompt_ids, params, json_schema=None, logprobs=None):
            def reading():
                time.sleep(1.5)  # a long prompt
                yield 0

            return compute_thread(self.thread_name).iterate(reading())

    pipe = TextPipeline(SlowEngine(), TextConfig(stream_timeout_s=0.2))
    params = pipe.parse_params(max_new_tokens=4, temperature=0.0, seed=0)
    with pytest.raises(GenerationTimeout):
        run(pipe.complete("Once upon a time", params=params))
    assert pipe.busy, "the engine is still reading the prompt"
    deadline = time.monotonic() + 10
    while pipe.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pipe.busy


def test_a_reply_leaves_its_thread_out_of_inference_mode_between_tokens(pipe):
    """Between a reply's tokens the compute thread runs other jobs, a fine-tune's backward pass among them:
    the reply's inference mode must not outlive each token."""
    from aigc_demo.compute import compute_thread

    prompt = pipe.engine.tokenize("Hello world", add_special=True)
    worker = compute_thread(pipe.engine.thread_name)
    params = GenerationParams(max_new_tokens=4, temperature=0, seed=0)
    tokens = worker.iterate(pipe.engine.generate_ids(prompt, params))  # a token per job, as replies run
    next(tokens)
    assert not worker.run(torch.is_inference_mode_enabled)
    next(tokens)
    assert not worker.run(torch.is_inference_mode_enabled)
    tokens.close()
