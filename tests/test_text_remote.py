"""The text pipeline on a remote engine: a real ``llama_cpp.server`` serving the embedded GGUF in a subprocess,
driven by the pipeline, then by the app (``AIGC_TEXT_ENGINE=openai``) through gradio_client with the Text
tab's own end-to-end tests."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import _free_port
from gradio_client import Client

# The Text tab's end-to-end tests, run again here against the app on the remote engine (``app_url`` below).
from test_e2e import (  # noqa: F401
    CHAT,
    test_bad_input_gets_a_clear_message,
    test_chat_stop_keeps_the_partial_reply,
    test_chat_streams_a_reply,
    test_client_that_disconnects_stops_its_generation,
    test_completion_streams,
    test_control_characters_and_broken_unicode_are_served,
    test_random_seed_is_fresh_per_request,
    test_server_still_serves_after_bad_input,
    test_stop_frees_the_worker,
)

from aigc_demo.config import AppConfig, TextConfig
from aigc_demo.models import resolve_model_path
from aigc_demo.pipelines.text import GenerationParams, GenerationTimeout, TextPipeline
from aigc_demo.pipelines.text_engines import TokenLogprobs, transformers_source
from aigc_demo.pipelines.text_remote import server_message

pytestmark = pytest.mark.slow  # a llama.cpp server, and an app, in subprocesses

API_KEY = "test-key"
GREEDY = GenerationParams(max_new_tokens=16, temperature=0.0, seed=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m llama_cpp.server`` on the embedded GGUF (one thread: the app and this share two cores):
    its API root and the model name it serves."""
    folder, gguf = resolve_model_path(TextConfig().model)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(Path(folder) / gguf)]
    command += ["--model_alias", "smollm2", "--api_key", API_KEY, "--port", str(port)]
    command += ["--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "2048"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {API_KEY}"})
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start:\n{log_path.read_text()[-3000:]}")
            try:
                models = json.loads(urllib.request.urlopen(request, timeout=2).read())
                break
            except OSError:
                time.sleep(0.3)
        yield url, models["data"][0]["id"]
    finally:
        proc.kill()
        proc.wait(timeout=20)


def remote_pipe(url: str, model: str = "smollm2", api_key: str | None = API_KEY, **cfg) -> TextPipeline:
    return TextPipeline.from_config(
        TextConfig(engine="openai", base_url=url, model=model, api_key=api_key, **cfg)
    )


@pytest.fixture(scope="module")
def pipe(server):
    return remote_pipe(*server)


def run(stream):
    updates = list(stream)
    return updates[-1], updates


# ---- the engine against the real server ----------------------------------------------------------------
def test_a_reply_streams_with_its_stats(pipe, server):
    final, updates = run(pipe.chat("Name three colours.", params=GREEDY))
    assert final.text.strip() and len(updates) >= 3
    s = final.stats
    assert (s.engine, s.model, s.seed) == ("openai", server[1], 1)
    assert s.finish_reason in ("stop", "length") and 3 <= s.new_tokens <= 16
    assert s.time_to_first_token_s is not None and s.tokens_per_s is not None
    assert [u.stats.finish_reason for u in updates[:-1]] == ["running"] * (len(updates) - 1)


# llama.cpp's servers evaluate only what follows a prompt prefix they still hold, and a shorter evaluation can
# change the logits' last bits, so a near tie (greedy too) may go the other way after another prompt
# (docs/serving.md). A reply is reproducible from its seed on the same server state: a prompt sent before.
def test_the_seed_is_sent_and_reproduces_the_reply(pipe):
    sampled = GenerationParams(max_new_tokens=16, temperature=1.0, top_k=0, min_p=0.0, seed=7)
    seeds = [sampled, sampled, sampled, replace(sampled, seed=8)]
    texts = [run(pipe.complete("Tell me a story", params=params))[0].text for params in seeds]
    assert texts[1] == texts[2] and texts[3] != texts[2] and texts[2].strip()
    greedy = [run(pipe.chat("Say hello in French.", params=GREEDY))[0].text for _ in range(3)]
    assert greedy[1] == greedy[2] and greedy[2].strip()


def test_a_json_schema_is_followed(pipe):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    params = GenerationParams(max_new_tokens=48, temperature=0.0, seed=0)
    final, _ = run(pipe.chat("Give a title for a story about the sea.", params=params, json_schema=schema))
    assert isinstance(json.loads(final.text)["title"], str)


def test_stop_mid_stream_keeps_the_text_and_frees_the_server(pipe):
    stop = threading.Event()
    long = GenerationParams(max_new_tokens=1500, temperature=0.8, repetition_penalty=1.0, min_p=0.0, seed=5)
    updates = []
    for update in pipe.chat("Write a very long story about the sea.", params=long, stop=stop):
        updates.append(update)
        if len(updates) == 3:
            stop.set()
    final = updates[-1]
    assert final.stats.finish_reason == "stopped" and 3 <= final.stats.new_tokens < 20 and final.text
    # The server serves one request at a time: the next is answered at once only if the stopped one ended.
    t0 = time.perf_counter()
    assert run(pipe.chat("Hi", params=GenerationParams(max_new_tokens=4, seed=0)))[0].text
    assert time.perf_counter() - t0 < 20, "the server kept generating the stopped reply"


