"""The Tune tab: fine-tune the language model on pasted text with LoRA, watch the loss, compare base and tuned.
Layout and wiring only; the data, the training and the adapters are ``pipelines/tune.py``."""

from __future__ import annotations

import shutil
import threading

import gradio as gr
from gradio.data_classes import FileData

from aigc_demo.data.tune_examples import format_example, style_example
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.tune import Adapter, Comparison, Preparation, TextTuner, TuneResult
from aigc_demo.registry import LoadFailure
from aigc_demo.training.fine_tune import FitProgress
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import HEAVY, failure_notice, received_file, refresh_button
from aigc_demo.ui.strings import t

TUNE = "tune"  # one training run at a time, queued, beside (not inside) the heavy group
SETTINGS = ("epochs", "learning_rate", "rank", "block_tokens", "batch_size", "held_out", "seed")
COMPARE_EXAMPLE = "Write a few lines about a cold night on watch."
CURVE_COLOURS = {"training": "#f97316", "held-out": "#2563eb"}


def loss_points(progress: FitProgress, evaluated: str = "held-out"):
    """The plot's rows: the training loss, and the evaluated loss under the label ``evaluated``."""
    import pandas as pd

    rows = [(s, 0, v, "training") for s, v in progress.train_curve]
    rows += [(s, 1, v, evaluated) for s, v in progress.held_out_curve]
    # In step order, so each update only appends rows: the page receives a streamed plot as changes to the
    # previous value, and rows inserted in the middle were lost (a single held-out line was drawn).
    rows.sort()
    return pd.DataFrame([(s, v, c) for s, _, v, c in rows], columns=["step", "loss", "curve"])


def progress_line(p: FitProgress) -> str:
    done = round(20 * p.step / max(p.total_steps, 1))
    held = p.held_out_curve[-1][1]
    eta = "" if p.step == 0 else f" · about {p.eta_s:.0f} s left"
    return (
        f"`{'█' * done}{'░' * (20 - done)}` step {p.step}/{p.total_steps} · epoch {p.epoch:.1f} · "
        f"loss {p.train_loss:.3f} · held-out {held:.3f} · {p.elapsed_s:.0f} s{eta}"
    )


def result_text(r: TuneResult) -> str:
    p = r.progress
    ended = {"done": "finished", "early stop": "stopped early (held-out loss stopped improving)"}
    ended = ended.get(p.finish, "stopped by you")
    if r.adapter is None and p.step == 0:
        return f"Stopped before the first step: no adapter saved. ({r.seconds:.0f} s)"
    if r.adapter is None:
        return (
            f"The held-out loss never went below where it started ({p.step} steps): no adapter saved. More "
            "text, another learning rate or more epochs may help."
        )
    return (
        f"**{r.adapter.name}**: {ended} after {p.step} steps in {p.elapsed_s:.0f} s "
        f"({p.tokens_per_s:.0f} tokens/s); kept the best state (step {p.best_step}).\n\n"
        f"Held-out perplexity **{r.base_perplexity:.1f} → {r.tuned_perplexity:.1f}** "
        f"({100 * r.perplexity_change:+.0f}%). Pick it in the Text tab's Adapter menu, or compare below."
    )


def copied_text(label: str, copied) -> str:
    if copied is None:
        return f"{label}: the training text of this adapter is not in memory (made before the app restarted)."
    if copied.tokens == 0:
        return f"{label}: copies nothing from the training text."
    return f"{label}: longest run copied from the training text **{copied.tokens} tokens**: “{copied.text.strip()}”"


def adapter_files(adapter: Adapter) -> list[str]:
    """A zip of the adapter folder (weights, card) and the card, staged where Gradio serves files."""
    folder = fresh_output_dir("adapter-")
    archive = shutil.make_archive(str(folder / adapter.name), "zip", adapter.folder)
    card = folder / f"{adapter.name}-README.md"
    shutil.copyfile(adapter.folder / "README.md", card)
    return [archive, str(card)]


