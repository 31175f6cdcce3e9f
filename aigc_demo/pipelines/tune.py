"""Fine-tuning the language model in the app: LoRA adapters trained on a person's text, live, on the CPU.

``TextTuner`` keeps an fp32 copy of the text model for training (the served engine is quantised or prepacked
for inference and cannot be trained), wraps it with peft's LoRA layers for a run and unwraps it after, so one
copy serves every run. Training runs on the shared compute thread one step per job (``fit``), so pictures and
latent sliders slot in between steps, and llama.cpp keeps serving on its own thread.

A finished run is an adapter folder (``AdapterShelf``): peft's format (``adapter_model.safetensors`` +
``adapter_config.json``), a GGUF adapter llama.cpp loads when the base is a GGUF, and a card with the data's
hash, the settings, the losses and the time. ``serving(name)`` gives the Text tab a pipeline with the adapter:
llama.cpp with the GGUF adapter, or transformers with the adapter merged into a copy of the weights.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aigc_demo import validation
from aigc_demo.compute import SHARED, StopFlag, compute_thread, on_worker
from aigc_demo.config import TuneConfig
from aigc_demo.pipelines.text import TextPipeline
from aigc_demo.pipelines.tune_data import (
    IGNORE,
    PRESETS,
    Copied,
    Example,
    TextDataset,
    build_dataset,
    longest_copied_run,
    read_upload,
)
from aigc_demo.schema import Config, Schema, param
from aigc_demo.training.fine_tune import FitProgress, FitSettings, fit

log = logging.getLogger(__name__)

# Every projection of every block: on a 135M model, queries and values alone moved the held-out perplexity of
# a Shakespeare page 15-19% in three epochs, all seven 24% (bench/tune.py), for ~1.4x the time per token.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_FILE = "adapter_model.safetensors"
GGUF_FILE = "adapter.gguf"
CARD_FILE = "README.md"
RECORD_FILE = "tune.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True)
class TextTuneParams:
    """A text fine-tune's settings; defaults train ~4,000 tokens for 3 epochs in about a minute on 2 cores."""

    preset: str = param("style", label="tune_preset", choices=PRESETS, choice_labels={"style": "tune_preset_style", "format": "tune_preset_format"})  # fmt: skip
    epochs: int = param(3, label="tune_epochs", low=1, high=Config("max_epochs"), step=1)
    learning_rate: float = param(2e-3, label="tune_learning_rate", low=1e-5, high=1e-2)
    rank: int = param(8, label="tune_rank", info="tune_rank_info", low=1, high=64, step=1)
    block_tokens: int = param(256, label="tune_block_tokens", low=32, high=1024, step=32)
    batch_size: int = param(2, label="tune_batch_size", low=1, high=16, step=1)
    held_out: float = param(0.1, label="tune_held_out", low=0.05, high=0.5, step=0.05)
    seed: int = param(0, label="seed", seed=True)


@dataclass(frozen=True)
class Preparation:
    """What a run will train on, shown before it starts."""

    dataset: TextDataset
    params: TextTuneParams
    tokens_per_s: float  # training throughput on this machine (tokens read, measured)
    steps: int

    @property
    def eta_s(self) -> float:
        return self.dataset.train_read_tokens * self.params.epochs / self.tokens_per_s

    def summary(self) -> str:
        d = self.dataset
        lines = [
            f"**{d.train_tokens:,} training tokens** in {len(d.train)} block(s), {d.held_out_tokens:,} held out "
            f"in {len(d.held_out)}; {self.params.epochs} epoch(s), {self.steps} steps; "
            f"about **{self.eta_s:.0f} s** on this machine ({self.tokens_per_s:.0f} tokens/s)."
        ]
        lines += [f"⚠️ {w}" for w in d.warnings]
        return "\n\n".join(lines)


@dataclass(frozen=True)
class Adapter:
    name: str
    folder: Path
    record: dict  # tune.json: settings, data hash, losses, time

    @property
    def gguf(self) -> Path | None:
        path = self.folder / GGUF_FILE
        return path if path.is_file() else None


