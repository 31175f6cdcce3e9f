"""A text engine behind a server with the OpenAI API: vLLM, llama.cpp's llama-server, llama-cpp-python's
``llama_cpp.server`` (docs/serving.md).

The server owns the weights, the chat template and the tokenizer, so this engine deals in text, not token ids:
a reply is the stream of text deltas of ``/chat/completions`` or ``/completions`` (server-sent events), and the
server's finish reason and token counts at its end. What needs the model's tokens in this process (the text
watermark, log-probabilities, fine-tuning and adapters) is refused with ``unavailable``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import httpx

from aigc_demo.config import TextConfig

if TYPE_CHECKING:
    from aigc_demo.pipelines.text import GenerationParams

log = logging.getLogger(__name__)

# A server's error message is shown to the user: its first line, at most this long.
MAX_ERROR_CHARS = 200


class RemoteEngineError(ValueError):
    """The server is down, refused the request or broke off the reply: shown to the user (an operator's
    problem, not a traceback)."""


def unavailable(what: str, needs: str = "tokens") -> ValueError:
    return ValueError(f"{what}: not available with a remote text engine (it needs the model's {needs} here)")


class RemoteReply:
    """One streamed reply: iterating gives text deltas (opening the stream on the first ``next``); after the
    end, the server's finish reason and, where it reports usage, its token counts. ``close`` closes the HTTP
    stream, which is how a server learns to stop."""

    def __init__(self, engine: OpenAIEngine, path: str, body: dict, sent: Sequence[str]):
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None  # None: the server does not report usage in streams
        self.new_tokens: int | None = None
        self._engine = engine
        self._events = self._read(path, body, sent)

    def __iter__(self) -> RemoteReply:
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def _read(self, path: str, body: dict, sent: Sequence[str]) -> Iterator[str]:
        where = f"the text engine at {self._engine.url}"
        try:
            with self._engine.client.stream("POST", path, json=body) as response:
                if response.is_error:
                    response.read()
                    raise RemoteEngineError(
                        f"{where} answered {response.status_code} {response.reason_phrase}: "
                        f"{server_message(response.text, sent)}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):  # blank separators, ": ping" comments, event names
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise RemoteEngineError(f"{where} sent an event that is not JSON") from None
                    if "error" in chunk:  # vLLM and llama-server report a failure mid-stream this way
                        raise RemoteEngineError(f"{where} failed: {server_message(data, sent)}")
                    if usage := chunk.get("usage"):
                        self.prompt_tokens = usage.get("prompt_tokens")
                        self.new_tokens = usage.get("completion_tokens")
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta")  # chat; a completion's choice has its text
                        piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                        if piece:
                            yield piece
                        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        except httpx.ConnectError as err:
            reason = re.sub(r"^\[Errno -?\d+\] ", "", str(err)).lower() or "connection failed"
            raise RemoteEngineError(f"{where} is not reachable ({reason})") from None
        except httpx.ConnectTimeout:
            raise RemoteEngineError(f"{where} is not reachable (connection timed out)") from None
        except (httpx.RemoteProtocolError, httpx.ReadError):
            raise RemoteEngineError(f"{where} broke off the reply (its log says why)") from None
        if self.finish_reason is None:
            # llama-cpp-python, for one, ends the stream without a word when the prompt does not fit.
            raise RemoteEngineError(
                f"{where} ended the reply without finishing it (a prompt longer than its context? its log says)"
            )


def server_message(text: str, sent: Sequence[str]) -> str:
    """A server's error body as one short line: the OpenAI ``error.message`` or FastAPI's ``detail`` (field and
    reason only, never the value), first line, and nothing of what was sent (a validation error may quote it)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", "")))
        if isinstance(error, dict):
            error = error.get("message", "")
        elif isinstance(error, list):  # FastAPI's validation errors
            error = "; ".join(
                f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                for e in error
                if isinstance(e, dict)
            )
        body = error
    message = str(body).strip().splitlines()[0] if str(body).strip() else "no message"
    for text_sent in sent:
        if len(text_sent.strip()) >= 4:  # shorter ones are words any message may hold
            message = message.replace(text_sent.strip(), "…")
    return message[:MAX_ERROR_CHARS] + ("…" if len(message) > MAX_ERROR_CHARS else "")


class OpenAIEngine:
    """A model served by another process. One client (connection pool) for every request; thread-safe."""

    name = "openai"

    def __init__(self, base_url: str, model_id: str, api_key: str | None = None, timeout_s: float = 120.0):
        url = httpx.URL(base_url.rstrip("/") + "/")
        self.url = str(url.copy_with(username=None, password=None)).rstrip("/")  # shown in messages
        self.model_id = model_id
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )

    @classmethod
    def from_config(cls, cfg: TextConfig) -> OpenAIEngine:
        if not cfg.base_url:
            raise ValueError(
                "the 'openai' text engine needs the server's API root in AIGC_TEXT_BASE_URL, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        # The pipeline's stream timeout fires first, for every engine; this read timeout only frees a reader
        # left waiting on a server that went silent.
        return cls(cfg.base_url, cfg.model, cfg.api_key, timeout_s=2 * cfg.stream_timeout_s)

    def models(self) -> list[str]:
        """The model names the server serves (``text.model`` must be one of them)."""
        response = self.client.get("models")
        response.raise_for_status()
        return [m.get("id") for m in response.json().get("data", [])]

    def warm_up(self) -> None:
        """Check that the server is up and serves our model; only warn: it may still be starting, and every
        request says what is wrong if it stays so."""
        try:
            served = self.models()
        except (httpx.HTTPError, ValueError) as err:
            log.warning("the text engine at %s is not ready: %s", self.url, err)
            return
        if self.model_id not in served:
            log.warning(
                "the text engine at %s serves %s, not %r (AIGC_TEXT_MODEL)", self.url, served, self.model_id
            )

    def chat(
        self, messages: Sequence[dict[str, str]], params: GenerationParams, json_schema: dict | None = None
    ) -> RemoteReply:
        body = {"messages": list(messages), **self._sampling(params)}
        if json_schema:
            # llama.cpp's servers constrain decoding to the schema in this form; vLLM returns JSON, unchecked.
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        return RemoteReply(self, "chat/completions", body, [m["content"] for m in messages])

    def complete(self, prompt: str, params: GenerationParams) -> RemoteReply:
        return RemoteReply(self, "completions", {"prompt": prompt, **self._sampling(params)}, [prompt])

    def _sampling(self, params: GenerationParams) -> dict:
        return {
            "model": self.model_id,
            "stream": True,
            "stream_options": {"include_usage": True},  # token counts for the stats line (vLLM, llama-server)
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,  # 0 = greedy on every server
            "top_p": params.top_p,
            "seed": params.seed,
            # Not in the OpenAI API; llama.cpp and vLLM read them, other servers ignore them.
            "top_k": params.top_k,
            "min_p": params.min_p,
            # The multiplicative penalty under both servers' names (OpenAI's frequency_penalty is additive).
            "repeat_penalty": params.repetition_penalty,
            "repetition_penalty": params.repetition_penalty,
        }
