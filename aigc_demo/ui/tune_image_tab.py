"""The Tune tab's pictures: teach the image model a new word from a few pictures, watch it learn, compare.
Layout and wiring only; the data, the training and the adapters are ``pipelines/tune_image.py``."""

from __future__ import annotations

import threading

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from aigc_demo.data.tune_examples import MASCOT_WORD, mascot_pictures
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.tune_image import (
    ImageTuner,
    PictureComparison,
    PictureSet,
    PictureTuneResult,
    Preview,
)
from aigc_demo.registry import LoadFailure
from aigc_demo.training.fine_tune import FitProgress
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import HEAVY, failure_notice, pixel_gallery, received_files, refresh_button
from aigc_demo.ui.strings import t
from aigc_demo.ui.tune_tab import adapter_files, loss_points

TUNE = "tune"  # the Tune tab's one training lane: a text and a picture run never share the cores
SETTINGS = ("steps", "learning_rate", "rank", "batch_size", "preview_every", "seed")
FIT = "fit (fixed noise)"  # the evaluated curve: the pictures' denoising loss at fixed noise
CURVE_COLOURS = {"training": "#f97316", FIT: "#2563eb"}


def progress_line(p: FitProgress) -> str:
    done = round(20 * p.step / max(p.total_steps, 1))
    eta = "" if p.step == 0 else f" · about {p.eta_s:.0f} s left"
    return (
        f"`{'█' * done}{'░' * (20 - done)}` step {p.step}/{p.total_steps} · loss {p.train_loss:.4f} · "
        f"fit {p.held_out_curve[-1][1]:.4f} · {p.elapsed_s:.0f} s{eta}"
    )


def result_text(r: PictureTuneResult, word: str) -> str:
    p = r.progress
    if r.adapter is None:
        if p.step == 0:
            return f"Stopped before the first step: no adapter saved. ({r.seconds:.0f} s)"
        return f"The fit never improved in {p.step} steps: no adapter saved. Try a higher learning rate."
    ended = "finished" if p.finish == "done" else "stopped by you"
    return (
        f"**{r.adapter.name}**: {ended} after {p.step} steps in {p.elapsed_s:.0f} s; kept the best state "
        f"(step {p.best_step}). Prompt with “{word}” in the Image tab with this adapter, or compare below."
    )


def likeness_text(drawing) -> str:
    if drawing.likeness is None:
        return "likeness: no scorer loaded"
    like = drawing.likeness
    copy = " · **a near copy of a training picture**" if like.copy else ""
    return f"likeness {like.similarity:.2f} · {like.pixel_bits}/192 hash bits from the nearest{copy}"


def comparison_table(c: PictureComparison) -> str:
    rows = ["| prompt | model | prompt match | likeness to your pictures |", "|---|---|---|---|"]
    for prompt, base, tuned in zip(c.prompts, c.base, c.tuned, strict=True):
        for label, d in (("base", base), ("tuned", tuned)):
            match = "—" if d.image.prompt_match is None else f"{d.image.prompt_match:.3f}"
            rows.append(f"| {prompt} | {label} | {match} | {likeness_text(d)} |")
    return "\n".join(rows) + f"\n\nSeed {c.seed} for every picture."


def comparison_gallery(c: PictureComparison) -> list[tuple[Image.Image, str]]:
    pictures = []
    for prompt, base, tuned in zip(c.prompts, c.base, c.tuned, strict=True):
        pictures += [(base.image.image, f"base · {prompt}"), (tuned.image.image, f"tuned · {prompt}")]
    return pictures