@dataclass(frozen=True)
class TuneResult:
    adapter: Adapter | None  # None when stopped before the first step
    progress: FitProgress
    base_perplexity: float
    tuned_perplexity: float
    seconds: float

    @property
    def perplexity_change(self) -> float:
        return self.tuned_perplexity / self.base_perplexity - 1.0


@dataclass(frozen=True)
class Reply:
    text: str
    copied: Copied | None  # the longest run of training tokens it repeats (None: training text unknown)


@dataclass(frozen=True)
class Comparison:
    prompt: str
    seed: int
    base: Reply
    tuned: Reply


class AdapterShelf:
    """The adapters folder: one sub-folder per adapter, listed newest first, pruned to a size cap."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        folders = [f for f in self.root.iterdir() if _NAME.fullmatch(f.name) and (f / RECORD_FILE).is_file()]
        return [f.name for f in sorted(folders, key=lambda f: f.stat().st_mtime, reverse=True)]

    def get(self, name: str) -> Adapter:
        name = check_name(name)
        folder = self.root / name
        if not (folder / RECORD_FILE).is_file():
            known = ", ".join(self.names()) or "none yet"
            raise ValueError(f"no adapter named {name!r} (adapters: {known})")
        return Adapter(name, folder, json.loads((folder / RECORD_FILE).read_text(encoding="utf-8")))

    def name_for(self, name, default_prefix: str) -> str:
        """A checked, free name for a new adapter: ``name``, or the prefix and the time when blank; a taken name
        is refused before any work."""
        blank = name is None or (isinstance(name, str) and not name.strip())
        name = f"{default_prefix}-{time.strftime('%Y%m%d-%H%M%S')}" if blank else check_name(name)
        self.new_folder(name)
        return name

    def listed(self, keys: tuple[str, ...]) -> list[dict]:
        """``keys`` of every adapter's record, newest first (the facts its card states)."""
        listed = []
        for name in self.names():
            try:
                record = self.get(name).record
            except (OSError, ValueError):  # removed meanwhile, or a damaged record: not listed
                continue
            listed.append({k: record.get(k) for k in keys})
        return listed

    def new_folder(self, name: str) -> Path:
        folder = self.root / check_name(name)
        if folder.exists():
            raise ValueError(f"an adapter named {name!r} exists: choose another name")
        return folder

    def prune(self, keep: str) -> list[str]:
        """Remove the oldest adapters (never ``keep``) until the folder fits its cap."""
        removed = []
        names = self.names()
        sizes = {n: sum(p.stat().st_size for p in (self.root / n).rglob("*") if p.is_file()) for n in names}
        total = sum(sizes.values())
        for name in reversed(names):
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            shutil.rmtree(self.root / name, ignore_errors=True)
            total -= sizes[name]
            removed.append(name)
        return removed


def check_name(name: str) -> str:
    name = validation.text("adapter name", name, 40, required=True).strip()
    if not _NAME.fullmatch(name):
        raise ValueError(f"adapter name {name!r}: use letters, digits, '-', '_' or '.', at most 40")
    return name


