"""The Text tab: chat and completion, streamed. Layout and wiring only; the pipeline does the work.

The seven sampling controls come from ``GenerationParams`` (``pipelines/text.py``) and bind to it by name:
every handler receives ``{component: value}`` and reads the settings with ``controls.read``; the API
endpoints take the same parameters, with the schema's defaults.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import gradio as gr

from aigc_demo.device import gpu_task
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.text import GenerationParams, TextPipeline, TextUpdate, parse_messages
from aigc_demo.pipelines.text_presets import COMPLETION_EXAMPLES, PRESETS, PRESETS_BY_KEY
from aigc_demo.pipelines.tune import TextTuner
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import refused, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import HEAVY, failure_notice, refresh_button
from aigc_demo.ui.strings import t
from aigc_demo.validation import quoted

log = logging.getLogger(__name__)

DEFAULT = PRESETS[0]
BASE_MODEL = "base"  # the adapter dropdown's first choice: no adapter


def format_stats(update: TextUpdate) -> str:
    s = update.stats
    if s.new_tokens == 0:
        # A translated phrase inside a string: the page translates one such phrase per value.
        parts = [str(t("text_nothing_generated"))]
    else:
        parts = [f"**{s.new_tokens}** tokens"]
    if s.tokens_per_s is not None:
        parts.append(f"{s.tokens_per_s:.1f} tok/s")
    if s.time_to_first_token_s is not None:
        parts.append(f"first token {s.time_to_first_token_s * 1000:.0f} ms")
    parts += [f"seed `{s.seed}`", f"finish: {s.finish_reason}", f"`{s.engine}`"]
    text = " · ".join(parts)
    for w in s.warnings:
        text += f"\n\n⚠️ {w}"
    return text


def api_result(update: TextUpdate) -> dict:
    """What API clients get on every streamed step: the text so far plus what made it."""
    s = update.stats
    return {
        "text": update.text,
        "seed": s.seed,
        "new_tokens": s.new_tokens,
        "prompt_tokens": s.prompt_tokens,
        "tokens_per_s": s.tokens_per_s,
        "time_to_first_token_s": s.time_to_first_token_s,
        "finish_reason": s.finish_reason,
        "warnings": list(s.warnings),
        "model": s.model,
    }


def paced(updates: Iterator[TextUpdate], interval_s: float) -> Iterator[TextUpdate]:
    """At most one update per `interval_s`, and always the first (the first token shows at once) and the
    last (finished, stopped or cut at the limit)."""
    last_shown = float("-inf")
    for update in updates:
        now = time.perf_counter()
        if now - last_shown >= interval_s or update.stats.finish_reason != "running":
            last_shown = now
            yield update


class TextHandlers:
    """Event handlers: turn UI values into pipeline calls and pipeline results into UI values.
    A bad request becomes gr.Error (a message in the page / the API client), never a traceback.

    UI handlers take one ``{component: value}`` dict and read the components of ``tab`` by identity; they
    return (or stream) ``{component: value}`` for what changes."""

    def __init__(self, pipe: TextPipeline, tab: TextTab, tuner: TextTuner | None = None):
        self.pipe = pipe
        self.tab = tab
        self.tuner = tuner
        self._stops = SessionStops(threading.Event)  # the Stop button of each browser session

    def model(self, adapter: str | None) -> TextPipeline:
        """The base model, or the base with a Tune tab adapter (built on first use)."""
        if not adapter or adapter == BASE_MODEL:
            return self.pipe
        if self.tuner is None:
            raise ValueError("adapters need the Tune tab's pipeline, which did not load")
        return self.tuner.serving(adapter)

    def _params(self, data: dict) -> GenerationParams:
        return self.pipe.parse_params(self.tab.controls.read(data))

    # ---- UI events ------------------------------------------------------------------------------
    @user_errors_stream
    def chat(self, data: dict, request: gr.Request = None) -> Iterator[dict]:
        """Stream a reply to the message box into the chatbot."""
        tab = self.tab
        yield from self._reply(data[tab.message], data[tab.chatbot], data, request)

    @user_errors_stream
    def regenerate(self, data: dict, request: gr.Request = None) -> Iterator[dict]:
        """Drop the last reply and answer the last user message again (with the seed settings given)."""
        history = list(data[self.tab.chatbot] or [])
        while history and history[-1].get("role") == "assistant":
            history.pop()
        if not history:
            raise refused("Nothing to regenerate yet.")
        last = history.pop()
        message = parse_messages([last], 1, self.pipe.cfg.max_prompt_chars)[0]["content"]
        yield from self._reply(message, history, data, request)

    def _reply(self, message, history, data: dict, request) -> Iterator[dict]:
        tab = self.tab
        stop = self._stops.arm(request)
        params = self._params(data)
        history = parse_messages(history, self.pipe.cfg.max_history_turns, self.pipe.cfg.max_prompt_chars)
        model = self.model(data.get(tab.adapter))
        stream = model.chat(message, history, data[tab.system_prompt], params, stop=stop)  # checks
        shown = history + [{"role": "user", "content": message}]
        # The message moves into the chat at once, before the prompt is read (slow on a busy machine).
        yield {tab.chatbot: shown, tab.message: ""}
        for update in paced(stream, self.pipe.cfg.ui_update_interval_s):
            # No bubble until there is something to show: Stop before the first token leaves none.
            reply = [{"role": "assistant", "content": update.text}] if update.text.strip() else []
            yield {
                tab.chatbot: shown + reply,
                tab.chat_stats: format_stats(update),
                tab.last_seed: update.stats.seed,
            }

    @user_errors_stream
    def complete(self, data: dict, request: gr.Request = None) -> Iterator[dict]:
        """Stream a continuation of the prompt box into the prompt box."""
        tab = self.tab
        prompt = data[tab.prompt]
        stop = self._stops.arm(request)
        stream = self.model(data.get(tab.adapter)).complete(prompt, self._params(data), stop=stop)
        for update in paced(stream, self.pipe.cfg.ui_update_interval_s):
            yield {
                tab.prompt: prompt + update.text,
                tab.completion_stats: format_stats(update),
                tab.last_seed: update.stats.seed,
            }

    def apply_preset(self, data: dict) -> dict:
        """Set the chosen preset's system prompt and sampling values; only the ones that differ change."""
        tab = self.tab
        preset = PRESETS_BY_KEY.get(data[tab.preset])
        if preset is None:
            raise refused(f"unknown preset {quoted(data[tab.preset])}")
        current = tab.controls.read(data)
        changed = tab.controls.write({k: v for k, v in preset.settings().items() if current.get(k) != v})
        same_prompt = data.get(tab.system_prompt) == preset.system_prompt
        # Never an empty dict: Gradio 6.31 takes {} for one output value and fails the event.
        changed[tab.system_prompt] = gr.skip() if same_prompt else preset.system_prompt
        return changed

    def stop(self, request: gr.Request = None) -> None:
        """Ask this session's running generation to end after the current token; it keeps its text."""
        self._stops.stop(request)

    @staticmethod
    def undo(history):
        """Remove the last exchange and put its message back in the box for editing."""
        history = list(history or [])
        message = ""
        while history:
            m = history.pop()
            if m.get("role") == "user":
                message = m["content"] if isinstance(m["content"], str) else ""
                break
        return history, message

    @staticmethod
    def export(history) -> list[str]:
        """Write the conversation as Markdown and JSON files for download."""
        history = list(history or [])
        if not history:
            raise refused("The conversation is empty.")
        folder = fresh_output_dir("chat-")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        md = [f"# Conversation ({stamp})\n"]
        clean = []
        for m in history:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            clean.append({"role": m.get("role"), "content": content})
            md.append(f"**{m.get('role')}**: {content}\n")
        md_path, json_path = folder / f"chat-{stamp}.md", folder / f"chat-{stamp}.json"
        md_path.write_text("\n".join(md), encoding="utf-8")
        json_path.write_text(json.dumps(clean, ensure_ascii=False, indent=2), encoding="utf-8")
        return [str(md_path), str(json_path)]

    # ---- API (stable names, documented on the page's "Use via API") ---------------------------
    # Registered with ``controls.api``: the signature is the head arguments plus GenerationParams.
    @user_errors_stream
    def api_chat(
        self, message, history=None, system_prompt=None, adapter="", request: gr.Request = None, **settings
    ) -> Iterator[dict]:
        """Chat with the language model. Streams {"text", "seed", "new_tokens", "tokens_per_s", ...};
        history is a list of {"role": "user"|"assistant", "content": str}. seed -1 = random. ``adapter``: the
        name of a Tune tab adapter (/tune_adapters), "" for the base model.
        /chat_stop from the same client ends it early (finish_reason "stopped")."""
        stop = self._stops.arm(request)
        params = self.pipe.parse_params(settings)
        stream = self.model(adapter).chat(message, history, system_prompt, params, stop=stop)
        for update in paced(stream, self.pipe.cfg.api_update_interval_s):
            yield api_result(update)

    @user_errors_stream
    def api_complete(self, prompt, adapter="", request: gr.Request = None, **settings) -> Iterator[dict]:
        """Continue a text (no chat template). Streams the same dict as /chat (text = continuation only)."""
        stop = self._stops.arm(request)
        params = self.pipe.parse_params(settings)
        for update in paced(
            self.model(adapter).complete(prompt, params, stop=stop), self.pipe.cfg.api_update_interval_s
        ):
            yield api_result(update)