class TuneTab:
    def __init__(self, tuner: TextTuner):
        self.tuner = tuner
        self._stops = SessionStops(threading.Event)
        self._build()
        self._wire()

    def _build(self) -> None:
        schema = self.tuner.schema
        gr.Markdown(t("tune_intro"))
        with gr.Row():
            with gr.Column(scale=2):
                self.text = gr.Textbox(
                    lines=10, max_lines=16, label=t("tune_text"), max_length=self.tuner.cfg.max_text_chars,
                    elem_id="tune-text",
                )  # fmt: skip
                self.file = gr.File(
                    label=t("tune_file"), file_types=[".txt", ".md", ".jsonl"], type="filepath", height=90,
                    elem_id="tune-file",
                )  # fmt: skip
                with gr.Row():
                    gr.Markdown(t("tune_examples"))
                    self.style_example = gr.Button(
                        "Hamlet, Act I (style)", size="sm", visible=style_example() is not None,
                        elem_id="tune-example-style",
                    )  # fmt: skip
                    self.format_example = gr.Button(
                        "Pirate answers (format)", size="sm", elem_id="tune-example-format"
                    )
                self.name = gr.Textbox(label=t("tune_name"), max_length=40, elem_id="tune-name")
                self.controls = Controls.build(schema, ["preset"], preset={"elem_id": "tune-preset"})
                with gr.Accordion(t("tune_settings"), open=False):
                    with gr.Row():
                        self.controls.update(Controls.build(schema, SETTINGS[:3]))
                    with gr.Row():
                        self.controls.update(Controls.build(schema, SETTINGS[3:]))
                with gr.Row():
                    self.check = gr.Button(t("tune_check"), elem_id="tune-check")
                    self.train = gr.Button(t("tune_train"), variant="primary", elem_id="tune-train")
                    self.stop = gr.Button(t("tune_stop"), variant="stop", elem_id="tune-stop")
            with gr.Column(scale=3):
                self.progress = gr.Markdown(elem_id="tune-progress")
                self.plot = gr.LinePlot(
                    x="step", y="loss", color="curve", label=t("tune_loss"), height=280, elem_id="tune-loss",
                    color_map=CURVE_COLOURS,  # both series from the first update (the first has held-out only)
                )  # fmt: skip
                self.result = gr.Markdown(elem_id="tune-result")
                self.files = gr.File(
                    label=t("tune_files"), file_count="multiple", interactive=False, height=90,
                    elem_id="tune-files",
                )  # fmt: skip
        gr.Markdown(f"### {t('tune_compare')}")
        with gr.Row():
            names = self.tuner.shelf.names()
            self.adapter = gr.Dropdown(
                names, value=names[0] if names else None, label=t("tune_adapters"), scale=2,
                elem_id="tune-adapter",
            )  # fmt: skip
            self.refresh = refresh_button("tune-adapter-refresh")
            self.prompt = gr.Textbox(
                COMPARE_EXAMPLE, label=t("tune_compare_prompt"), scale=4, elem_id="tune-compare-prompt"
            )
            self.seed = gr.Number(0, precision=0, label=t("seed"), scale=1, minimum=-1)
            self.compare = gr.Button(t("tune_compare_run"), scale=1, elem_id="tune-compare")
        with gr.Row():
            self.base_reply = gr.Textbox(label=t("tune_base_reply"), lines=6, elem_id="tune-base-reply")
            self.tuned_reply = gr.Textbox(label=t("tune_tuned_reply"), lines=6, elem_id="tune-tuned-reply")
        self.meter = gr.Markdown(elem_id="tune-meter")

    def _wire(self) -> None:
        ui = {"api_visibility": "undocumented"}
        c = self.controls
        inputs = {self.text, self.file, self.name, *c.components}
        # Checking data is short and runs beside a training run (between its steps), not queued behind it.
        self.check.click(self.check_data, inputs, [self.progress], **ui)
        self.train.click(
            self.run,
            inputs,
            [self.progress, self.plot, self.result, self.files, self.adapter],
            concurrency_id=TUNE,
            concurrency_limit=1,
            **ui,
        )
        self.stop.click(self.stop_run, None, None, queue=False, api_name="tune_stop")
        self.style_example.click(
            lambda: (style_example(), "style", None), None, [self.text, c["preset"], self.file], **ui
        )
        self.format_example.click(
            lambda: (format_example(), "format", None), None, [self.text, c["preset"], self.file], **ui
        )
        self.refresh.click(lambda: gr.Dropdown(choices=self.tuner.shelf.names()), None, [self.adapter], **ui)
        self.compare.click(
            self.compare_ui,
            [self.adapter, self.prompt, self.seed],
            [self.base_reply, self.tuned_reply, self.meter, self.seed],
            concurrency_id=HEAVY,
            **ui,
        )
        data = [arg("text", str, ""), arg("file", FileData | None, None)]
        api(
            self.api_check,
            api_name="tune_text_check",
            schema=self.tuner.schema,
            head=data,
            returns=dict,
        )
        api(
            self.api_tune,
            api_name="tune_text",
            schema=self.tuner.schema,
            head=[*data, arg("name", str, "")],
            returns=dict,
            concurrency_id=TUNE,
            concurrency_limit=1,
        )
        api(
            self.api_compare,
            api_name="tune_compare",
            head=[
                arg("adapter", str), arg("prompt", str, COMPARE_EXAMPLE), arg("seed", int, 0),
                arg("max_new_tokens", int, 96), arg("temperature", float, 0.7),
            ],
            returns=dict,
            concurrency_id=HEAVY,
        )  # fmt: skip
        api(self.api_adapters, api_name="tune_adapters", returns=list[dict], queue=False)

    # -- handlers -----------------------------------------------------------------------------------------
    def _params(self, data: dict) -> dict:
        return self.controls.read(data)

    @user_errors
    def check_data(self, data: dict) -> str:
        return self.tuner.prepare(data[self.text], data[self.file], self._params(data)).summary()

    @user_errors_stream
    def run(self, data: dict, request: gr.Request = None):
        stop = self._stops.arm(request)
        events = self.tuner.tune(data[self.text], data[self.file], data[self.name], self._params(data), stop)
        for event in events:
            if isinstance(event, Preparation):
                yield {self.progress: event.summary(), self.result: "", self.files: None}
            elif isinstance(event, FitProgress):
                update = {self.progress: progress_line(event)}
                if event.train_curve:  # the plot keeps the series of its first value: start with both
                    update[self.plot] = loss_points(event)
                yield update
            else:
                update = {self.progress: progress_line(event.progress), self.result: result_text(event)}
                if event.adapter is not None:
                    update[self.files] = adapter_files(event.adapter)
                    update[self.adapter] = gr.Dropdown(
                        choices=self.tuner.shelf.names(), value=event.adapter.name
                    )
                yield update

    def stop_run(self, request: gr.Request = None) -> None:
        """Ask this session's fine-tune to end after the current step; the best state so far is saved."""
        self._stops.stop(request)

    def _compare(self, adapter, prompt, seed, max_new_tokens=96, temperature=0.7) -> Comparison:
        if not adapter:
            raise ValueError("no adapter chosen: train one first (or pick one)")
        return self.tuner.compare(adapter, prompt, 0 if seed is None else seed, max_new_tokens, temperature)

    @user_errors
    def compare_ui(self, adapter, prompt, seed):
        c = self._compare(adapter, prompt, seed)
        meter = "\n\n".join([copied_text(t_, r.copied) for t_, r in (("Base", c.base), ("Tuned", c.tuned))])
        return c.base.text, c.tuned.text, meter + f"\n\nSeed {c.seed} for both.", c.seed

    # -- API ------------------------------------------------------------------------------------------------
    @staticmethod
    def _path(file) -> str | None:
        return received_file("file", file)

    @user_errors
    def api_check(self, text="", file=None, request: gr.Request = None, **params):
        """Check training data without training: tokens, blocks, the held-out share and the expected time on
        this machine. ``file`` (.txt, .md, .jsonl) replaces ``text``; preset "style" takes raw text, "format"
        chat pairs, one {"messages": [...]} per line."""
        prep = self.tuner.prepare(text, self._path(file), params)
        d = prep.dataset
        return {
            "train_tokens": d.train_tokens, "held_out_tokens": d.held_out_tokens, "train_blocks": len(d.train),
            "held_out_blocks": len(d.held_out), "steps": prep.steps, "eta_s": round(prep.eta_s, 1),
            "tokens_per_s": round(prep.tokens_per_s, 1), "warnings": list(d.warnings),
        }  # fmt: skip

    @user_errors_stream
    def api_tune(self, text="", file=None, name="", request: gr.Request = None, **params):
        """Train a LoRA adapter on ``text`` (or ``file``). Streams {"step", "total_steps", "train_loss",
        "held_out_loss", "elapsed_s", "eta_s"} after each step, then {"adapter", "perplexity_before",
        "perplexity_after", "finish", ...}. /tune_stop ends it after the current step and keeps the best state."""
        stop = self._stops.arm(request)
        warnings = []
        for event in self.tuner.tune(text, self._path(file), name, params, stop):
            if isinstance(event, Preparation):
                warnings = list(event.dataset.warnings)
            elif isinstance(event, FitProgress):
                yield {
                    "step": event.step, "total_steps": event.total_steps, "train_loss": event.train_loss,
                    "held_out_loss": event.held_out_curve[-1][1], "elapsed_s": round(event.elapsed_s, 2),
                    "eta_s": None if event.step == 0 else round(event.eta_s, 1),
                }  # fmt: skip
            elif isinstance(event, TuneResult):
                yield {
                    "adapter": None if event.adapter is None else event.adapter.name,
                    "finish": event.progress.finish, "steps": event.progress.step,
                    "perplexity_before": round(event.base_perplexity, 3),
                    "perplexity_after": round(event.tuned_perplexity, 3),
                    "train_seconds": round(event.progress.elapsed_s, 1),
                    "tokens_per_s": round(event.progress.tokens_per_s, 1), "warnings": warnings,
                }  # fmt: skip

    @user_errors
    def api_compare(
        self, adapter, prompt=COMPARE_EXAMPLE, seed=0, max_new_tokens=96, temperature=0.7, request=None
    ):
        """The base model's and the tuned model's replies to one prompt with the same settings and seed, each
        with the longest run of tokens it copies from the adapter's training text (the memorisation meter)."""
        c = self._compare(adapter, prompt, seed, max_new_tokens, temperature)

        def reply(r):
            copied = None if r.copied is None else {"tokens": r.copied.tokens, "text": r.copied.text}
            return {"text": r.text, "copied": copied}

        return {"prompt": c.prompt, "seed": c.seed, "base": reply(c.base), "tuned": reply(c.tuned)}

    def api_adapters(self, request: gr.Request = None):
        """The adapters made in the Tune tab, newest first: name, base model, preset, perplexity before and
        after, steps, time and date (their cards' facts)."""
        return self.tuner.shelf.listed((
            "name", "base_model", "preset", "perplexity_before", "perplexity_after", "steps", "train_seconds",
            "train_tokens", "gguf_adapter", "date",
        ))  # fmt: skip


def build_tune_tab(tuner: TextTuner | None, failure: LoadFailure | None) -> TuneTab | None:
    if tuner is None:
        failure_notice(failure)
        return None
    return TuneTab(tuner)