class TextTuner:
    """LoRA fine-tuning of the text pipeline's model, and the tuned models served beside it."""

    def __init__(self, text: TextPipeline, cfg: TuneConfig | None = None):
        self.text = text
        self.cfg = cfg or TuneConfig()
        self.schema: Schema[TextTuneParams] = Schema(TextTuneParams, self.cfg)
        self.shelf = AdapterShelf(self.cfg.adapters_dir, int(self.cfg.max_adapters_mb * 1e6))
        self.worker = compute_thread(SHARED)
        self._model = None  # fp32 trainable copy, loaded on first use
        self._tokenizer = None
        self._tokens_per_s: float | None = None  # training throughput, measured on this machine
        self._serving: OrderedDict[str, TextPipeline] = OrderedDict()
        self._serving_lock = threading.Lock()
        # Training tokens of the adapters made since start, for the memorisation meter (never written to disk).
        self._sources: dict[str, np.ndarray] = {}
        self._run_lock = threading.Lock()  # one training run at a time, whoever calls

    @classmethod
    def from_config(cls, cfg: TuneConfig, text: TextPipeline) -> TextTuner:
        return cls(text, cfg)

    def warm_up(self) -> None:
        """Nothing: the trainable copy loads on the first run, so serving starts at full speed."""

    # -- the trainable copy ------------------------------------------------------------------------------
    def _load_base(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from aigc_demo.device import pick_device
            from aigc_demo.pipelines.text_engines import transformers_source

            t0 = time.perf_counter()
            source = transformers_source(self.text.cfg)
            self._tokenizer = AutoTokenizer.from_pretrained(source)
            # fp32 weights (LoRA's small updates need them), on CUDA where there is one.
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
            self._model = model.to(pick_device(prefer_half_on_cpu=False).device).eval()
            log.info(
                "tune: trainable copy of %s loaded in %.1f s", self.text.model_id, time.perf_counter() - t0
            )
        return self._model, self._tokenizer

    def _tokenize(self, text: str) -> list[int]:
        return self._tokenizer(text, add_special_tokens=False)["input_ids"]

    def _render(self, messages: list[dict], generation_prompt: bool) -> list[int]:
        if not getattr(self._tokenizer, "chat_template", None):
            raise ValueError(f"{self.text.model_id} has no chat template: use the style preset")
        rendered = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        return self._tokenize(rendered)

    # -- data --------------------------------------------------------------------------------------------
    def parse_params(self, values=None, **more) -> TextTuneParams:
        return self.schema.parse(values, **more)

    def read_text(self, text: str | None, file: str | None) -> str:
        """The training text: an uploaded file wins over the text box."""
        if file:
            return read_upload(file, int(self.cfg.max_upload_mb * 1e6))
        if text is not None and not isinstance(text, str):
            raise ValueError("text must be a string")
        text = text or ""
        if len(text) > self.cfg.max_text_chars:
            raise ValueError(
                f"the text is {len(text):,} characters; the limit is {self.cfg.max_text_chars:,}"
            )
        return text

    @on_worker
    def prepare(self, text: str | None, file: str | None = None, params=None) -> Preparation:
        """Check and tokenise the data, and estimate the run's time from this machine's measured speed."""
        params = self.parse_params(params)
        text = self.read_text(text, file)
        self._load_base()
        dataset = build_dataset(
            text,
            params.preset,
            self._tokenize,
            self._render,
            params.block_tokens,
            params.held_out,
            self.cfg.max_train_tokens,
        )
        steps = math.ceil(len(dataset.train) / params.batch_size) * params.epochs
        return Preparation(dataset, params, self._speed(dataset, params), steps)

    def _speed(self, dataset: TextDataset, params: TextTuneParams) -> float:
        """Training tokens per second: the last run's, or a forward pass of one batch timed now (a training
        step costs about three forward passes)."""
        if self._tokens_per_s is not None:
            return self._tokens_per_s
        import torch

        batch = list(dataset.train[: params.batch_size])
        with torch.inference_mode():
            self._loss(batch)  # the first call sets up kernels
            t0 = time.perf_counter()
            self._loss(batch)
            seconds = time.perf_counter() - t0
        return sum(len(e.ids) for e in batch) / (3 * seconds)

    def _loss(self, batch: list[Example]):
        """Mean next-token loss over the batch's trained tokens, and how many there were."""
        import torch

        width = max(len(e.ids) for e in batch)
        pad = self._tokenizer.pad_token_id
        pad = self._tokenizer.eos_token_id if pad is None else pad
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
            mask[row, : len(e.ids)] = 1
        device = self._model.device
        out = self._model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        return out.loss, int((labels[:, 1:] != IGNORE).sum())

    def _held_out_loss(self, dataset: TextDataset, batch_size: int) -> float:
        """Token-weighted mean loss of the held-out share, without dropout."""
        training = self._model.training
        self._model.eval()
        try:
            total, count = 0.0, 0
            for k in range(0, len(dataset.held_out), batch_size):
                loss, tokens = self._loss(list(dataset.held_out[k : k + batch_size]))
                if tokens:
                    total += float(loss) * tokens
                    count += tokens
            return total / max(count, 1)
        finally:
            self._model.train(training)

    # -- training ----------------------------------------------------------------------------------------
    def tune(
        self,
        text: str | None,
        file: str | None = None,
        name: str = "",
        params=None,
        stop: StopFlag | None = None,
    ) -> Iterator[Preparation | FitProgress | TuneResult]:
        """Prepare, train and save an adapter: yields the preparation, then progress after every step, then
        the result. ``stop`` ends training after the current step; the best state so far is saved."""
        params = self.parse_params(params)
        name = self.shelf.name_for(name, params.preset)
        if not self._run_lock.acquire(blocking=False):
            raise ValueError("another fine-tune is running; try again when it ends")
        try:
            preparation = self.prepare(text, file, params)
            yield preparation
            yield from self._train(preparation, name, stop)
        finally:
            self._run_lock.release()

    @on_worker
    def _train(self, preparation: Preparation, name: str, stop: StopFlag | None):
        import torch
        from peft import LoraConfig, get_peft_model

        params, dataset = preparation.params, preparation.dataset
        torch.manual_seed(params.seed)
        base, _ = self._load_base()
        lora = LoraConfig(
            r=params.rank,
            lora_alpha=2 * params.rank,
            lora_dropout=0.05,
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora)
        self._model = model
        t0 = time.perf_counter()
        progress = None
        try:
            model.train()
            trainable = [p for p in model.parameters() if p.requires_grad]
            settings = FitSettings(epochs=params.epochs, learning_rate=params.learning_rate)
            for progress in fit(
                trainable,
                lambda epoch: dataset.batches(params.batch_size, epoch, params.seed),
                lambda batch: (*self._loss(batch), sum(len(e.ids) for e in batch)),  # speed counts all read
                lambda: self._held_out_loss(dataset, params.batch_size),
                settings,
                stop,
                wait_while=self._serving_busy,
                serve_waiting=self._serve_reply_slice,
            ):
                yield progress
            model.eval()
            with torch.no_grad():
                tuned_loss = self._held_out_loss(dataset, params.batch_size)
            if progress.step > 0 and progress.elapsed_s > 0:
                self._tokens_per_s = progress.tokens_per_s
            base_loss = progress.held_out_curve[0][1]
            adapter = None
            if progress.best_step > 0:  # else the best state is the untrained one: nothing worth keeping
                adapter = self._save(model, name, preparation, progress, base_loss, tuned_loss)
                self._sources[name] = dataset.source_ids
            yield TuneResult(
                adapter, progress, math.exp(base_loss), math.exp(tuned_loss), time.perf_counter() - t0
            )
        finally:
            self._model = model.unload()  # the plain model again, ready for the next run
            self._model.eval()

    def _save(
        self, model, name, preparation: Preparation, progress: FitProgress, base_loss, tuned_loss
    ) -> Adapter:

        folder = self.shelf.new_folder(name)
        partial = folder.with_name(f".partial-{name}")  # hidden: never a valid adapter name
        shutil.rmtree(partial, ignore_errors=True)
        try:
            return self._write(model, name, preparation, progress, base_loss, tuned_loss, partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _write(self, model, name, preparation, progress, base_loss, tuned_loss, partial: Path, folder: Path):
        from aigc_demo.training.common import machine_class

        model.save_pretrained(partial, safe_serialization=True)
        config_path = partial / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = self.text.model_id  # not the local cache folder it trained from
        config_path.write_text(json.dumps(config, indent=2))
        try:
            gguf = self._export_gguf(model, partial / GGUF_FILE, name)
        except Exception:  # the peft adapter is still good; the Text tab then serves it merged
            log.exception("tune: the llama.cpp adapter could not be written")
            gguf = None
        d, p = preparation.dataset, preparation.params
        record = {
            "name": name,
            "base_model": self.text.model_id,
            "preset": p.preset,
            "data_sha256": d.sha256,
            "data_characters": d.characters,
            "train_tokens": d.train_tokens,
            "held_out_tokens": d.held_out_tokens,
            "settings": {**asdict(p), "target_modules": list(TARGET_MODULES), "lora_alpha": 2 * p.rank},
            "steps": progress.step,
            "finish": progress.finish,
            "best_step": progress.best_step,
            "held_out_loss_before": round(base_loss, 4),
            "held_out_loss_after": round(tuned_loss, 4),
            "perplexity_before": round(math.exp(base_loss), 3),
            "perplexity_after": round(math.exp(tuned_loss), 3),
            "train_seconds": round(progress.elapsed_s, 1),
            "tokens_per_s": round(progress.tokens_per_s, 1),
            "train_curve": progress.train_curve,
            "held_out_curve": progress.held_out_curve,
            "gguf_adapter": gguf is not None,
            "machine": machine_class(),
            "date": datetime.date.today().isoformat(),
        }
        (partial / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        (partial / CARD_FILE).write_text(adapter_card(record), encoding="utf-8")
        partial.rename(folder)
        removed = self.shelf.prune(keep=name)
        if removed:
            log.info("tune: adapters folder over its cap; removed %s", ", ".join(removed))
        with self._serving_lock:  # a served copy of an adapter by this name (since pruned) is stale
            for gone in (name, *removed):
                self._serving.pop(gone, None)
                if gone != name:
                    self._sources.pop(gone, None)
        return Adapter(name, folder, record)

    def _export_gguf(self, model, path: Path, name: str) -> Path | None:
        """The adapter for llama.cpp, when the served model is a Llama-family GGUF."""
        from aigc_demo.models import resolve_model_path
        from aigc_demo.models.gguf_lora import write_gguf_lora

        _, gguf = resolve_model_path(self.text.cfg.model)
        config = model.base_model.model.config
        if gguf is None or config.model_type != "llama":
            return None
        from peft import get_peft_model_state_dict

        state = {k: v.detach().float().numpy() for k, v in get_peft_model_state_dict(model).items()}
        return write_gguf_lora(
            state,
            alpha=model.peft_config["default"].lora_alpha,
            heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            path=path,
            name=name,
        )

    def _serving_busy(self) -> bool:
        """A chat reply is being written by the base or a tuned model: training waits, so replies keep their
        speed (llama.cpp and a training step would share the two cores)."""
        # A remote engine's replies use no cores here.
        return any(pipe.busy and not pipe.remote for pipe in [self.text, *list(self._serving.values())])

    def _serve_reply_slice(self) -> bool:
        """While training waits: a slice of a reply queued on this compute thread (a transformers engine's),
        run inside the training job; llama.cpp's replies run on their own thread meanwhile."""
        return self.worker.run_waiting(TextPipeline._produce)

    # -- using an adapter --------------------------------------------------------------------------------
    def serving(self, name: str) -> TextPipeline:
        """A text pipeline with adapter ``name``, built on first use; the last few stay resident."""
        adapter = self.shelf.get(name)
        name = adapter.name
        if adapter.record.get("base_model") != self.text.model_id:
            raise ValueError(
                f"adapter {name!r} was trained on {adapter.record.get('base_model')}, not on the model served "
                f"now ({self.text.model_id})"
            )
        with self._serving_lock:
            if name in self._serving:
                self._serving.move_to_end(name)
                return self._serving[name]
            pipe = self._build_serving(adapter)
            self._serving[name] = pipe
            while len(self._serving) > self.cfg.resident_adapters:
                self._serving.popitem(last=False)
            return pipe

    def _build_serving(self, adapter: Adapter) -> TextPipeline:
        from aigc_demo.pipelines.text_engines import LlamaCppEngine

        if self.text.engine.name == "llama.cpp" and adapter.gguf is not None:
            engine = compute_thread(self.text.engine.thread_name).run(
                LlamaCppEngine.from_config, self.text.cfg, (adapter.name, adapter.gguf)
            )
        else:
            engine = self.worker.run(self._merged_engine, adapter)
        return TextPipeline(engine, self.text.cfg)

    def _merged_engine(self, adapter: Adapter):
        """transformers with the adapter merged into a fresh copy of the base weights (prepacked for decoding);
        a fresh load, not the trainable copy, which may be carrying another run's LoRA layers."""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from aigc_demo.pipelines.cpu_linear import prepack_linears
        from aigc_demo.pipelines.text_engines import TransformersEngine, transformers_source

        _, tokenizer = self._load_base()
        base = AutoModelForCausalLM.from_pretrained(transformers_source(self.text.cfg), dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, adapter.folder).merge_and_unload().eval()
        merged.to(self._model.device)
        prepack_linears(merged)  # CPU only
        return TransformersEngine(
            merged, tokenizer, f"{self.text.model_id} + {adapter.name}", self.text.engine.context_length
        )

    def compare(
        self, name: str, prompt: str, seed: int = 0, max_new_tokens: int = 96, temperature: float = 0.7
    ) -> Comparison:
        """Base and tuned replies to ``prompt`` with the same settings and seed, each with the longest run of
        tokens it copies from the adapter's training text (known for adapters made since the app started)."""
        tuned_pipe = self.serving(name)
        params = self.text.parse_params(
            {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": validation.seed(seed)}
        )
        replies = []
        for pipe in (self.text, tuned_pipe):
            last = None
            for last in pipe.chat(prompt, params=params):
                pass
            replies.append(last.text)
        base, tuned = (Reply(r, self.copied(r, name)) for r in replies)
        return Comparison(prompt, params.seed, base, tuned)

    def copied(self, reply: str, name: str) -> Copied | None:
        """The memorisation meter for a reply of adapter ``name``; None when its training text is unknown."""
        source = self._sources.get(name)
        if source is None:
            return None
        self._load_base()
        return longest_copied_run(self._tokenize(reply), source, self._tokenizer.decode)


def adapter_card(record: dict) -> str:
    """The model card of an adapter: what it was trained on (a hash), how, and what it measured."""
    s = record["settings"]
    return f"""---
base_model: {record["base_model"]}
library_name: peft
tags: [lora, aigc-studio]
---
# {record["name"]}

A LoRA adapter for `{record["base_model"]}` made in AIGC Studio's Tune tab ({record["preset"]} preset).

| | |
|---|---|
| training data | {record["train_tokens"]:,} tokens ({record["data_characters"]:,} characters, SHA-256 `{record["data_sha256"][:16]}…`); {record["held_out_tokens"]:,} held out |
| settings | rank {s["rank"]}, alpha {s["lora_alpha"]}, on {", ".join(s["target_modules"])}; {s["epochs"]} epoch(s), learning rate {s["learning_rate"]:g}, blocks of {s["block_tokens"]} tokens, batch {s["batch_size"]}, seed {s["seed"]} |
| run | {record["steps"]} steps ({record["finish"]}), best at step {record["best_step"]}, {record["train_seconds"]} s at {record["tokens_per_s"]} tokens/s on a {record["machine"]}, {record["date"]} |
| held-out perplexity | {record["perplexity_before"]} before, {record["perplexity_after"]} after |

Files: `adapter_model.safetensors` + `adapter_config.json` (peft: `PeftModel.from_pretrained(base, folder)`)
{"and `adapter.gguf` (llama.cpp: `Llama(model_path=base_gguf, lora_path='adapter.gguf')`)." if record["gguf_adapter"] else "."}
The training text itself is not kept: only its hash.
"""
