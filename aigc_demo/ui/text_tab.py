"""The Text tab: chat and completion, streamed. Layout and wiring only; the pipeline does the work."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import gradio as gr

from aigc_demo.config import AppConfig
from aigc_demo.device import gpu_task
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.text import (
    TextPipeline,
    TextUpdate,
    parse_messages,
)
from aigc_demo.pipelines.text_presets import (
    COMPLETION_EXAMPLES,
    PRESETS,
    PRESETS_BY_KEY,
)
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.strings import EN, t

log = logging.getLogger(__name__)

HEAVY = "heavy"  # concurrency_id shared by every CPU-heavy event: one at a time on 2 cores
DEFAULT = PRESETS[0]


def format_stats(update: TextUpdate) -> str:
    s = update.stats
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
    A bad request becomes gr.Error (a message in the page / the API client), never a traceback."""

    def __init__(self, pipe: TextPipeline):
        self.pipe = pipe
        self._stops = SessionStops(threading.Event)  # the Stop button of each browser session

    def _params(self, max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed):
        return self.pipe.parse_params(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            seed=seed,
        )

    # ---- UI events ------------------------------------------------------------------------------
    # Explicit parameters, not *settings: Gradio injects ``request`` by its position in the signature.
    def chat(
        self, message, history, system_prompt, max_new_tokens, temperature, top_p, top_k, min_p,
        repetition_penalty, seed, request: gr.Request = None,
    ):  # fmt: skip
        """Stream a reply into the chatbot. Yields (chatbot, message box, stats, last seed)."""
        settings = (max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed)
        stop = self._stops.arm(request)
        try:
            params = self._params(*settings)
            history = parse_messages(history, self.pipe.cfg.max_history_turns, self.pipe.cfg.max_prompt_chars)
            stream = self.pipe.chat(message, history, system_prompt, params, stop=stop)  # checks inputs
            shown = history + [{"role": "user", "content": message}]
            # The message moves into the chat at once, before the prompt is read (slow on a busy machine).
            yield shown, "", gr.skip(), gr.skip()
            for update in paced(stream, self.pipe.cfg.ui_update_interval_s):
                reply = {"role": "assistant", "content": update.text}
                yield shown + [reply], "", format_stats(update), update.stats.seed
        except ValueError as err:
            raise gr.Error(str(err)) from None

    def regenerate(
        self, history, system_prompt, max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty,
        seed, request: gr.Request = None,
    ):  # fmt: skip
        """Drop the last reply and answer the last user message again (with the seed settings given)."""
        history = list(history or [])
        while history and history[-1].get("role") == "assistant":
            history.pop()
        if not history:
            raise gr.Error("Nothing to regenerate yet.")
        last = history.pop()
        message = parse_messages([last], 1, self.pipe.cfg.max_prompt_chars)[0]["content"]
        settings = (max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed)
        yield from self.chat(message, history, system_prompt, *settings, request=request)

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

    def complete(
        self, prompt, max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed,
        request: gr.Request = None,
    ):  # fmt: skip
        stop = self._stops.arm(request)
        try:
            params = self._params(max_new_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed)
            stream = self.pipe.complete(prompt, params, stop=stop)
            for update in paced(stream, self.pipe.cfg.ui_update_interval_s):
                yield prompt + update.text, format_stats(update), update.stats.seed
        except ValueError as err:
            raise gr.Error(str(err)) from None

    @staticmethod
    def export(history) -> list[str]:
        """Write the conversation as Markdown and JSON files for download."""
        history = list(history or [])
        if not history:
            raise gr.Error("The conversation is empty.")
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
    def api_chat(
        self,
        message: str,
        history: list | None = None,
        system_prompt: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.9,
        top_k: int = 50,
        min_p: float = 0.05,
        repetition_penalty: float = 1.1,
        seed: int = -1,
        request: gr.Request = None,
    ) -> Iterator[dict]:
        """Chat with the language model. Streams {"text", "seed", "new_tokens", "tokens_per_s", ...};
        history is a list of {"role": "user"|"assistant", "content": str}. seed -1 = random.
        /chat_stop from the same client ends it early (finish_reason "stopped")."""
        stop = self._stops.arm(request)
        try:
            params = self._params(
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                min_p,
                repetition_penalty,
                seed,
            )
            for update in self.pipe.chat(message, history, system_prompt, params, stop=stop):
                yield api_result(update)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    def api_complete(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.9,
        top_k: int = 50,
        min_p: float = 0.05,
        repetition_penalty: float = 1.1,
        seed: int = -1,
        request: gr.Request = None,
    ) -> Iterator[dict]:
        """Continue a text (no chat template). Streams the same dict as /chat (text = continuation only)."""
        stop = self._stops.arm(request)
        try:
            params = self._params(
                max_new_tokens,
                temperature,
                top_p,
                top_k,
                min_p,
                repetition_penalty,
                seed,
            )
            for update in self.pipe.complete(prompt, params, stop=stop):
                yield api_result(update)
        except ValueError as err:
            raise gr.Error(str(err)) from None


