"""End to end: the real app in a subprocess, driven through gradio_client like any API user."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client

CHAT = dict(max_new_tokens=32, temperature=0.0, seed=1)


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_chat_streams_a_reply(client):
    job = client.submit("Name three colours.", api_name="/chat", **CHAT)
    updates = list(job)
    final = job.result()
    assert final["text"].strip(), final
    assert final["finish_reason"] in ("stop", "length")
    assert final["new_tokens"] >= 3 and final["seed"] == 1
    assert len(updates) >= 2, "the reply should arrive in several streamed steps"


def test_greedy_is_reproducible_through_the_api(client):
    a = client.predict("Say hello in French.", api_name="/chat", **CHAT)
    b = client.predict("Say hello in French.", api_name="/chat", **CHAT)
    assert a["text"] == b["text"] and a["text"].strip()


def test_random_seed_is_fresh_per_request(client):
    a, b = (client.predict("Hi", api_name="/chat", max_new_tokens=1, seed=-1)["seed"] for _ in range(2))
    assert a != b and 0 <= a < 2**32 and 0 <= b < 2**32


def test_completion_streams(client):
    final = client.predict(
        "Once upon a time",
        api_name="/complete",
        max_new_tokens=16,
        temperature=0.0,
        seed=0,
    )
    assert final["text"].strip() and final["new_tokens"] >= 1


def start_a_long_story(client):
    """A 1,500-token chat job, returned once its first text has streamed."""
    job = client.submit(
        "Write a very long story about the sea.",
        api_name="/chat",
        max_new_tokens=1500,
        temperature=0.8,
        repetition_penalty=1.0,
        min_p=0.0,
        seed=5,
    )
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    assert job.outputs(), "no streamed output arrived"
    return job


def test_stop_frees_the_worker(client):
    job = start_a_long_story(client)
    job.cancel()
    t0 = time.time()
    reply = client.predict("Hi", api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)
    waited = time.time() - t0
    assert reply["new_tokens"] >= 1
    # 1500 tokens would take >10 s; the next request must not wait for them.
    assert waited < 8, f"next request waited {waited:.1f} s: the stopped generation kept running"


def test_chat_stop_keeps_the_partial_reply(client):
    job = start_a_long_story(client)
    client.predict(api_name="/chat_stop")  # the Stop button, from the same client session
    final = job.result(timeout=30)
    assert final["finish_reason"] == "stopped"
    assert 1 <= final["new_tokens"] < 1500 and final["text"].strip()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(message=""), "empty"),
        (dict(message="   \n "), "empty"),
        (dict(message="x" * 100_000), "limit"),
        (dict(message="hi", temperature=-1), "temperature"),
        (dict(message="hi", top_p=5), "top_p"),
        (dict(message="hi", max_new_tokens=10**9), "max_new_tokens"),
        (dict(message="hi", seed="abc"), "seed"),
        (dict(message="hi", history="not a list"), "history"),
        (dict(message="hi", history=[{"who": "me"}]), "history"),
    ],
)
def test_bad_input_gets_a_clear_message(client, kwargs, words):
    with pytest.raises(Exception, match=words):
        client.predict(api_name="/chat", **kwargs)


def _call_raw(app_url: str, api_name: str, data: list) -> str:
    """Gradio's plain HTTP API, for payloads gradio_client refuses to encode (lone surrogates)."""
    import json
    import urllib.request

    body = json.dumps({"data": data}).encode()  # ensure_ascii: "\ud800" travels as a valid JSON escape
    req = urllib.request.Request(
        f"{app_url}gradio_api/call/{api_name}", body, {"Content-Type": "application/json"}
    )
    event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    with urllib.request.urlopen(f"{app_url}gradio_api/call/{api_name}/{event_id}", timeout=120) as stream:
        return stream.read().decode()


def test_control_characters_and_broken_unicode_are_served(client, app_url):
    reply = client.predict(
        "hello\x00\x07 world\x1b[31m", api_name="/chat", max_new_tokens=4, temperature=0, seed=0
    )
    assert reply["new_tokens"] >= 1
    events = _call_raw(
        app_url, "chat", ["hello wor\ud800ld \udfff", None, None, 4, 0.0, 0.9, 50, 0.05, 1.1, 0, False, ""]
    )
    assert "event: complete" in events and "new_tokens" in events, events[-500:]


def test_server_still_serves_after_bad_input(client):
    assert client.predict("Hi", api_name="/chat", **CHAT)["text"].strip()


def test_the_longest_accepted_message_is_answered(client):
    """A message at the length limit fills the context: it is cut to fit, read for tens of seconds and answered."""
    from aigc_demo.config import TextConfig

    limit = TextConfig().max_prompt_chars
    ask = "\nSummarise that."
    message = ("The history of printing is long, and it began in many places. " * 400)[
        : limit - len(ask)
    ] + ask
    assert len(message) == limit
    reply = client.predict(message, api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)
    assert reply["new_tokens"] >= 1, reply
    assert reply["prompt_tokens"] > 3000, reply
    assert any("too long for the context" in w for w in reply["warnings"]), reply


def test_client_that_disconnects_stops_its_generation(client, app_url):
    """A client that vanishes mid-stream must not keep the worker busy."""
    import subprocess
    import sys

    script = (
        "import os, time\n"
        "from gradio_client import Client\n"
        f"c = Client({app_url!r}, verbose=False)\n"
        "job = c.submit('Write a very long story.', api_name='/chat', max_new_tokens=1500, temperature=0.8,"
        " repetition_penalty=1.0, min_p=0.0, seed=9)\n"
        "deadline = time.time() + 60\n"
        "while not job.outputs() and time.time() < deadline: time.sleep(0.05)\n"
        "os._exit(0 if job.outputs() else 3)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 0
    t0 = time.time()
    reply = client.predict("Hi", api_name="/chat", max_new_tokens=4, temperature=0.0, seed=0)
    assert reply["new_tokens"] >= 1
    assert time.time() - t0 < 8, "the abandoned generation kept the worker busy"


def test_an_empty_session_hash_gets_a_message_not_a_server_error(client, app_url):
    import httpx

    config = httpx.get(app_url + "config").json()
    for api_name in ("chat_stop", "chat"):
        fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)
        r = httpx.post(
            app_url + "gradio_api/queue/join",
            json={
                "data": ["Hi"],
                "fn_index": fn_index,
                "session_hash": "",
                "event_data": None,
                "trigger_id": None,
            },
        )
        assert r.status_code == 422 and "session_hash" in r.json()["detail"]
    assert client.predict("Hi", api_name="/chat", **CHAT)["text"].strip()