class TextTab:
    """The tab's components, built in the current Blocks context, its handlers and their wiring."""

    def __init__(self, pipe: TextPipeline, tuner: TextTuner | None = None):
        self.pipe = pipe
        self.tuner = tuner
        self._build()
        self.handlers = TextHandlers(pipe, self, tuner)
        self._wire()

    def adapter_choices(self) -> list[str]:
        return [BASE_MODEL, *(self.tuner.shelf.names() if self.tuner is not None else [])]

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        pipe, schema = self.pipe, self.pipe.schema
        with gr.Row():
            gr.Markdown(f"{t('text_model_engine')}: `{pipe.model_id}` · `{pipe.engine.name}`")
            self.adapter = gr.Dropdown(
                self.adapter_choices(),
                value=BASE_MODEL,
                label=t("text_adapter"),
                info=t("text_adapter_info"),
                visible=self.tuner is not None and not pipe.remote,  # adapters need the weights here
                elem_id="text-adapter",
            )
            self.refresh_adapters = refresh_button(
                visible=self.tuner is not None and not pipe.remote,
                elem_id="text-adapter-refresh",
            )

        with gr.Accordion(t("parameters"), open=False):
            with gr.Row():
                # Translated names, stable values: the handler and the examples use the preset's key.
                self.preset = gr.Dropdown(
                    [(t(p.key), p.key) for p in PRESETS],
                    value=DEFAULT.key,
                    label=t("preset"),
                    info=t("preset_info"),
                )
                c = self.controls = Controls.build(schema, ["seed"])
                self.reuse_seed = gr.Button(t("reuse_seed"), size="sm")
                self.random_seed = gr.Button(t("random_seed"), size="sm")
            self.system_prompt = gr.Textbox(DEFAULT.system_prompt, label=t("system_prompt"), lines=2)
            with gr.Row():
                c.update(Controls.build(schema, ["max_new_tokens", "temperature", "top_p"]))
            with gr.Row():
                c.update(Controls.build(schema, ["top_k", "min_p", "repetition_penalty"]))
            # The watermark biases the model's tokens, which a remote engine keeps to itself.
            watermark = {"elem_id": "text-watermark", "visible": not pipe.remote}
            c.update(Controls.build(schema, ["watermark"], watermark=watermark))
        self.last_seed = gr.State(None)

        with gr.Tabs():
            with gr.Tab(t("text_chat"), id="chat"):
                self.chatbot = gr.Chatbot(
                    show_label=False,
                    height=420,
                    buttons=["copy", "copy_all"],
                    elem_id="chatbot",
                )
                with gr.Row():
                    self.message = gr.Textbox(
                        placeholder=t("message_placeholder"),
                        show_label=False,
                        scale=6,
                        elem_id="chat-message",
                    )
                    self.send = gr.Button(t("send"), variant="primary", scale=1, elem_id="chat-send")
                    self.stop = gr.Button(t("stop"), variant="stop", scale=1, elem_id="chat-stop")
                with gr.Row():
                    self.regenerate = gr.Button(t("regenerate"), size="sm")
                    self.undo = gr.Button(t("undo"), size="sm")
                    self.clear = gr.Button(t("clear"), size="sm")
                    self.export = gr.Button(t("export"), size="sm")
                self.chat_stats = gr.Markdown(elem_id="chat-stats")
                self.export_files = gr.File(
                    label=t("export"), file_count="multiple", visible=False, height=80
                )
                # Labelled by the message alone: Gradio 6.31 shows example labels (and the preset column a
                # table would show) untranslated, while the preset dropdown itself is translated.
                gr.Examples(
                    [[p.example, p.key] for p in PRESETS],
                    inputs=[self.message, self.preset],
                    label=t("examples"),
                    example_labels=[p.example for p in PRESETS],
                )

            with gr.Tab(t("text_completion"), id="completion"):
                self.prompt = gr.Textbox(lines=8, label=t("prompt"), placeholder=t("prompt_placeholder"))
                with gr.Row():
                    self.generate = gr.Button(t("generate"), variant="primary", elem_id="complete-generate")
                    self.stop_completion = gr.Button(t("stop"), variant="stop")
                self.completion_stats = gr.Markdown()
                gr.Examples([[e] for e in COMPLETION_EXAMPLES], inputs=[self.prompt], label=t("examples"))

    # -- wiring ---------------------------------------------------------------------------------------
    def _wire(self) -> None:
        h, c = self.handlers, self.controls
        heavy = {"concurrency_id": HEAVY}  # its limit is the queue's default (ui/layout.py)
        if self.pipe.remote:  # a reply only waits for the server: it takes neither the local cores nor a GPU
            heavy = {"concurrency_id": "text-remote", "concurrency_limit": self.pipe.cfg.remote_streams}
        task = (lambda fn: fn) if self.pipe.remote else gpu_task
        ui = {"api_visibility": "undocumented"}
        chat_outputs = [self.chatbot, self.message, self.chat_stats, self.last_seed]
        gr.on(
            triggers=[self.message.submit, self.send.click],
            fn=task(h.chat),
            inputs={self.message, self.chatbot, self.system_prompt, self.adapter, *c.components},
            outputs=chat_outputs,
            api_name="ui_chat",
            **ui,
            **heavy,
        )
        self.regenerate.click(
            task(h.regenerate),
            inputs={self.chatbot, self.system_prompt, self.adapter, *c.components},
            outputs=chat_outputs,
            api_name="ui_regenerate",
            **ui,
            **heavy,
        )
        # Stop asks the running reply to end after this token and keeps it; not a cancel (see ui/sessions.py).
        self.stop.click(h.stop, None, None, queue=False, api_name="chat_stop")
        self.undo.click(h.undo, [self.chatbot], [self.chatbot, self.message], **ui)
        self.clear.click(lambda: ([], "", ""), None, [self.chatbot, self.message, self.chat_stats], **ui)
        self.export.click(
            lambda history: gr.File(value=h.export(history), visible=True),
            [self.chatbot],
            [self.export_files],
            **ui,
        )
        self.preset.change(
            h.apply_preset,
            inputs={self.preset, self.system_prompt, *c.components},
            outputs={self.system_prompt, *c.components},
            **ui,
        )
        self.reuse_seed.click(lambda s: -1 if s is None else s, [self.last_seed], [c["seed"]], **ui)
        self.random_seed.click(lambda: -1, None, [c["seed"]], **ui)
        self.refresh_adapters.click(
            lambda: gr.Dropdown(choices=self.adapter_choices()), None, [self.adapter], **ui
        )

        self.generate.click(
            task(h.complete),
            inputs={self.prompt, self.adapter, *c.components},
            outputs=[self.prompt, self.completion_stats, self.last_seed],
            api_name="ui_complete",
            **ui,
            **heavy,
        )
        self.stop_completion.click(h.stop, None, None, queue=False, **ui)

        # Stable, documented API endpoints (streaming through gradio_client's submit()).
        schema = self.pipe.schema
        api(
            task(h.api_chat),
            api_name="chat",
            schema=schema,
            head=[
                arg("message", str),
                arg("history", list | None, None),
                arg("system_prompt", str | None, None),
            ],
            tail=[arg("adapter", str, "")],
            returns=dict,
            **heavy,
        )
        api(
            task(h.api_complete),
            api_name="complete",
            schema=schema,
            head=[arg("prompt", str)],
            tail=[arg("adapter", str, "")],
            returns=dict,
            **heavy,
        )


def build_text_tab(
    pipe: TextPipeline | None, failure: LoadFailure | None, tuner: TextTuner | None = None
) -> TextTab | None:
    """Render the Text tab inside the current Blocks context."""
    if pipe is None:
        failure_notice(failure)
        return None
    return TextTab(pipe, tuner)