class PictureTuneTab:
    def __init__(self, tuner: ImageTuner):
        self.tuner = tuner
        self._stops = SessionStops(threading.Event)
        self._build()
        self._wire()

    def _build(self) -> None:
        schema = self.tuner.schema
        gr.Markdown(t("tune_image_intro"))
        self.drawings = gr.State([])  # pictures drawn in the sketch pad this session
        with gr.Row():
            with gr.Column(scale=2):
                self.files = gr.File(
                    label=t("tune_image_files"),
                    file_count="multiple", file_types=["image"], type="filepath", height=110,
                    elem_id="tune-image-files",
                )  # fmt: skip
                with gr.Accordion(t("tune_image_draw"), open=False, elem_id="tune-image-draw"):
                    self.sketch = gr.Sketchpad(
                        type="pil", height=280, canvas_size=(256, 256), label=t("tune_image_draw"),
                        elem_id="tune-image-sketch",
                    )  # fmt: skip
                    with gr.Row():
                        self.add_drawing = gr.Button(t("tune_image_add"), size="sm", elem_id="tune-image-add")
                        self.clear_drawings = gr.Button(t("tune_image_clear"), size="sm")
                self.pictures = pixel_gallery(
                    label=t("tune_image_pictures"), columns=8, height=110, allow_preview=False,
                    elem_id="tune-image-pictures",
                )  # fmt: skip
                with gr.Row():
                    gr.Markdown(t("tune_examples"))
                    self.example = gr.Button(
                        f"Blip, a mascot ({len(mascot_pictures())} pictures)", size="sm",
                        elem_id="tune-image-example",
                    )  # fmt: skip
                with gr.Row():
                    self.word = gr.Textbox(
                        label=t("tune_image_word"), max_length=40, placeholder="my-mascot",
                        elem_id="tune-image-word",
                    )  # fmt: skip
                    self.name = gr.Textbox(label=t("tune_name"), max_length=40, elem_id="tune-image-name")
                with gr.Accordion(t("tune_settings"), open=False, elem_id="tune-image-settings"):
                    with gr.Row():
                        self.controls = Controls.build(
                            schema, SETTINGS[:3], steps={"elem_id": "tune-image-steps"}
                        )
                    with gr.Row():
                        self.controls.update(
                            Controls.build(
                                schema, SETTINGS[3:], preview_every={"elem_id": "tune-image-preview-every"}
                            )
                        )
                with gr.Row():
                    self.train = gr.Button(t("tune_train"), variant="primary", elem_id="tune-image-train")
                    self.stop = gr.Button(t("tune_stop"), variant="stop", elem_id="tune-image-stop")
            with gr.Column(scale=3):
                self.progress = gr.Markdown(elem_id="tune-image-progress")
                self.plot = gr.LinePlot(
                    x="step", y="loss", color="curve", label=t("tune_image_loss"), height=220,
                    elem_id="tune-image-loss", color_map=CURVE_COLOURS,
                )  # fmt: skip
                self.previews = pixel_gallery(
                    label=t("tune_image_previews"), columns=4, height=240, allow_preview=False,
                    elem_id="tune-image-previews",
                )  # fmt: skip
                self.result = gr.Markdown(elem_id="tune-image-result")
                self.downloads = gr.File(
                    label=t("tune_image_downloads"), file_count="multiple", interactive=False, height=90,
                    elem_id="tune-image-downloads",
                )  # fmt: skip
        gr.Markdown(f"### {t('tune_compare')}")
        with gr.Row():
            names = self.tuner.names()
            self.adapter = gr.Dropdown(
                names, value=names[0] if names else None, label=t("tune_adapters"), scale=2,
                elem_id="tune-image-adapter",
            )  # fmt: skip
            self.refresh = refresh_button("tune-image-adapter-refresh")
            self.prompts = gr.Textbox(
                label=t("tune_image_compare_prompts"), scale=4, lines=2, elem_id="tune-image-compare-prompts"
            )
            self.seed = gr.Number(0, precision=0, label=t("seed"), scale=1, minimum=-1)
            self.compare = gr.Button(t("tune_compare_run"), scale=1, elem_id="tune-image-compare")
        self.compared = pixel_gallery(
            label=t("tune_image_compared"), columns=4, height=350, elem_id="tune-image-compared"
        )
        self.table = gr.Markdown(elem_id="tune-image-table")

    def _wire(self) -> None:
        ui = {"api_visibility": "undocumented"}
        c = self.controls
        self.files.change(self.shown, [self.files, self.drawings], [self.pictures], **ui)
        self.add_drawing.click(
            self.add,
            [self.sketch, self.drawings, self.files],
            [self.drawings, self.pictures, self.sketch],
            **ui,
        )
        self.clear_drawings.click(
            lambda files: ([], self.shown(files, [])), [self.files], [self.drawings, self.pictures], **ui
        )
        self.example.click(lambda: (mascot_pictures(), MASCOT_WORD), None, [self.files, self.word], **ui)
        self.train.click(
            self.run,
            {self.files, self.drawings, self.word, self.name, *c.components},
            [
                self.progress,
                self.plot,
                self.previews,
                self.result,
                self.downloads,
                self.adapter,
                self.prompts,
            ],
            concurrency_id=TUNE,
            concurrency_limit=1,
            **ui,
        )
        self.stop.click(self.stop_run, None, None, queue=False, api_name="tune_image_stop")
        self.refresh.click(lambda: gr.Dropdown(choices=self.tuner.names()), None, [self.adapter], **ui)
        self.compare.click(
            self.compare_ui,
            [self.adapter, self.prompts, self.seed],
            [self.compared, self.table, self.seed],
            concurrency_id=HEAVY,
            **ui,
        )
        api(
            self.api_tune,
            api_name="tune_image",
            schema=self.tuner.schema,
            head=[arg("word", str), arg("pictures", list[FileData]), arg("name", str, "")],
            returns=dict,
            concurrency_id=TUNE,
            concurrency_limit=1,
        )
        api(
            self.api_compare,
            api_name="tune_image_compare",
            head=[arg("adapter", str), arg("prompts", list[str] | None, None), arg("seed", int, 0)],
            returns=dict,
            concurrency_id=HEAVY,
        )
        api(self.api_adapters, api_name="tune_image_adapters", returns=list[dict], queue=False)

    # -- handlers -----------------------------------------------------------------------------------------
    @staticmethod
    def _all(files, drawings) -> list:
        return [*(files or []), *(drawings or [])]

    def shown(self, files, drawings) -> list:
        return [(f if isinstance(f, Image.Image) else str(f)) for f in self._all(files, drawings)]

    @user_errors
    def add(self, sketch, drawings, files):
        """The sketch pad's drawing (on white) joins the pictures; the pad is cleared for the next one."""
        image = None if sketch is None else sketch.get("composite")
        if image is None or image.getbbox() is None:
            raise ValueError("the sketch pad is empty: draw something first")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        drawing = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        if drawing.convert("L").getextrema()[0] > 250:
            raise ValueError("the sketch pad is empty: draw something first")
        drawings = [*(drawings or []), drawing]
        return drawings, self.shown(files, drawings), None

    @user_errors_stream
    def run(self, data: dict, request: gr.Request = None):
        stop = self._stops.arm(request)
        pictures = self._all(data[self.files], data[self.drawings])
        params = self.controls.read(data)
        word = data[self.word]
        for event in self.tuner.tune(word, pictures, data[self.name], params, stop):
            if isinstance(event, PictureSet):
                word = event.word
                checked = self.tuner.parse_params(params)
                yield {
                    self.progress: event.summary(checked, self.tuner.estimate_s(checked)),
                    self.result: "", self.downloads: None, self.previews: [],
                }  # fmt: skip
            elif isinstance(event, FitProgress):
                update = {self.progress: progress_line(event)}
                if event.train_curve:  # the plot keeps the series of its first value: start with both
                    update[self.plot] = loss_points(event, FIT)
                yield update
            elif isinstance(event, Preview):
                label = "base model" if event.step == 0 else f"step {event.step}"
                yield {self.previews: [(img, label) for img in event.images]}
            else:
                update = {self.result: result_text(event, word)}
                if event.adapter is not None:
                    update[self.downloads] = adapter_files(event.adapter)
                    update[self.adapter] = gr.Dropdown(choices=self.tuner.names(), value=event.adapter.name)
                    update[self.prompts] = f"{word}\n{word} wearing a hat"
                yield update

    def stop_run(self, request: gr.Request = None) -> None:
        """Ask this session's picture fine-tune to end after the current step; the best state is saved."""
        self._stops.stop(request)

    @staticmethod
    def _prompts(prompts) -> list[str] | None:
        if isinstance(prompts, str):
            prompts = prompts.splitlines()
        if prompts is not None and not isinstance(prompts, list | tuple):
            raise ValueError(f"prompts must be text or a list of texts, not {type(prompts).__name__}")
        return [p.strip() for p in prompts or [] if isinstance(p, str) and p.strip()] or None

    def _compare(self, adapter, prompts, seed) -> PictureComparison:
        if not adapter:
            raise ValueError("no picture adapter chosen: train one first (or pick one)")
        return self.tuner.compare(adapter, self._prompts(prompts), 0 if seed is None else seed)

    @user_errors
    def compare_ui(self, adapter, prompts, seed):
        c = self._compare(adapter, prompts, seed)
        return comparison_gallery(c), comparison_table(c), c.seed

    # -- API ------------------------------------------------------------------------------------------------
    @user_errors_stream
    def api_tune(self, word, pictures, name="", request: gr.Request = None, **params):
        """Teach the diffusion model ``word`` from 4-16 ``pictures`` (image files). Streams {"step",
        "total_steps", "train_loss", "fit_loss", "elapsed_s", "eta_s"} after each step, then {"adapter",
        "finish", "steps", "train_seconds", ...}. /tune_image_stop ends it after the current step."""
        stop = self._stops.arm(request)
        paths = received_files("pictures", pictures)
        for event in self.tuner.tune(word, paths, name, params, stop):
            if isinstance(event, FitProgress):
                yield {
                    "step": event.step, "total_steps": event.total_steps, "train_loss": event.train_loss,
                    "fit_loss": event.held_out_curve[-1][1], "elapsed_s": round(event.elapsed_s, 2),
                    "eta_s": None if event.step == 0 else round(event.eta_s, 1),
                }  # fmt: skip
            elif isinstance(event, PictureTuneResult):
                record = {} if event.adapter is None else event.adapter.record
                yield {
                    "adapter": None if event.adapter is None else event.adapter.name,
                    "finish": event.progress.finish, "steps": event.progress.step,
                    "word": record.get("word"), "fit_loss_before": record.get("fit_loss_before"),
                    "fit_loss_after": record.get("fit_loss_after"),
                    "train_seconds": round(event.progress.elapsed_s, 1),
                }  # fmt: skip

    @user_errors
    def api_compare(self, adapter, prompts=None, seed=0, request: gr.Request = None):
        """The base and the tuned model drawing the same prompts (default: the word, and the word wearing a
        hat) with one seed: each picture as a PNG path with its prompt match and likeness to the training
        pictures (scorer cosine and perceptual-hash bits to the nearest)."""
        c = self._compare(adapter, prompts, seed)
        folder = fresh_output_dir("picture-compare-")

        def entry(d, label, k):
            path = folder / f"{label}-{k}.png"
            d.image.image.save(path)
            like = None if d.likeness is None else {
                "similarity": d.likeness.similarity, "pixel_bits": d.likeness.pixel_bits, "copy": d.likeness.copy
            }  # fmt: skip
            return {"image": str(path), "prompt_match": d.image.prompt_match, "likeness": like}

        return {
            "seed": c.seed,
            "prompts": c.prompts,
            "base": [entry(d, "base", k) for k, d in enumerate(c.base)],
            "tuned": [entry(d, "tuned", k) for k, d in enumerate(c.tuned)],
        }

    def api_adapters(self, request: gr.Request = None):
        """The picture adapters made in the Tune tab, newest first: name, word, base model, pictures, steps,
        fit loss before and after, time and date."""
        return self.tuner.shelf.listed((
            "name", "word", "base_model", "pictures", "steps", "fit_loss_before", "fit_loss_after",
            "train_seconds", "date",
        ))  # fmt: skip


def build_picture_tune_tab(tuner: ImageTuner | None, failure: LoadFailure | None) -> PictureTuneTab | None:
    if tuner is None:
        failure_notice(failure)
        return None
    return PictureTuneTab(tuner)
