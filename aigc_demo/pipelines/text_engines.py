"""Model runtimes for the text pipeline: each knows one runtime and deals only in token ids.

- ``LlamaCppEngine`` runs GGUF files through llama.cpp (the embedded default: ~8x faster than
  transformers on a 2-core CPU).
- ``TransformersEngine`` runs any Hugging Face model id or folder (and GGUF files, dequantised once and
  cached as safetensors); it is the path for GPUs, hub models and later fine-tuned adapters.

A model served by another process (``text_remote.OpenAIEngine``) streams text instead; ``build_engine`` makes
either kind.

Engines take ``GenerationParams`` with the seed already chosen (``TextPipeline`` resolves -1 per request),
and optionally a JSON schema the output must follow (constrained decoding: llama.cpp's own grammar sampler, or
lm-format-enforcer's token masks for transformers), so a structured answer is valid by construction.
"""

from __future__ import annotations

import codecs
import functools
import importlib.util
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from aigc_demo import validation
from aigc_demo.compute import LLAMA_CPP, SHARED, compute_thread
from aigc_demo.config import TextConfig
from aigc_demo.device import configure_threads, usable_cores
from aigc_demo.models import resolve_model_path
from aigc_demo.pipelines.text_remote import OpenAIEngine, unavailable
from aigc_demo.provenance.text_watermark import GreenListBias

if TYPE_CHECKING:
    from aigc_demo.pipelines.text import GenerationParams

log = logging.getLogger(__name__)


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
    """What the pipeline needs from a model runtime. Engines are not thread-safe; the pipeline admits at most
    ``parallel`` generations at once."""

    name: str
    model_id: str
    context_length: int
    thread_name: str  # the compute thread it runs on (aigc_demo/compute.py)
    parallel: int  # replies it writes at once

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str: ...
    def tokenize(self, text: str, add_special: bool) -> list[int]: ...
    def new_detokenizer(self) -> Detokenizer: ...
    def is_end_of_turn(self, token_id: int) -> bool: ...
    def generate_ids(
        self,
        prompt_ids: list[int],
        params: GenerationParams,
        json_schema: dict | None = None,
        logprobs: TokenLogprobs | None = None,
    ) -> Iterator[int]: ...


