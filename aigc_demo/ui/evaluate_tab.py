"""The Evaluate tab: X/Y/Z sweeps of the image pipeline and quality figures for any set of pictures. Layout
and wiring only; the sweep and the figures are ``pipelines/evaluate.py`` and ``metrics.py``."""

from __future__ import annotations

import threading

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from aigc_demo.device import gpu_task
from aigc_demo.metrics import Figure
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.evaluate import (
    AXES,
    EvaluatePipeline,
    SweepProgress,
    draw_grid,
    save_grid,
    save_map,
    write_csv,
)
from aigc_demo.pipelines.image import ImagePipeline, Interrupt
from aigc_demo.pipelines.latent import LatentPipeline
from aigc_demo.pipelines.text import TextPipeline
from aigc_demo.pipelines.tune import TextTuner
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import HEAVY, failure_notice, received_files, refresh_button
from aigc_demo.ui.strings import t

BASE = ("prompt", "num_inference_steps", "guidance_scale", "scheduler", "seed", "generator")
AXIS_CHOICES = [("nothing", "nothing"), *((label, name) for name, label in AXES.items())]
# axis -> (parameter, values) shown first, and the API's defaults
AXIS_DEFAULTS = {
    "x": ("guidance_scale", "1, 3, 5, 7"),
    "y": ("num_inference_steps", "4, 10, 20"),
    "z": ("nothing", ""),
}
FIGURE_COLUMNS = ["figure", "value", "95% interval", "n", "note"]
MAX_MEASURED = 256  # pictures per /evaluate_images call
TEXT_EXAMPLE = "Write a short poem about the sea."
TEXT_DEFAULTS = {"A": (0.7, 0.9), "B": (1.3, 1.0)}  # (temperature, top_p) of the two settings compared


def stacked(grids: list[Image.Image]) -> Image.Image | None:
    """The Z values' grids one under another, for the page (the files keep one PNG each)."""
    if not grids:
        return None
    page = Image.new("RGB", (max(g.width for g in grids), sum(g.height for g in grids)), "white")
    top = 0
    for grid in grids:
        page.paste(grid, (0, top))
        top += grid.height
    return page


def figure_rows(figures: list[Figure]) -> list[list]:
    rows = []
    for f in figures:
        interval = f"{f.low:.3f} – {f.high:.3f}" if f.low is not None else ""
        rows.append([f.name, "—" if f.value is None else f"{f.value:.3f}", interval, f.n, f.note])
    return rows


def sentence_encoder(texts: list[str]):
    """MiniLM, loaded on first use (shared with the filter and the Story grounding)."""
    from aigc_demo.config import AppConfig
    from aigc_demo.pipelines.grounding import minilm_encoder

    return minilm_encoder(AppConfig.from_env().safety.text_encoder)(texts)


