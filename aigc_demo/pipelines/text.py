"""Text generation: chat and completion with a causal LM, streamed token by token.

The pipeline knows messages, prompts, limits and seeds; an *engine* (``text_engines.py``) knows one model
runtime and deals only in token ids. A remote engine (``text_remote.py``) streams text from a server that owns
the template and tokenizer; the stream's statistics, stop, timeout and content check are the same.
``GenerationParams`` declares each sampling parameter once: its check, the Text tab's controls and the API
signature all come from it (``aigc_demo/schema.py``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from aigc_demo import validation
from aigc_demo.compute import SHARED, ComputeThread, StopFlag, compute_thread
from aigc_demo.config import TextConfig
from aigc_demo.content_filter import check_text, flagged
from aigc_demo.pipelines.text_engines import TextEngine, TokenLogprobs, build_engine
from aigc_demo.pipelines.text_remote import OpenAIEngine, RemoteReply, unavailable
from aigc_demo.provenance.text_watermark import Detection, detect
from aigc_demo.schema import Config, Schema, param

log = logging.getLogger(__name__)

MAX_SYSTEM_PROMPT_CHARS = 8_000


# ----------------------------------------------------------------------------------------------------
# Requests and results
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings. Defaults suit a small chat model: a little randomness, a mild repeat penalty.

    The accepted ranges are the ones the sliders show; a value outside is refused, not clamped."""

    max_new_tokens: int = param(
        256, label="max_new_tokens", low=1, high=Config("max_new_tokens_limit"), step=1
    )
    # 0 = greedy (deterministic whatever the seed); at 2 a small model already samples deep into the tail.
    temperature: float = param(0.7, label="temperature", low=0.0, high=2.0, step=0.05)
    top_p: float = param(0.9, label="top_p", low=0.0, high=1.0, low_open=True, step=0.01)
    top_k: int = param(50, label="top_k", low=0, high=200, step=1)  # 0 = off
    # Drop tokens under 5 % of the top token's probability: cuts the tail that top-p lets through.
    min_p: float = param(0.05, label="min_p", low=0.0, high=1.0, step=0.01)
    # 1.0 = off; small models loop without it.
    repetition_penalty: float = param(1.1, label="repetition_penalty", low=1.0, high=2.0, step=0.01)
    seed: int = param(-1, label="seed", seed=True)  # -1 = a fresh one per request; the one used is returned
    # The green-list watermark (provenance/text_watermark.py): the Verify tab reads it as a z-score.
    watermark: bool = param(False, label="text_watermark")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class TextStats:
    model: str
    engine: str
    seed: int
    prompt_tokens: int | None  # None: a remote engine that does not report usage
    new_tokens: int
    time_to_first_token_s: float | None
    tokens_per_s: float | None  # decode speed, after the first token
    finish_reason: str  # "running" | "stop" (end of turn) | "length" (max_new_tokens) | "stopped" (by user)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextUpdate:
    """One step of a stream: the whole text so far and live statistics."""

    text: str
    stats: TextStats
    params: GenerationParams


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------
ROLES = ("user", "assistant", "system")


def parse_messages(history, max_turns: int, max_chars: int) -> list[dict[str, str]]:
    """Accept a list of {"role", "content"} dicts (the OpenAI/gradio shape); say clearly what is wrong."""
    if history is None:
        return []
    if not isinstance(history, list | tuple):
        raise ValueError("history must be a list of {'role': ..., 'content': ...} messages")
    if len(history) > 2 * max_turns:
        raise ValueError(f"history has {len(history)} messages; the limit is {2 * max_turns}")
    messages = []
    for i, m in enumerate(history):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"history[{i}] must be a dict with 'role' and 'content'")
        role = validation.choice(f"history[{i}].role", m["role"], ROLES)
        content = m["content"]
        if isinstance(content, list):  # gradio 6 may send [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        messages.append({"role": role, "content": validation.text(f"history[{i}]", content, max_chars)})
    return messages


# ----------------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------------
class GenerationTimeout(RuntimeError):
    pass


@dataclass
class _Run:
    """One generation's shared state between the compute thread and the consumer."""

    pieces: queue.Queue = field(default_factory=lambda: queue.Queue())
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


# A generation holds the compute thread for at most this long before queueing its next slice, so short jobs
# (a latent slider, an image step) are not held up by a long reply.
SLICE_S = 0.05
# How often a stream waiting for its next token checks its stop flag (a long prompt can take seconds).
STOP_POLL_S = 0.1
# The slowest prompt reading (prefill) the first token is waited for, in tokens per second. llama.cpp reads
# SmolLM2 prompts at 95-190 tokens/s on a 2-core Xeon (2026-12-01; slower the longer the prompt), so the
# longest prompt the context holds takes ~40 s idle and more while images share the cores.
PREFILL_FLOOR_TOKENS_PER_S = 20.0