class TokenLogprobs:
    """A logits processor that changes nothing and records, for each token the model chose, its log-probability
    under the raw distribution (before temperature, truncation or penalties): what perplexity is computed from.
    A step's logits are kept until the next step shows which token they produced, so the last token of a
    reply (usually the end of turn) is not recorded."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._previous: np.ndarray | None = None

    def __call__(self, input_ids, scores):
        ids = np.asarray(input_ids.cpu() if hasattr(input_ids, "cpu") else input_ids).reshape(-1)
        logits = np.asarray(scores.float().cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64)
        logits = logits.reshape(-1)
        if self._previous is not None:
            self.values.append(float(self._previous[int(ids[-1])]))
        top = logits.max()
        self._previous = logits - top - np.log(np.exp(logits - top).sum())
        return scores


class _Context:
    """One llama.cpp context (a ``Llama``) and what its keys and values hold: the last prompt, and the turn
    ends up to which they are reusable."""

    def __init__(self, llama):
        self.llm = llama
        self.held: tuple[list[int], list[int]] = ([], [])
        self.in_use = False
        self.last_used = 0.0


class LlamaCppEngine:
    """GGUF through llama.cpp (llama-cpp-python). Chat template read from the GGUF itself.

    Generation always runs on llama.cpp's own thread, never on one that runs PyTorch: ggml's AMX kernels
    configure the tiles once per thread and oneDNN's bf16 kernels release them, so sharing a thread ends in
    SIGILL on AMX CPUs (aigc_demo/compute.py).

    With several contexts (``more``: further ``Llama`` objects of the same file) it writes that many replies
    at once, slice by slice on the one thread: a new question starts within a slice of the replies already
    being written instead of after them. Each reply takes the free context that holds most of its prompt."""

    name = "llama.cpp"
    thread_name = LLAMA_CPP

    def __init__(self, llama, model_id: str, more: Sequence = ()):
        self._llm = llama  # tokenizer, template and vocabulary: the same in every context
        self._contexts = [_Context(c) for c in (llama, *more)]
        self._contexts_lock = threading.Lock()
        self.parallel = len(self._contexts)
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
        self.reused_tokens = 0  # of the last prompt: tokens whose keys and values a context already held

    @classmethod
    def from_config(cls, cfg: TextConfig, lora: tuple[str, Path] | None = None) -> LlamaCppEngine:
        """The configured GGUF in ``cfg.parallel`` contexts; with ``lora`` (a name and a GGUF adapter file),
        in one context, with llama.cpp adding the adapter to every layer it covers, without merging (the
        quantised weights stay as they are)."""
        import llama_cpp

        folder, gguf = resolve_model_path(cfg.model)
        path = Path(folder) / (gguf or "")
        threads = cfg.threads or usable_cores()

        def context():
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=cfg.context_length,
                n_threads=threads,
                n_threads_batch=threads,
                lora_path=None if lora is None else str(lora[1]),
                verbose=False,
            )

        count = 1 if lora is not None else validation.in_range("AIGC_TEXT_PARALLEL", cfg.parallel, 1, 16)
        contexts = [context() for _ in range(count)]
        return cls(
            contexts[0], model_id=cfg.model if lora is None else f"{cfg.model} + {lora[0]}", more=contexts[1:]
        )

    def render_chat(self, messages):
        return self._formatter(messages=list(messages)).prompt

    def tokenize(self, text, add_special):
        # The chat template already writes any BOS it wants; completions get the model's default.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=not add_special)

    def new_detokenizer(self):
        return _Utf8Detokenizer(lambda token_id: self._llm.detokenize([token_id]))

    def is_end_of_turn(self, token_id):
        return token_id in self._eot_ids

    def generate_ids(self, prompt_ids, params, json_schema=None, logprobs=None):
        grammar = _llama_grammar(json.dumps(json_schema, sort_keys=True)) if json_schema else None
        run = self._generate_here(prompt_ids, params, grammar, logprobs)
        return compute_thread(self.thread_name).iterate(run)

    def _turn_ends(self, prompt_ids: Sequence[int]) -> list[int]:
        """Where the prompt's turns end (after each end-of-turn token), short of its last token."""
        return [i + 1 for i, t in enumerate(prompt_ids[:-1]) if t in self._eot_ids]

    @staticmethod
    def _reusable(context: _Context, prompt_ids: list[int], ends: list[int]) -> int:
        """How much of the prompt the context holds: the last turn end both share."""
        held_ids, held_ends = context.held
        return max((e for e in ends if e in held_ends and held_ids[:e] == prompt_ids[:e]), default=0)

    def _take(self, prompt_ids: list[int], ends: list[int]) -> _Context:
        """The free context that holds most of the prompt (else the one idle longest), marked in use."""
        with self._contexts_lock:
            free = [c for c in self._contexts if not c.in_use]
            if not free:
                raise RuntimeError(f"all {self.parallel} llama.cpp contexts are busy")
            context = max(free, key=lambda c: (self._reusable(c, prompt_ids, ends), -c.last_used))
            context.in_use = True
            return context

    def _give_back(self, context: _Context) -> None:
        with self._contexts_lock:
            context.in_use, context.last_used = False, time.monotonic()

    def _prefill(self, context: _Context, prompt_ids: list[int], ends: list[int]) -> list[int]:
        """Evaluate the prompt turn by turn, up to its last turn end, reusing the turns the context already
        holds (the system prompt, a conversation's earlier turns); returns the rest, for ``generate``.

        Every prompt is evaluated in the same pieces whether or not it is reused, so a reply never depends on
        the previous request. (llama-cpp-python's own prefix reuse evaluates whatever tail is left: a short
        tail takes another ggml kernel whose last bits differ, and greedy text then changed with the previous
        request, e.g. "Paris, France." against "France (The woman ...)".)"""
        kept = self._reusable(context, prompt_ids, ends)
        context.held = ([], [])  # nothing is claimed while the context changes
        llm = context.llm
        llm.reset()
        llm.n_tokens = kept  # the next eval drops the context's keys and values past this
        start = kept
        for end in ends:
            if end > kept:
                llm.eval(prompt_ids[start:end])
                start = end
        context.held = (prompt_ids, ends)
        self.reused_tokens = kept
        return prompt_ids[start:]

    def _generate_here(self, prompt_ids, params, grammar=None, logprobs=None):
        prompt_ids = list(prompt_ids)
        ends = self._turn_ends(prompt_ids)
        context = self._take(prompt_ids, ends)
        try:
            context.llm.set_seed(params.seed)
            tail = self._prefill(context, prompt_ids, ends)
            # min_p/top_k/top_p are llama.cpp's own samplers; temperature 0 switches it to greedy.
            yield from context.llm.generate(
                tail,
                reset=False,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                temp=params.temperature,
                repeat_penalty=params.repetition_penalty,
                grammar=grammar,
                logits_processor=[
                    *([logprobs] if logprobs is not None else []),  # first: it must see the raw logits
                    *([GreenListBias(self._llm.n_vocab())] if params.watermark else []),
                ]
                or None,
            )
        finally:
            self._give_back(context)