class EvaluateTab:
    def __init__(
        self,
        image: ImagePipeline | None,
        text: TextPipeline | None,
        tuner: TextTuner | None = None,
        latent: LatentPipeline | None = None,
    ):
        self.tuner = tuner
        tuned = tuner.serving if tuner is not None else None
        self.pipe = EvaluatePipeline(image, text, sentence_encoder, tuned, latent)
        self._interrupts = SessionStops(Interrupt)
        if image is not None:
            threading.Thread(target=self.pipe.real_radii, name="evaluate-reference", daemon=True).start()
            self._build_images(image)
        if text is not None:
            self._build_text(text)

    def _build_images(self, image: ImagePipeline) -> None:
        schema = image.schema
        gr.Markdown(t("evaluate_intro"))
        with gr.Row():
            with gr.Column(scale=2):
                self.controls = Controls.build(
                    schema,
                    BASE,
                    prompt={"value": "cat face, in OpenMoji style", "elem_id": "evaluate-prompt"},
                    seed={"value": 1},
                )
                self.axes = []
                for axis, (name, values) in AXIS_DEFAULTS.items():
                    with gr.Row():
                        self.axes.append(
                            gr.Dropdown(
                                AXIS_CHOICES, value=name, label=t(f"evaluate_axis_{axis}"), scale=1,
                                elem_id=f"evaluate-{axis}-axis",
                            )
                        )  # fmt: skip
                        self.axes.append(
                            gr.Textbox(
                                value=values, label=t("evaluate_values"), placeholder="1, 3, 5  ·  4-20 (+4)  ·  64x64",
                                scale=2, elem_id=f"evaluate-{axis}-values",
                            )
                        )  # fmt: skip
                with gr.Row():
                    self.run = gr.Button(t("evaluate_run"), variant="primary", elem_id="evaluate-run")
                    self.stop = gr.Button(t("evaluate_stop"), elem_id="evaluate-stop")
                self.progress = gr.Markdown(elem_id="evaluate-progress")
            with gr.Column(scale=3):
                self.grids = gr.Image(
                    label=t("evaluate_grid"),
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="evaluate-grid",
                )
                self.figures = gr.Dataframe(
                    headers=FIGURE_COLUMNS, interactive=False, wrap=True, elem_id="evaluate-figures"
                )
                self.map = self._map_image("evaluate-map")
                self.files = gr.File(
                    label=t("evaluate_files"),
                    file_count="multiple",
                    interactive=False,
                    elem_id="evaluate-files",
                )
        with gr.Accordion(t("evaluate_measure"), open=False):
            gr.Markdown(t("evaluate_measure_hint"))
            with gr.Row():
                self.pictures = gr.File(
                    label=t("evaluate_pictures"), file_count="multiple", file_types=["image"],
                    type="filepath", elem_id="evaluate-pictures",
                )  # fmt: skip
                with gr.Column():
                    self.measure_prompt = gr.Textbox(
                        label=t("evaluate_measure_prompt"), elem_id="evaluate-measure-prompt"
                    )
                    self.measure_run = gr.Button(t("evaluate_measure_run"), elem_id="evaluate-measure-run")
            self.measured = gr.Dataframe(
                headers=FIGURE_COLUMNS, interactive=False, wrap=True, elem_id="evaluate-measured"
            )
            self.measured_map = self._map_image("evaluate-measured-map")
        self._wire(schema)

    def _map_image(self, elem_id: str) -> gr.Image:
        return gr.Image(
            label=t("evaluate_map"),
            type="pil",
            format="png",
            interactive=False,
            visible=self.pipe.can_place,
            elem_id=elem_id,
        )

    def _build_text(self, text: TextPipeline) -> None:
        with gr.Accordion(t("evaluate_text"), open=False):
            gr.Markdown(t("evaluate_text_hint"))
            with gr.Row():
                with gr.Column():
                    self.text_prompt = gr.Textbox(
                        value=TEXT_EXAMPLE,
                        label=t("evaluate_text_prompt"),
                        lines=2,
                        elem_id="evaluate-text-prompt",
                    )
                    self.text_settings = []
                    for name, (temperature, top_p) in TEXT_DEFAULTS.items():
                        with gr.Row():
                            self.text_settings += [
                                gr.Slider(0, 2, temperature, step=0.05, label=f"{name}: temperature"),
                                gr.Slider(0.05, 1, top_p, step=0.05, label=f"{name}: top_p"),
                            ]
                    with gr.Row(visible=self.tuner is not None):
                        self.text_adapters = [
                            gr.Dropdown(
                                self._adapter_choices(), value="base", label=f"{name}: {t('text_adapter')}",
                                elem_id=f"evaluate-text-adapter-{name.lower()}",
                            )
                            for name in TEXT_DEFAULTS
                        ]  # fmt: skip
                        self.text_refresh = refresh_button()
                    with gr.Row():
                        self.text_replies = gr.Slider(2, 16, 4, step=1, label=t("evaluate_text_replies"))
                        self.text_tokens = gr.Slider(
                            16,
                            256,
                            96,
                            step=16,
                            label=t("evaluate_text_tokens"),
                            elem_id="evaluate-text-tokens",
                        )
                    self.text_run = gr.Button(t("evaluate_text_run"), elem_id="evaluate-text-run")
                    self.text_progress = gr.Markdown(elem_id="evaluate-text-progress")
                with gr.Column():
                    self.text_table = gr.Dataframe(
                        interactive=False, wrap=True, elem_id="evaluate-text-table"
                    )
                    self.text_plot = gr.BarPlot(
                        x="figure",
                        y="value",
                        color="setting",
                        label=t("evaluate_text_plot"),
                        elem_id="evaluate-text-plot",
                    )
            self.text_replies_shown = gr.JSON(label=t("evaluate_text_shown"), elem_id="evaluate-text-replies")
        ui = {"api_visibility": "undocumented"}
        self.text_run.click(
            gpu_task(self.compare_text),
            [self.text_prompt, *self.text_settings, self.text_replies, self.text_tokens, *self.text_adapters],
            [self.text_progress, self.text_table, self.text_plot, self.text_replies_shown],
            concurrency_id=HEAVY,
            **ui,
        )
        api(
            gpu_task(self.api_compare_text),
            api_name="evaluate_text",
            head=[
                arg("prompt", str), arg("replies", int, 4), arg("max_new_tokens", int, 96), arg("seed", int, 0),
                *(arg(f"{p}_{k.lower()}", float, v) for k, pair in TEXT_DEFAULTS.items() for p, v in zip(("temperature", "top_p"), pair, strict=True)),
            ],
            tail=[arg(f"adapter_{k.lower()}", str, "") for k in TEXT_DEFAULTS],
            returns=dict,
            concurrency_id=HEAVY,
        )  # fmt: skip
        self.text_refresh.click(
            lambda: [gr.Dropdown(choices=self._adapter_choices())] * len(TEXT_DEFAULTS), None, self.text_adapters,
            **ui,
        )  # fmt: skip

    def _adapter_choices(self) -> list[str]:
        return ["base", *(self.tuner.shelf.names() if self.tuner is not None else [])]

    def _wire(self, schema) -> None:
        ui = {"api_visibility": "undocumented"}
        c = self.controls
        gr.on(
            [self.run.click],
            gpu_task(self.sweep),
            inputs={*c.components, *self.axes},
            outputs=[self.grids, self.figures, self.map, self.files, self.progress],
            concurrency_id=HEAVY,
            **ui,
        )
        self.stop.click(self.interrupt, None, None, queue=False, api_name="evaluate_interrupt")
        self.measure_run.click(
            self.measure,
            [self.pictures, self.measure_prompt],
            [self.measured, self.measured_map],
            concurrency_id=HEAVY,
            **ui,
        )
        axes = [
            arg(f"{k}_{part}", str, value)
            for k, pair in AXIS_DEFAULTS.items()
            for part, value in zip(("axis", "values"), pair, strict=True)
        ]
        api(
            gpu_task(self.api_sweep),
            api_name="evaluate_sweep",
            schema=schema,
            head=[arg("prompt", str), *axes],
            skip=("batch_size",),
            returns=tuple[list[FileData], dict],
            concurrency_id=HEAVY,
        )
        api(
            self.api_measure,
            api_name="evaluate_images",
            head=[arg("images", list[FileData]), arg("prompt", str, "")],
            returns=dict,
            concurrency_id=HEAVY,
        )
        api(
            self.api_map,
            api_name="evaluate_map",
            head=[arg("images", list[FileData])],
            returns=tuple[FileData, dict],
            concurrency_id=HEAVY,
        )

    # -- handlers -------------------------------------------------------------------------------------
    def _specs(self, values: list) -> list[tuple[str, str]]:
        return [(values[i], values[i + 1]) for i in (0, 2, 4)]

    @user_errors_stream
    def sweep(self, data: dict, request: gr.Request = None):
        interrupt = self._interrupts.arm(request)
        request_params = self.controls.read(data)
        specs = self._specs([data[a] for a in self.axes])
        for event in self.pipe.sweep(request_params, specs, interrupt):
            if isinstance(event, SweepProgress):
                partial = draw_grid(event.cells, event.axes, event.cells[-1].z)
                bar = "█" * round(20 * event.done / event.total) + "░" * (
                    20 - round(20 * event.done / event.total)
                )
                yield {
                    self.grids: partial,
                    self.progress: f"`{bar}` cell {event.done}/{event.total} · {event.elapsed_s:.1f} s · "
                    f"about {event.eta_s:.0f} s left",
                }
            else:
                files = self._files(event)
                summary = (
                    f"{len(event.cells)} cells in {event.seconds:.1f} s "
                    f"(pictures {event.images_seconds:.1f} s, grid and figures "
                    f"{event.seconds - event.images_seconds:.2f} s)"
                )
                if event.placement is not None:
                    summary += f"\n\n{event.placement.summary()}"
                summary += "".join(f"\n\n⚠️ {w}" for w in event.warnings)
                yield {
                    self.grids: stacked(event.grids),
                    self.figures: figure_rows(event.figures),
                    self.map: event.placement.image if event.placement is not None else None,
                    self.files: [str(p) for p in files],
                    self.progress: summary,
                }

    def _files(self, result) -> list:
        folder = fresh_output_dir("sweep-")
        grids = [save_grid(result, z, folder) for z in range(len(result.grids))]
        placed = [save_map(result.placement, folder, "sweep-map.png")] if result.placement is not None else []
        return [*grids, *placed, write_csv(result, folder / "sweep-cells.csv")]

    def interrupt(self, request: gr.Request = None) -> None:
        self._interrupts.stop(request)

    def _pictures(self, paths) -> list[Image.Image]:
        paths = received_files("images", paths)
        if not paths:
            raise ValueError("no pictures were given")
        if len(paths) > MAX_MEASURED:
            raise ValueError(f"{len(paths)} pictures; at most {MAX_MEASURED} at once")
        pictures = []
        for path in paths:
            try:
                with Image.open(path) as img:
                    if img.width * img.height > 4096 * 4096:
                        raise ValueError("too large")
                    pictures.append(img.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError):
                name = str(path).rsplit("/", 1)[-1]
                raise ValueError(f"{name} is not a picture that can be read") from None
        return pictures

    def _figures(self, pictures: list[Image.Image], prompt: str) -> list[Figure]:
        prompt = (prompt or "").strip()
        scores = self.pipe.image.prompt_match(pictures, prompt) if prompt else [None] * len(pictures)
        return self.pipe.measure(pictures, scores)

    @user_errors
    def measure(self, paths, prompt: str):
        pictures = self._pictures(paths)
        placement = self.pipe.place(pictures)
        return figure_rows(self._figures(pictures, prompt)), placement.image if placement else None

    @user_errors
    def api_measure(self, images, prompt="", request: gr.Request = None):
        """Quality figures for a set of pictures (a batch, a sweep, a story's panels): prompt match (when a
        prompt is given), diversity, near-duplicates, precision/recall and KID against the training pictures,
        each with its n and 95% interval, or why there is none."""
        return {f.name: f.as_dict() for f in self._figures(self._pictures(images), prompt)}

    @user_errors
    def api_map(self, images, request: gr.Request = None):
        """A set of pictures on the Latent tab's corpus map (its autoencoder's first two principal directions):
        the map as a PNG, and per picture its coordinates and the training emoji nearest to it."""
        if not self.pipe.can_place:
            raise ValueError(
                "the corpus map needs the Latent tab's model and its atlas, which are not loaded"
            )
        placement = self.pipe.place(self._pictures(images))
        path = save_map(placement, fresh_output_dir("map-"))
        return FileData(path=str(path)).model_dump(), {**placement.as_dict(), "summary": placement.summary()}

    @user_errors
    def api_sweep(
        self,
        prompt,
        x_axis,
        x_values,
        y_axis,
        y_values,
        z_axis,
        z_values,
        request: gr.Request = None,
        **params,
    ):
        """An X/Y/Z sweep: every combination of the axes' values (a parameter's name and a comma-separated list,
        "4-20 (+4)" ranges, "64x64" sizes, a prompt search/replace), the rest of the request fixed. Returns the
        grid PNGs and the cells' CSV, and the cells, figures and timings. /evaluate_interrupt stops it and keeps
        the finished cells."""
        interrupt = self._interrupts.arm(request)
        specs = [(x_axis, x_values), (y_axis, y_values), (z_axis, z_values)]
        result = None
        for result in self.pipe.sweep({**params, "prompt": prompt}, specs, interrupt):
            pass
        files = self._files(result)
        info = {
            "cells": [
                {"x": c.x, "y": c.y, "z": c.z, "prompt_match": c.prompt_match, "parameters": c.parameters}
                for c in result.cells
            ],
            "figures": {f.name: f.as_dict() for f in result.figures},
            "seconds": round(result.seconds, 3),
            "images_seconds": round(result.images_seconds, 3),
            "stopped": result.stopped,
            "warnings": result.warnings,
            "map": result.placement.as_dict() if result.placement is not None else None,
        }
        return [FileData(path=str(p)).model_dump() for p in files], info

    # -- text ---------------------------------------------------------------------------------------------
    def _compare(self, prompt, values: list, replies, max_new_tokens, seed=0, adapters=("", "")):
        settings = {
            name: {"temperature": values[2 * k], "top_p": values[2 * k + 1], "max_new_tokens": max_new_tokens, "seed": seed, "adapter": adapters[k]}
            for k, name in enumerate(TEXT_DEFAULTS)
        }  # fmt: skip
        return self.pipe.compare_text(prompt, settings, replies)

    @user_errors_stream
    def compare_text(self, prompt, *values):
        *settings, replies, max_new_tokens, adapter_a, adapter_b = values
        for event in self._compare(prompt, settings, replies, max_new_tokens, 0, (adapter_a, adapter_b)):
            if isinstance(event, tuple):
                yield {self.text_progress: f"reply {event[0]}/{event[1]}"}
            else:
                rows, points = text_rows(event)
                yield {
                    self.text_progress: f"{sum(len(s.replies) for s in event)} replies",
                    self.text_table: rows,
                    self.text_plot: points,
                    self.text_replies_shown: {s.name: s.replies for s in event},
                }

    @user_errors
    def api_compare_text(
        self, prompt, replies=4, max_new_tokens=96, seed=0, request: gr.Request = None, **values
    ):
        """``replies`` replies to ``prompt`` under two sampling settings (A and B, the same seeds), and per
        setting: perplexity under the model, distinct-1/2, repetition, length and the replies' similarity,
        each with its n and 95% interval. ``adapter_a``/``adapter_b`` name Tune tab adapters ("" = the base
        model): base against tuned, on the same prompt and seeds."""
        ordered = [values[f"{p}_{k.lower()}"] for k in TEXT_DEFAULTS for p in ("temperature", "top_p")]
        adapters = tuple(values[f"adapter_{k.lower()}"] for k in TEXT_DEFAULTS)
        result = None
        for result in self._compare(prompt, ordered, replies, max_new_tokens, seed, adapters):
            pass
        return {
            s.name: {
                "temperature": s.params.temperature, "top_p": s.params.top_p, "adapter": s.adapter, "replies": s.replies,
                "figures": {f.name: f.as_dict() for f in s.figures},
            }
            for s in result
        }  # fmt: skip