_DONE = object()


class _Replies:
    """Admits at most ``limit`` replies at once, and counts those being written."""

    def __init__(self, limit: int):
        self._free = threading.Semaphore(limit)
        self._count_lock = threading.Lock()
        self.count = 0

    @contextlib.contextmanager
    def place(self, run: _Run) -> Iterator[None]:
        """A place for ``run`` until it has finished on the compute thread, not only until its reader stops
        (a reader gives up on a prompt still being read; the engine's context is in use until that ends)."""
        self._free.acquire()
        with self._count_lock:
            self.count += 1
        try:
            yield
        finally:
            if run.finished.is_set():
                self._leave()
            else:
                threading.Thread(
                    target=lambda: (run.finished.wait(), self._leave()), name="aigc-text-place", daemon=True
                ).start()

    def _leave(self) -> None:
        with self._count_lock:
            self.count -= 1
        self._free.release()


class TextPipeline:
    """Chat and completion on one resident engine, shared by every user."""

    def __init__(self, engine: TextEngine | OpenAIEngine, cfg: TextConfig | None = None):
        self.engine = engine
        self.cfg = cfg or TextConfig()
        # The sampling parameters with this config's limits: the check, the sliders and the API use it.
        self.schema: Schema[GenerationParams] = Schema(GenerationParams, self.cfg)
        # A remote engine computes on its server, which batches concurrent replies; each reply's stream is read
        # on a thread of its own (_stream).
        self.remote = isinstance(engine, OpenAIEngine)
        # As many generations at once as the engine writes (llama.cpp: one per context); the UI queue limits
        # too, this guards direct callers.
        self._writing = _Replies(1 if self.remote else engine.parallel)
        self.worker: ComputeThread = compute_thread(SHARED if self.remote else engine.thread_name)

    @classmethod
    def from_config(cls, cfg: TextConfig) -> TextPipeline:
        """Load on the shared compute thread (where the transformers engine runs and sets its thread count)."""
        return compute_thread(SHARED).run(cls._load, cfg)

    @classmethod
    def _load(cls, cfg: TextConfig) -> TextPipeline:
        t0 = time.perf_counter()
        pipe = cls(build_engine(cfg), cfg)
        log.info(
            "text pipeline ready (%s, %s) in %.2f s",
            cfg.model,
            pipe.engine.name,
            time.perf_counter() - t0,
        )
        return pipe

    def watermark(self, text: str) -> Detection:
        """The green-list watermark's z-score in ``text``, tokenised as this model wrote it."""
        if self.remote:
            raise unavailable("the text watermark check")
        text = validation.text("text", text, self.cfg.max_prompt_chars, required=True)
        return detect(self.engine.tokenize(text, add_special=False))

    def warm_up(self) -> None:
        """One short greedy reply: pages in the weights and builds the compute graphs before a user waits.
        A remote engine is only checked, with a warning if it is not up yet."""
        if self.remote:
            self.engine.warm_up()
            return
        for _ in self.chat("Hi", params=GenerationParams(max_new_tokens=2, temperature=0, seed=0)):
            pass

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def busy(self) -> bool:
        """A reply is being generated (a fine-tune waits for it between its steps)."""
        return self._writing.count > 0

    def parse_params(self, values=None, **more) -> GenerationParams:
        """Checked settings from loose values (UI, API); missing ones take their defaults, seed -1 stays."""
        return self.schema.parse(values, **more)

    def _request_params(
        self, params: GenerationParams | None, logprobs: TokenLogprobs | None = None
    ) -> GenerationParams:
        """Check ``params`` and fix this request's seed: -1 draws a fresh one from the OS, so every result
        can be reproduced from the seed reported with it."""
        params = self.parse_params(params)
        if self.remote and params.watermark:
            raise unavailable("the text watermark")
        if self.remote and logprobs is not None:
            raise unavailable("log-probabilities (perplexity)")
        return replace(params, seed=validation.seed(params.seed))

    def chat(
        self,
        message: str,
        history=None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
        stop: StopFlag | None = None,
        json_schema: dict | None = None,
        logprobs: TokenLogprobs | None = None,
    ) -> Iterator[TextUpdate]:
        """Stream the assistant's reply to `message` after `history` (oldest turns dropped if too long).

        The inputs are checked at the call (a ValueError names the problem), before any model work.
        Setting `stop` ends the stream after the current token, with a last update (finish "stopped").
        With `json_schema` the reply is JSON valid under it (constrained decoding), unless cut by
        `max_new_tokens` or `stop`. ``logprobs`` records each chosen token's log-probability (perplexity)."""
        # 1. Check inputs before touching the model.
        params = self._request_params(params, logprobs)
        message = validation.text("message", message, self.cfg.max_prompt_chars, required=True)
        check_text(message, "message")
        messages = parse_messages(history, self.cfg.max_history_turns, self.cfg.max_prompt_chars)
        messages = [m for m in messages if m["role"] != "system"]
        system = self.cfg.system_prompt if system_prompt is None else system_prompt
        system = validation.text("system prompt", system, MAX_SYSTEM_PROMPT_CHARS)
        turns = messages + [{"role": "user", "content": message}]
        if self.remote:  # its server applies the template and fits the context (or says why it cannot)
            head = [{"role": "system", "content": system}] if system else []
            return self._stream(self.engine.chat(head + turns, params, json_schema), params, (), stop)
        # 2. Fit the conversation into the context window, dropping the oldest turns first.
        budget = self._prompt_budget(params)
        prompt_ids, warnings = self._fit_chat(system, turns, budget)
        # 3. Generate (lazily: the model starts when the caller iterates).
        return self._stream(prompt_ids, params, warnings, stop, json_schema, logprobs)

    def complete(
        self, prompt: str, params: GenerationParams | None = None, stop: StopFlag | None = None
    ) -> Iterator[TextUpdate]:
        """Stream a raw continuation of `prompt` (for base models and writing); inputs checked at the call."""
        params = self._request_params(params)
        cleaned = validation.text("prompt", prompt, self.cfg.max_prompt_chars, required=True)
        check_text(cleaned, "prompt")
        # A continuation starts exactly where the text stops: a trailing newline or space is kept.
        prompt = cleaned + "".join(ch for ch in prompt[len(prompt.rstrip()) :] if ch in " \n\t")
        if self.remote:
            return self._stream(self.engine.complete(prompt, params), params, (), stop)
        budget = self._prompt_budget(params)
        ids = self.engine.tokenize(prompt, add_special=True)
        warnings = []
        if len(ids) > budget:
            warnings.append(f"prompt was {len(ids)} tokens; kept the last {budget} (context limit)")
            ids = ids[-budget:]
        return self._stream(ids, params, tuple(warnings), stop)

    def _prompt_budget(self, params: GenerationParams) -> int:
        budget = self.engine.context_length - params.max_new_tokens
        if budget < 16:
            raise ValueError(
                f"max_new_tokens={params.max_new_tokens} leaves no room for the prompt in a "
                f"{self.engine.context_length}-token context"
            )
        return budget

    def _fit_chat(self, system: str, turns: list[dict], budget: int) -> tuple[list[int], tuple[str, ...]]:
        head = [{"role": "system", "content": system}] if system else []
        dropped = 0
        while True:
            ids = self.engine.tokenize(self.engine.render_chat(head + turns), add_special=False)
            if len(ids) <= budget:
                break
            if len(turns) > 1:
                drop = 2 if turns[0]["role"] == "user" and len(turns) > 2 else 1  # a whole exchange
                turns, dropped = turns[drop:], dropped + drop
                continue
            # The newest message alone is too long: keep its start and end, cut the middle.
            content = turns[-1]["content"]
            keep = int(len(content) * budget / len(ids) * 0.9) // 2
            if keep < 1 or 2 * keep + 3 >= len(content):  # cutting would not shrink it: the rest is too long
                raise ValueError("the system prompt leaves no room for the message in the context window")
            turns = [{"role": "user", "content": content[:keep] + "\n…\n" + content[-keep:]}]
            dropped = -1
        warnings = ()
        if dropped > 0:
            warnings = (f"conversation too long for the context: dropped the {dropped} oldest message(s)",)
        elif dropped < 0:
            warnings = ("message too long for the context: its middle was cut",)
        return ids, warnings

    def _stream(
        self,
        prompt: list[int] | RemoteReply,
        params: GenerationParams,
        warnings,
        stop: StopFlag | None = None,
        json_schema: dict | None = None,
        logprobs: TokenLogprobs | None = None,
    ) -> Iterator[TextUpdate]:
        """The reply to ``prompt``: token ids for a local engine, or a remote engine's reply (text deltas, which
        its server ends and counts)."""
        reply = prompt if isinstance(prompt, RemoteReply) else None
        run = _Run()
        t_start = time.perf_counter()
        t_first = None
        n_new = 0
        n_prompt = None if reply is not None else len(prompt)
        detok = None if reply is not None else self.engine.new_detokenizer()
        text = ""
        finish = "running"

        def update(reason: str) -> TextUpdate:
            now = time.perf_counter()
            ttft = None if t_first is None else t_first - t_start
            tps = (
                (n_new - 1) / (now - t_first) if t_first is not None and n_new > 1 and now > t_first else None
            )
            stats = TextStats(
                model=self.engine.model_id,
                engine=self.engine.name,
                seed=params.seed,
                prompt_tokens=n_prompt,
                new_tokens=n_new,
                time_to_first_token_s=ttft,
                tokens_per_s=tps,
                finish_reason=reason,
                warnings=tuple(warnings),
            )
            return TextUpdate(text=text, stats=stats, params=params)

        with contextlib.nullcontext() if reply is not None else self._writing.place(run):
            if reply is not None:
                threading.Thread(
                    target=self._produce, args=(run, reply), name="aigc-text-remote", daemon=True
                ).start()
            else:
                # The model runs on its engine's compute thread (aigc_demo/compute.py); this one only streams text.
                # Ahead of the replies already streaming: their next slices wait for this one's first.
                self.worker.submit_next(
                    self._produce, run, self.engine.generate_ids(prompt, params, json_schema, logprobs)
                )
            try:
                last_token = time.monotonic()
                # Before the first token the model reads the whole prompt: a long one is slow, not stuck.
                patience = self.cfg.stream_timeout_s + (n_prompt or 0) / PREFILL_FLOOR_TOKENS_PER_S
                while True:
                    if stop is not None and stop.is_set():
                        finish = "stopped"
                        break
                    try:
                        item = run.pieces.get(timeout=STOP_POLL_S)
                    except queue.Empty:
                        if time.monotonic() - last_token > patience:
                            raise GenerationTimeout(
                                f"no token for {patience:.0f} s; generation abandoned"
                            ) from None
                        continue
                    last_token, patience = time.monotonic(), self.cfg.stream_timeout_s
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if reply is None:  # a token id; a remote engine's item is already text (about a token)
                        if self.engine.is_end_of_turn(item):
                            finish = "stop"
                            break
                        item = detok.add(item)
                    if t_first is None:
                        t_first = time.perf_counter()
                    n_new += 1
                    text += item
                    if reply is None and n_new >= params.max_new_tokens:  # a server stops by itself
                        finish = "length"
                        break
                    yield update("running")
                if reply is not None:
                    if finish == "running":  # the server ended the reply: its reason and counts
                        finish = reply.finish_reason or "stop"
                        n_prompt, n_new = reply.prompt_tokens, reply.new_tokens or n_new
                else:
                    text += detok.flush()
                if hit := flagged(text):  # already streamed: labelled, as the API's last update says
                    warnings = (
                        *warnings,
                        f"The content filter reads this reply as {hit.concept} ({hit.reason}).",
                    )
                yield update(finish)
            except GeneratorExit:
                finish = "stopped"
                raise
            finally:
                # Whatever ended the stream (done, error, user stop, client gone), stop the computation
                # and wait for the worker so the next request gets the model and both cores. A remote reply's
                # reader closes its stream at the next event, which stops the server; nothing here to wait for.
                run.stop.set()
                if reply is None:
                    run.finished.wait(timeout=self.cfg.stream_timeout_s)
                log.info(
                    "text: %s prompt + %d new tokens, %s, seed %s",
                    n_prompt,
                    n_new,
                    finish,
                    params.seed,
                )

    def _produce(self, run: _Run, tokens: Iterator[int] | RemoteReply) -> None:
        """One slice of a generation, on the compute thread: tokens for up to SLICE_S, then requeue. (A remote
        reply, on its own thread, is read to the end in one go.)"""
        deadline = time.perf_counter() + SLICE_S
        try:
            while not run.stop.is_set():
                token_id = next(tokens, _DONE)
                if token_id is _DONE:
                    break
                run.pieces.put(token_id)
                if time.perf_counter() > deadline and self.worker.on_thread():
                    self.worker.requeue(self._produce, run, tokens)  # let queued jobs run first
                    return
            tokens.close()  # stopped or done: ends the engine's loop (and llama.cpp's) right here
        except BaseException as err:  # surfaced to the consumer, which re-raises it
            run.pieces.put(err)
        run.pieces.put(_DONE)
        run.finished.set()