def apply_preset(label: str):
    preset = PRESETS_BY_KEY[_preset_key(label)]
    p = preset.params
    return (
        preset.system_prompt,
        p.max_new_tokens,
        p.temperature,
        p.top_p,
        p.top_k,
        p.min_p,
        p.repetition_penalty,
    )


def _preset_key(label: str) -> str:
    for key in PRESETS_BY_KEY:
        if label in (key, EN[key]):
            return key
    raise gr.Error(f"Unknown preset {label!r}")


def build_failure_notice(failure: LoadFailure | None) -> None:
    failure = failure or LoadFailure("text", "not loaded", "")
    gr.Markdown(f"### ⚠️ {EN['load_failed']}\n\n`{failure.error}`\n\n**{EN['how_to_fix']}:** {failure.hint}")


def build_text_tab(pipe: TextPipeline | None, failure: LoadFailure | None, cfg: AppConfig) -> None:
    """Render the Text tab inside the current Blocks context."""
    if pipe is None:
        build_failure_notice(failure)
        return
    handlers = TextHandlers(pipe)
    limit = cfg.text.max_new_tokens_limit
    d = DEFAULT.params
    gr.Markdown(f"{t('model_info')}: `{pipe.model_id}` · engine `{pipe.engine.name}`")

    with gr.Accordion(t("parameters"), open=False):
        with gr.Row():
            preset = gr.Dropdown(
                [EN[p.key] for p in PRESETS],
                value=EN[DEFAULT.key],
                label=t("preset"),
                info=t("preset_info"),
            )
            seed = gr.Number(value=-1, precision=0, label=t("seed"), minimum=-1, maximum=2**32 - 1)
            reuse_seed = gr.Button(t("reuse_seed"), size="sm")
            random_seed = gr.Button(t("random_seed"), size="sm")
        system_prompt = gr.Textbox(DEFAULT.system_prompt, label=t("system_prompt"), lines=2)
        with gr.Row():
            max_new_tokens = gr.Slider(1, limit, d.max_new_tokens, step=1, label=t("max_new_tokens"))
            temperature = gr.Slider(0.0, 2.0, d.temperature, step=0.05, label=t("temperature"))
            top_p = gr.Slider(0.05, 1.0, d.top_p, step=0.01, label=t("top_p"))
        with gr.Row():
            top_k = gr.Slider(0, 200, d.top_k, step=1, label=t("top_k"))
            min_p = gr.Slider(0.0, 0.5, d.min_p, step=0.01, label=t("min_p"))
            repetition_penalty = gr.Slider(
                1.0, 2.0, d.repetition_penalty, step=0.01, label=t("repetition_penalty")
            )
    settings = [
        max_new_tokens,
        temperature,
        top_p,
        top_k,
        min_p,
        repetition_penalty,
        seed,
    ]
    last_seed = gr.State(None)

    with gr.Tabs():
        with gr.Tab(t("text_chat"), id="chat"):
            chatbot = gr.Chatbot(
                show_label=False,
                height=420,
                buttons=["copy", "copy_all"],
                elem_id="chatbot",
            )
            with gr.Row():
                message = gr.Textbox(
                    placeholder=t("message_placeholder"),
                    show_label=False,
                    scale=6,
                    elem_id="chat-message",
                )
                send = gr.Button(t("send"), variant="primary", scale=1, elem_id="chat-send")
                stop = gr.Button(t("stop"), variant="stop", scale=1, elem_id="chat-stop")
            with gr.Row():
                regenerate = gr.Button(t("regenerate"), size="sm")
                undo = gr.Button(t("undo"), size="sm")
                clear = gr.Button(t("clear"), size="sm")
                export = gr.Button(t("export"), size="sm")
            chat_stats = gr.Markdown(elem_id="chat-stats")
            export_files = gr.File(label=t("export"), file_count="multiple", visible=False, height=80)
            gr.Examples(
                [[p.example, EN[p.key]] for p in PRESETS],
                inputs=[message, preset],
                label=t("examples"),
                example_labels=[f"{EN[p.key]}: {p.example}" for p in PRESETS],
            )

        with gr.Tab(t("text_completion"), id="completion"):
            prompt = gr.Textbox(lines=8, label=t("prompt"), placeholder=t("prompt_placeholder"))
            with gr.Row():
                generate = gr.Button(t("generate"), variant="primary", elem_id="complete-generate")
                stop_completion = gr.Button(t("stop"), variant="stop")
            completion_stats = gr.Markdown()
            gr.Examples([[e] for e in COMPLETION_EXAMPLES], inputs=[prompt], label=t("examples"))

    # ---- wiring ---------------------------------------------------------------------------------
    heavy = {"concurrency_id": HEAVY, "concurrency_limit": cfg.server.heavy_concurrency}
    chat_outputs = [chatbot, message, chat_stats, last_seed]
    for name, trigger in (("submit", message.submit), ("send", send.click)):
        trigger(
            gpu_task(handlers.chat),
            [message, chatbot, system_prompt, *settings],
            chat_outputs,
            api_name=f"ui_chat_{name}",
            api_visibility="undocumented",
            **heavy,
        )
    regenerate.click(
        gpu_task(handlers.regenerate),
        [chatbot, system_prompt, *settings],
        chat_outputs,
        api_name="ui_regenerate",
        api_visibility="undocumented",
        **heavy,
    )
    # Stop asks the running reply to end after this token and keeps it; not a cancel (see ui/sessions.py).
    stop.click(handlers.stop, None, None, queue=False, api_name="chat_stop")
    undo.click(handlers.undo, [chatbot], [chatbot, message], api_visibility="undocumented")
    clear.click(
        lambda: ([], "", ""),
        None,
        [chatbot, message, chat_stats],
        api_visibility="undocumented",
    )
    export.click(
        lambda h: gr.File(value=handlers.export(h), visible=True),
        [chatbot],
        [export_files],
        api_visibility="undocumented",
    )
    preset.change(
        apply_preset,
        [preset],
        [
            system_prompt,
            max_new_tokens,
            temperature,
            top_p,
            top_k,
            min_p,
            repetition_penalty,
        ],
        api_visibility="undocumented",
    )
    reuse_seed.click(
        lambda s: -1 if s is None else s,
        [last_seed],
        [seed],
        api_visibility="undocumented",
    )
    random_seed.click(lambda: -1, None, [seed], api_visibility="undocumented")

    generate.click(
        gpu_task(handlers.complete),
        [prompt, *settings],
        [prompt, completion_stats, last_seed],
        api_name="ui_complete",
        api_visibility="undocumented",
        **heavy,
    )
    stop_completion.click(handlers.stop, None, None, queue=False, api_visibility="undocumented")

    # Stable, documented API endpoints (streaming through gradio_client's submit()).
    gr.api(gpu_task(handlers.api_chat), api_name="chat", **heavy)
    gr.api(gpu_task(handlers.api_complete), api_name="complete", **heavy)