def test_server_down_is_a_clear_message(caplog):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    down = remote_pipe(url)
    with caplog.at_level(logging.WARNING):
        down.warm_up()  # the app still starts: the server may be on its way up
    assert "not ready" in caplog.text
    with pytest.raises(ValueError, match=rf"text engine at {url} is not reachable \(connection refused\)"):
        run(down.chat("Hi"))


def test_an_http_error_is_a_clear_message_without_the_prompt(server):
    prompt = "my private question about the weather"
    with pytest.raises(ValueError, match=r"answered 401 Unauthorized: Invalid API key") as err:
        run(remote_pipe(server[0], api_key="wrong").chat(prompt))
    assert prompt not in str(err.value) and "wrong" not in str(err.value)


def test_a_prompt_the_server_cannot_fit_is_a_clear_message(pipe):
    with pytest.raises(ValueError, match="ended the reply without finishing it"):
        run(pipe.complete("word " * 3000, params=GREEDY))


def test_a_silent_server_hits_the_stream_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        pipe = remote_pipe(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", stream_timeout_s=1.0)
        with pytest.raises(GenerationTimeout, match="no token for 1 s"):
            run(pipe.chat("Hi"))


def test_what_needs_the_models_tokens_says_so(pipe):
    with pytest.raises(ValueError, match="watermark check: not available with a remote text engine"):
        pipe.watermark("Some text to check for a watermark.")
    with pytest.raises(ValueError, match="watermark: not available with a remote"):
        pipe.chat("Hi", params=GenerationParams(watermark=True))
    with pytest.raises(ValueError, match="log-probabilities .*: not available with a remote"):
        pipe.chat("Hi", logprobs=TokenLogprobs())
    with pytest.raises(ValueError, match="fine-tuning and adapters: not available"):
        transformers_source(pipe.cfg)


# ---- configuration and messages (no server) ----------------------------------------------------------------
def test_the_key_comes_from_the_environment_and_stays_out_of_reprs():
    cfg = AppConfig.from_env({"AIGC_TEXT_ENGINE": "openai", "AIGC_TEXT_API_KEY": "s3cret-key"})
    assert cfg.text.api_key == "s3cret-key" and "s3cret-key" not in repr(cfg)
    with pytest.raises(ValueError, match="AIGC_TEXT_BASE_URL"):
        TextPipeline.from_config(cfg.text)


def test_a_server_message_is_one_short_line_without_what_was_sent():
    prompt = "tell me about my secret plan"
    fastapi_422 = {
        "detail": [{"loc": ["body", "messages", 0, "role"], "msg": "Input should be 'user'", "input": prompt}]
    }
    llama_cpp_500 = {"error": {"message": f"2 validation errors:\n  {{'input': {{'content': '{prompt}'}}}}"}}
    echo = {"error": {"message": f"cannot read '{prompt}'"}}
    assert server_message(json.dumps(fastapi_422), [prompt]) == "body.messages.0.role: Input should be 'user'"
    assert server_message(json.dumps(llama_cpp_500), [prompt]) == "2 validation errors:"
    assert server_message(json.dumps(echo), [prompt]) == "cannot read '…'"
    assert server_message("x" * 1000, []) == "x" * 200 + "…"
    assert server_message("", []) == "no message"


# ---- the app on the remote engine, through gradio_client -----------------------------------------------
@pytest.fixture(scope="module")
def app_url(start_app, server):
    """The app with its Text tab on the server above (the imported end-to-end tests use this one)."""
    url, model = server
    env = {
        "AIGC_TEXT_ENGINE": "openai",
        "AIGC_TEXT_BASE_URL": url,
        "AIGC_TEXT_MODEL": model,
        "AIGC_TEXT_API_KEY": API_KEY,
        "AIGC_SERVER_WARMUP": "false",  # the image models' warm-ups are not what this tests
    }
    with start_app(**env) as app:
        yield app


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_greedy_is_reproducible_through_the_api_on_the_same_server_state(client):
    replies = [client.predict("Say hello in French.", api_name="/chat", **CHAT)["text"] for _ in range(3)]
    assert replies[1] == replies[2] and replies[2].strip()


def test_the_app_replies_with_the_servers_model(client, server):
    reply = client.predict("Hi", api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)
    assert reply["model"] == server[1] and reply["new_tokens"] >= 1


def test_the_app_says_what_a_remote_engine_cannot_do(client):
    with pytest.raises(Exception, match="watermark: not available with a remote text engine"):
        client.predict("Hi", api_name="/chat", watermark=True)
    with pytest.raises(Exception, match="not available with a remote text engine"):
        client.predict("Some text that might carry a watermark.", api_name="/verify_text")
    with pytest.raises(Exception, match="log-probabilities .*: not available with a remote text engine"):
        client.predict("Write a line about the sea.", replies=2, max_new_tokens=4, api_name="/evaluate_text")
    with pytest.raises(Exception, match="fine-tuning and adapters: not available with a remote text engine"):
        client.predict(text="A few words to learn from. " * 40, api_name="/tune_text_check")
