"""Text generation: chat and completion with a causal LM, streamed token by token.

The pipeline knows messages, prompts and limits; an *engine* knows one model runtime and deals only in
token ids. Two engines serve the same interface:

- ``LlamaCppEngine`` runs GGUF files through llama.cpp (the embedded default: ~8x faster than
  transformers on a 2-core CPU).
- ``TransformersEngine`` runs any Hugging Face model id or folder (and GGUF files, dequantised once and
  cached as safetensors); it is the path for GPUs, hub models and later fine-tuned adapters.
"""

from __future__ import annotations

import codecs
import importlib.util
import logging
import queue
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from aigc_demo.compute import LLAMA_CPP, SHARED, ComputeThread, compute_thread
from aigc_demo.config import TextConfig
from aigc_demo.device import configure_threads, usable_cores
from aigc_demo.models import resolve_model_path

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1


# ----------------------------------------------------------------------------------------------------
# Requests and results
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings. Defaults suit a small chat model: a little randomness, a mild repeat penalty."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy (deterministic whatever the seed)
    top_p: float = 0.9
    top_k: int = 50  # 0 = off
    min_p: float = 0.05  # drop tokens under 5 % of the top token's probability
    repetition_penalty: float = 1.1  # 1.0 = off; small models loop without it
    seed: int | None = None  # None = pick one at random; the one used is returned

    @classmethod
    def parse(cls, max_new_tokens_limit: int, **raw) -> GenerationParams:
        """Coerce loosely-typed values (from the UI or an API client) and check every range."""
        p = cls(
            max_new_tokens=_as_int("max_new_tokens", raw.get("max_new_tokens", cls.max_new_tokens)),
            temperature=_as_float("temperature", raw.get("temperature", cls.temperature)),
            top_p=_as_float("top_p", raw.get("top_p", cls.top_p)),
            top_k=_as_int("top_k", raw.get("top_k", cls.top_k)),
            min_p=_as_float("min_p", raw.get("min_p", cls.min_p)),
            repetition_penalty=_as_float(
                "repetition_penalty",
                raw.get("repetition_penalty", cls.repetition_penalty),
            ),
            seed=_as_seed(raw.get("seed")),
        )
        _check_range("max_new_tokens", p.max_new_tokens, 1, max_new_tokens_limit)
        _check_range("temperature", p.temperature, 0.0, 5.0)
        _check_range("top_p", p.top_p, 0.0, 1.0, low_open=True)
        _check_range("top_k", p.top_k, 0, 100_000)
        _check_range("min_p", p.min_p, 0.0, 1.0)
        _check_range("repetition_penalty", p.repetition_penalty, 0.5, 3.0)
        return p

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_seed(self) -> GenerationParams:
        """Fix a random seed if none was given, so every result can be reproduced."""
        return self if self.seed is not None else replace(self, seed=random.randint(0, MAX_SEED))


@dataclass(frozen=True)
class TextStats:
    model: str
    engine: str
    seed: int
    prompt_tokens: int
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
def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        return int(value)
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


def _as_float(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        f = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return f


def _as_seed(value) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "-1")):
        return None
    seed = _as_int("seed", value)
    if seed == -1:
        return None
    _check_range("seed", seed, 0, MAX_SEED)
    return seed


def _check_range(name: str, value, low, high, low_open: bool = False) -> None:
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


def clean_text(text, what: str, max_chars: int) -> str:
    """Reject non-strings and oversize input; drop control characters and unpaired surrogates."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, not {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"{what} is {len(text):,} characters; the limit is {max_chars:,}")
    # Unpaired surrogates (invalid Unicode from some clients) would crash the tokenizer's UTF-8 encode.
    text = text.encode("utf-8", errors="replace").decode("utf-8")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co"))


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
        if m["role"] not in ("user", "assistant", "system"):
            raise ValueError(f"history[{i}].role must be 'user', 'assistant' or 'system', not {m['role']!r}")
        content = m["content"]
        if isinstance(content, list):  # gradio 6 may send [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        messages.append(
            {
                "role": m["role"],
                "content": clean_text(content, f"history[{i}]", max_chars),
            }
        )
    return messages


# ----------------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------------
class Detokenizer(Protocol):
    """Turns a stream of token ids into text deltas, holding back incomplete characters."""

    def add(self, token_id: int) -> str: ...
    def flush(self) -> str: ...


class _Utf8Detokenizer:
    """For runtimes that give each token's raw bytes (a multi-byte character may span tokens)."""

    def __init__(self, token_bytes: Callable[[int], bytes]):
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id):
        return self._decoder.decode(self._token_bytes(token_id))

    def flush(self):
        return self._decoder.decode(b"", final=True)