def text_rows(settings) -> tuple[list[list], object]:
    """The figures of each setting side by side, and the 0-1 ones as bars."""
    import pandas as pd

    names = [f.name for f in settings[0].figures]
    rows = [[name, *(s.figures[i].text() for s in settings)] for i, name in enumerate(names)]
    table = pd.DataFrame(
        rows,
        columns=[
            "figure",
            *(
                f"{s.name} ({s.adapter + ', ' if s.adapter else ''}T {s.params.temperature:g}, top_p {s.params.top_p:g})"
                for s in settings
            ),
        ],
    )
    bars = [
        {"figure": f"{f.name} {s.name}", "value": f.value, "setting": s.name}  # one bar each: not stacked
        for s in settings
        for f in s.figures
        if f.value is not None and f.name in ("distinct-1", "distinct-2", "repetition", "similarity")
    ]
    return table, pd.DataFrame(bars, columns=["figure", "value", "setting"])


def build_evaluate_tab(
    image: ImagePipeline | None,
    text: TextPipeline | None,
    failure: LoadFailure | None,
    tuner: TextTuner | None = None,
    latent: LatentPipeline | None = None,
) -> EvaluateTab | None:
    if image is None and text is None:
        failure_notice(failure)
        return None
    return EvaluateTab(image, text, tuner, latent)