class TransformersEngine:
    """Any causal LM that transformers loads. A hand-written decode loop instead of `generate`:
    it yields each token as it is made (no streamer thread) and skips per-step bookkeeping we don't use,
    while computing exactly the same logits, so greedy output matches `generate` token for token."""

    name = "transformers"
    thread_name = SHARED  # one OpenMP team with the image and latent models (aigc_demo/compute.py)
    parallel = 1

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
        source = transformers_source(cfg)
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

    def generate_ids(self, prompt_ids, params, json_schema=None, logprobs=None):
        torch = self._torch
        from transformers import DynamicCache

        processors = _logits_processors(params)
        if params.watermark:  # before the warpers, as in the paper: the bias shifts the distribution they cut
            processors.insert(
                int(params.repetition_penalty != 1.0), GreenListBias(self.model.config.vocab_size)
            )
        if json_schema:
            processors.append(self._json_mask(json_schema))
        if logprobs is not None:
            processors.insert(0, logprobs)  # first: it must see the raw logits
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        ids = torch.tensor([prompt_ids], device=self.device)
        cache = DynamicCache()
        step_input = ids
        while True:
            # Inference mode per token, not around the yield: the mode belongs to the thread, and between
            # tokens the thread runs other jobs (a fine-tune's backward pass among them).
            with torch.inference_mode():
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

    @functools.cached_property
    def _enforcer_data(self):
        """lm-format-enforcer's view of the vocabulary: each token's text, as it decodes after another token
        (so a leading space shows); built once per engine (~1 s for a 50k vocabulary)."""
        from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

        tok = self.tokenizer
        zero = tok.encode("0", add_special_tokens=False)[-1]
        special = set(tok.all_special_ids)
        regular = []
        for token_id in range(len(tok)):
            if token_id in special:
                continue
            after_zero = tok.decode([zero, token_id])[1:]
            # A piece of a multi-byte character decodes to U+FFFD alone; the enforcer cannot follow those
            # (seen: a title ending in half a character), so the constrained text is made of whole characters.
            if not after_zero or "\ufffd" in after_zero or not after_zero.replace(" ", "").isprintable():
                continue
            regular.append((token_id, after_zero, len(after_zero) > len(tok.decode([token_id]))))
        return TokenEnforcerTokenizerData(
            regular, lambda ids: tok.decode(ids).rstrip("\ufffd"), sorted(self._eot_ids), False, len(tok)
        )

    def _json_mask(self, json_schema: dict) -> Callable:
        """A logits processor that leaves only the tokens that keep the output valid under ``json_schema``."""
        from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer

        # At most one whitespace between JSON tokens: a small model would otherwise spend tokens on newlines.
        parser = JsonSchemaParser(json_schema, CharacterLevelParserConfig(max_consecutive_whitespaces=1))
        enforcer = TokenEnforcer(self._enforcer_data, parser)
        torch = self._torch

        def mask(ids, scores):
            allowed = enforcer.get_allowed_tokens(ids[0].tolist()).allowed_tokens
            keep = torch.full_like(scores, float("-inf"))
            keep[:, allowed] = 0.0
            return scores + keep

        return mask


@functools.lru_cache(maxsize=16)
def _llama_grammar(schema_json: str):
    """llama.cpp's GBNF grammar for a JSON schema (compiled once per schema)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


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


def transformers_source(cfg: TextConfig) -> str:
    """What transformers loads the configured model from: its folder or hub id, or a GGUF's safetensors copy."""
    if cfg.engine == "openai":  # fine-tuning and adapters (TextTuner) come here for the weights
        raise unavailable("fine-tuning and adapters", needs="weights")
    folder, gguf = resolve_model_path(cfg.model)
    return folder if gguf is None else str(_gguf_safetensors_cache(cfg, folder, gguf))


def _gguf_safetensors_cache(cfg: TextConfig, folder: str, gguf: str) -> Path:
    """Dequantise a GGUF once (10-30 s on a small CPU) and keep a safetensors copy (<1 s to load)."""
    target = cfg.cache_dir / Path(gguf).stem
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (one time)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
    # The tensors are plain floats now: let save_pretrained write them, and keep the copy from loading as a
    # "GGUF-quantised" model (which transformers' Trainer refuses to fine-tune).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a crash mid-save never leaves a half cache behind
    return target


def build_engine(cfg: TextConfig) -> TextEngine | OpenAIEngine:
    engine = cfg.engine
    if engine == "openai":
        return OpenAIEngine.from_config(cfg)
    if engine == "auto":
        _, gguf = resolve_model_path(cfg.model)
        engine = "llama.cpp" if gguf and importlib.util.find_spec("llama_cpp") else "transformers"
    if engine == "llama.cpp":
        return LlamaCppEngine.from_config(cfg)
    if engine == "transformers":
        return TransformersEngine.from_config(cfg)
    raise ValueError(
        f"unknown text engine {cfg.engine!r}: use 'auto', 'llama.cpp', 'transformers' or 'openai'"
    )