class _IncrementalDetokenizer:
    """For Hugging Face tokenizers: decode a short window and emit only what is new and complete
    (the prefix-offset method of text-generation-inference; right for byte-level BPE and SentencePiece)."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids):
        return self._tok.decode(ids, skip_special_tokens=True)

    def add(self, token_id):
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self):
        before = self._decode(self._ids[self._prefix : self._read])
        return self._decode(self._ids[self._prefix :])[len(before) :]


class TextEngine(Protocol):
    """What the pipeline needs from a model runtime. Engines are not thread-safe; the pipeline locks."""

    name: str
    model_id: str
    context_length: int
    thread_name: str  # the compute thread it runs on (aigc_demo/compute.py)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str: ...
    def tokenize(self, text: str, add_special: bool) -> list[int]: ...
    def new_detokenizer(self) -> Detokenizer: ...
    def is_end_of_turn(self, token_id: int) -> bool: ...
    def generate_ids(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[int]: ...


class LlamaCppEngine:
    """GGUF through llama.cpp (llama-cpp-python). Chat template read from the GGUF itself.

    Generation always runs on llama.cpp's own thread, never on one that runs PyTorch: ggml's AMX kernels
    configure the tiles once per thread and oneDNN's bf16 kernels release them, so sharing a thread ends in
    SIGILL on AMX CPUs (aigc_demo/compute.py)."""

    name = "llama.cpp"
    thread_name = LLAMA_CPP

    def __init__(self, llama, model_id: str):
        self._llm = llama
        self.model_id = model_id
        self.context_length = llama.n_ctx()
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model_id} has no chat template in its GGUF metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab_text = llama.detokenize
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=vocab_text([llama.token_eos()], special=True).decode("utf-8", "replace"),
            bos_token=vocab_text([llama.token_bos()], special=True).decode("utf-8", "replace"),
        )
        self._eot_ids = {llama.token_eos()}
        for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            ids = llama.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                self._eot_ids.add(ids[0])

    @classmethod
    def from_config(cls, cfg: TextConfig) -> LlamaCppEngine:
        import llama_cpp

        folder, gguf = resolve_model_path(cfg.model)
        path = Path(folder) / (gguf or "")
        threads = cfg.threads or usable_cores()
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=cfg.context_length,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        return cls(llama, model_id=cfg.model)

    def render_chat(self, messages):
        return self._formatter(messages=list(messages)).prompt

    def tokenize(self, text, add_special):
        # The chat template already writes any BOS it wants; completions get the model's default.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=not add_special)

    def new_detokenizer(self):
        return _Utf8Detokenizer(lambda token_id: self._llm.detokenize([token_id]))

    def is_end_of_turn(self, token_id):
        return token_id in self._eot_ids

    def generate_ids(self, prompt_ids, params):
        return compute_thread(self.thread_name).iterate(self._generate_here(prompt_ids, params))

    def _generate_here(self, prompt_ids, params):
        self._llm.set_seed(params.seed)
        # Re-evaluate the whole prompt. llama-cpp-python's prefix reuse would evaluate only the tail, but a
        # one-token tail takes another ggml kernel whose last bits differ, and greedy text then depends on
        # the previous request (seen: "Paris, France." vs "France (The woman ...)"). Same seed, same text
        # wins over ~2.3 ms per cached prompt token.
        self._llm.reset()
        # min_p/top_k/top_p are llama.cpp's own samplers; temperature 0 switches it to greedy.
        yield from self._llm.generate(
            prompt_ids,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repetition_penalty,
        )


class TransformersEngine:
    """Any causal LM that transformers loads. A hand-written decode loop instead of `generate`:
    it yields each token as it is made (no streamer thread) and skips per-step bookkeeping we don't use,
    while computing exactly the same logits, so greedy output matches `generate` token for token."""

    name = "transformers"
    thread_name = SHARED  # one OpenMP team with the image and latent models (aigc_demo/compute.py)

    def __init__(self, model, tokenizer, model_id: str, context_length: int):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = context_length
        self.device = next(model.parameters()).device
        self._torch = torch
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self._eot_ids = set(eos) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            tid = tokenizer.convert_tokens_to_ids(marker)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                self._eot_ids.add(tid)

    @classmethod
    def from_config(cls, cfg: TextConfig) -> TransformersEngine:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from aigc_demo.device import pick_device
        from aigc_demo.pipelines.cpu_linear import prepack_linears

        configure_threads(cfg.threads)
        # fp32 on CPU even where bf16 is native: decoding is memory-bound, so bf16 is no faster there, and it
        # changes greedy tokens (measured: bench/text.py). GPUs still get half precision.
        plan = pick_device(prefer_half_on_cpu=False)
        folder, gguf = resolve_model_path(cfg.model)
        source = folder if gguf is None else str(_gguf_safetensors_cache(cfg, folder, gguf))
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=plan.dtype)
        model.to(plan.device)
        packed = prepack_linears(model)  # CPU only: oneDNN matrix-vector products, ~1.6x faster decoding
        ctx = min(
            cfg.context_length,
            getattr(model.config, "max_position_embeddings", cfg.context_length),
        )
        log.info(
            "transformers engine: %s on %s (%s), %d linears prepacked",
            cfg.model,
            plan.device,
            plan.reason,
            packed,
        )
        return cls(model, tokenizer, model_id=cfg.model, context_length=ctx)

    def render_chat(self, messages):
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.model_id} has no chat template: use Completion mode")
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def tokenize(self, text, add_special):
        return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def new_detokenizer(self):
        return _IncrementalDetokenizer(self.tokenizer)

    def is_end_of_turn(self, token_id):
        return token_id in self._eot_ids

    def generate_ids(self, prompt_ids, params):
        torch = self._torch
        from transformers import DynamicCache

        processors = _logits_processors(params)
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        ids = torch.tensor([prompt_ids], device=self.device)
        cache = DynamicCache()
        step_input = ids
        with torch.inference_mode():
            while True:
                out = self.model(
                    input_ids=step_input,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                scores = out.logits[:, -1, :].float()
                for proc in processors:
                    scores = proc(ids, scores)
                if params.greedy:
                    next_id = scores.argmax(dim=-1, keepdim=True)
                else:
                    probs = torch.softmax(scores, dim=-1).cpu()
                    next_id = torch.multinomial(probs, 1, generator=generator).to(self.device)
                ids = torch.cat([ids, next_id], dim=-1)
                step_input = next_id
                yield int(next_id)


def _logits_processors(params: GenerationParams) -> list[Callable]:
    """The same processors `generate` would build, in the same order, so results agree."""
    from transformers.generation import logits_process as lp

    procs: list[Callable] = []
    if params.repetition_penalty != 1.0:
        procs.append(lp.RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.greedy:
        return procs
    if params.temperature != 1.0:
        procs.append(lp.TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        procs.append(lp.TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        procs.append(lp.TopPLogitsWarper(params.top_p))
    if params.min_p > 0.0:
        procs.append(lp.MinPLogitsWarper(params.min_p))
    return procs


def _gguf_safetensors_cache(cfg: TextConfig, folder: str, gguf: str) -> Path:
    """Dequantise a GGUF once (10-30 s on a small CPU) and keep a safetensors copy (<1 s to load)."""
    target = cfg.cache_dir / Path(gguf).stem
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (one time)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
    model.hf_quantizer = None  # the tensors are plain floats now; let save_pretrained write them
    tmp = target.with_name(target.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a crash mid-save never leaves a half cache behind
    return target


def build_engine(cfg: TextConfig) -> TextEngine:
    engine = cfg.engine
    if engine == "auto":
        _, gguf = resolve_model_path(cfg.model)
        engine = "llama.cpp" if gguf and importlib.util.find_spec("llama_cpp") else "transformers"
    if engine == "llama.cpp":
        return LlamaCppEngine.from_config(cfg)
    if engine == "transformers":
        return TransformersEngine.from_config(cfg)
    raise ValueError(f"unknown text engine {cfg.engine!r}: use 'auto', 'llama.cpp' or 'transformers'")


# ----------------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------------
class GenerationTimeout(RuntimeError):
    pass


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading.Event, the UI's per-session stop flag."""

    def is_set(self) -> bool: ...


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


_DONE = object()


class TextPipeline:
    """Chat and completion on one resident engine, shared by every user."""

    def __init__(self, engine: TextEngine, cfg: TextConfig | None = None):
        self.engine = engine
        self.cfg = cfg or TextConfig()
        # One model, one generation at a time; the UI queue serialises too, this guards direct callers.
        self._lock = threading.Lock()
        self.worker: ComputeThread = compute_thread(engine.thread_name)

    @classmethod
    def from_config(cls, cfg: TextConfig) -> TextPipeline:
        t0 = time.perf_counter()
        pipe = cls(build_engine(cfg), cfg)
        log.info(
            "text pipeline ready (%s, %s) in %.2f s",
            cfg.model,
            pipe.engine.name,
            time.perf_counter() - t0,
        )
        return pipe

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def parse_params(self, **raw) -> GenerationParams:
        return GenerationParams.parse(self.cfg.max_new_tokens_limit, **raw)

    def chat(
        self,
        message: str,
        history=None,
        system_prompt: str | None = None,
        params: GenerationParams | None = None,
        stop: StopFlag | None = None,
    ) -> Iterator[TextUpdate]:
        """Stream the assistant's reply to `message` after `history` (oldest turns dropped if too long).

        The inputs are checked at the call (a ValueError names the problem), before any model work.
        Setting `stop` ends the stream after the current token, with a last update (finish "stopped")."""
        # 1. Check inputs before touching the model.
        params = (params or GenerationParams()).with_seed()
        message = clean_text(message, "message", self.cfg.max_prompt_chars).strip()
        if not message:
            raise ValueError("message is empty")
        messages = parse_messages(history, self.cfg.max_history_turns, self.cfg.max_prompt_chars)
        messages = [m for m in messages if m["role"] != "system"]
        system = clean_text(
            self.cfg.system_prompt if system_prompt is None else system_prompt,
            "system prompt",
            8_000,
        ).strip()
        # 2. Fit the conversation into the context window, dropping the oldest turns first.
        budget = self._prompt_budget(params)
        turns = messages + [{"role": "user", "content": message}]
        prompt_ids, warnings = self._fit_chat(system, turns, budget)
        # 3. Generate (lazily: the model starts when the caller iterates).
        return self._stream(prompt_ids, params, warnings, stop)

    def complete(
        self, prompt: str, params: GenerationParams | None = None, stop: StopFlag | None = None
    ) -> Iterator[TextUpdate]:
        """Stream a raw continuation of `prompt` (for base models and writing); inputs checked at the call."""
        params = (params or GenerationParams()).with_seed()
        prompt = clean_text(prompt, "prompt", self.cfg.max_prompt_chars)
        if not prompt.strip():
            raise ValueError("prompt is empty")
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
        self, prompt_ids: list[int], params: GenerationParams, warnings, stop: StopFlag | None = None
    ) -> Iterator[TextUpdate]:
        run = _Run()
        t_start = time.perf_counter()
        t_first = None
        n_new = 0
        detok = self.engine.new_detokenizer()
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
                prompt_tokens=len(prompt_ids),
                new_tokens=n_new,
                time_to_first_token_s=ttft,
                tokens_per_s=tps,
                finish_reason=reason,
                warnings=tuple(warnings),
            )
            return TextUpdate(text=text, stats=stats, params=params)

        with self._lock:
            # The model runs on its engine's compute thread (aigc_demo/compute.py); this one only streams text.
            self.worker.submit(self._produce, run, self.engine.generate_ids(prompt_ids, params))
            try:
                last_token = time.monotonic()
                while True:
                    if stop is not None and stop.is_set():
                        finish = "stopped"
                        break
                    try:
                        item = run.pieces.get(timeout=STOP_POLL_S)
                    except queue.Empty:
                        if time.monotonic() - last_token > self.cfg.stream_timeout_s:
                            raise GenerationTimeout(
                                f"no token for {self.cfg.stream_timeout_s:.0f} s; generation abandoned"
                            ) from None
                        continue
                    last_token = time.monotonic()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    token_id = item
                    if self.engine.is_end_of_turn(token_id):
                        finish = "stop"
                        break
                    if t_first is None:
                        t_first = time.perf_counter()
                    n_new += 1
                    text += detok.add(token_id)
                    if n_new >= params.max_new_tokens:
                        finish = "length"
                        break
                    yield update("running")
                text += detok.flush()
                yield update(finish)
            except GeneratorExit:
                finish = "stopped"
                raise
            finally:
                # Whatever ended the stream (done, error, user stop, client gone), stop the computation
                # and wait for the worker so the next request gets the model and both cores.
                run.stop.set()
                run.finished.wait(timeout=self.cfg.stream_timeout_s)
                log.info(
                    "text: %d prompt + %d new tokens, %s, seed %s",
                    len(prompt_ids),
                    n_new,
                    finish,
                    params.seed,
                )

    def _produce(self, run: _Run, tokens: Iterator[int]) -> None:
        """One slice of a generation, on the compute thread: tokens for up to SLICE_S, then requeue."""
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
