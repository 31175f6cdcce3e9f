"""The Image tab: text-to-image with the diffusion model or the GAN. Layout and wiring only.

A1111-style ergonomics: live previews and a progress line with ETA while it denoises, Interrupt (stops
within one step and keeps what exists), a session gallery whose images restore their parameters with one
click, PNG downloads that carry their parameters, and a drop zone that reads them back. The controls come
from ``ImageParams`` (``pipelines/image.py``) and bind to it by name.
"""

from __future__ import annotations

import logging

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from aigc_demo import validation
from aigc_demo.device import gpu_task
from aigc_demo.imaging import upscale
from aigc_demo.pipelines.image import ImagePipeline, ImageProgress, Interrupt
from aigc_demo.provenance.parameters import read_parameters, save_png
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import refused, user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import (
    HEAVY,
    LIGHT,
    copies_gallery,
    copies_markdown,
    copies_pictures,
    copy_check_dict,
    drawing_lane,
    failure_notice,
    pixel_gallery,
    received_file,
    refresh_button,
)
from aigc_demo.ui.strings import EN, t

log = logging.getLogger(__name__)

N_Z_SLIDERS = 8
EXAMPLES = [
    ["grinning face, in Noto Color Emoji style", 7],
    ["red heart, in Twemoji style", 3],
    ["cat face, in OpenMoji style", 11],
    ["a happy yellow face", 42],
    ["blue heart, in OpenMoji style", 5],
    ["smiling face with heart-eyes, in Twemoji style", 8],
]
HISTORY_LIMIT = 48  # images kept in a visitor's session gallery
# Parameters that mean nothing to a one-step GAN: greyed out while it is chosen.
DIFFUSION_ONLY = (
    "num_inference_steps", "guidance_scale", "scheduler", "negative_prompt", "width", "height", "adapter",
)  # fmt: skip
# What the few-step student fixes itself (pipelines/diffusion.py, DiffusionGenerator.settle).
STUDENT_FIXED = ("guidance_scale", "scheduler", "negative_prompt", "adapter")


def describe(params: dict, seconds: float | None = None, warnings=()) -> str:
    parts = [f"seed `{params['seed']}`"]
    if params.get("generator") == "gan":
        parts.append("GAN, one step")
    elif params.get("generator") == "student":
        parts.append(f"few-step student, {params['num_inference_steps']} steps")
    else:
        parts += [
            f"{params['num_inference_steps']} steps",
            params["scheduler"],
            f"guidance {params['guidance_scale']:g}",
        ]
        if params.get("adapter"):
            parts.append(f"adapter {params['adapter']}")
    parts.append(f"{params['width']}x{params['height']}")
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    text = " · ".join(parts)
    for w in warnings:
        text += f"\n\n⚠️ {w}"
    return text


def progress_line(event: ImageProgress, run: int, count: int) -> str:
    done = event.step / event.total
    bar = "█" * round(done * 20) + "░" * (20 - round(done * 20))
    batch = f" · batch {run + 1}/{count}" if count > 1 else ""
    return (
        f"`{bar}` step {event.step}/{event.total} · {event.elapsed_s:.1f} s · ETA {event.eta_s:.1f} s{batch}"
    )


class ImageTab:
    """The tab's components and its handlers; built inside a Blocks context."""

    def __init__(self, pipe: ImagePipeline):
        self.pipe = pipe
        self.cfg = pipe.cfg
        self.drawing = drawing_lane(pipe.cfg.batch_images)
        self._interrupts = SessionStops(Interrupt)  # one per browser session
        self._build()
        self._wire()

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        pipe, cfg = self.pipe, self.cfg
        native = pipe.diffusion.native_size if pipe.diffusion else pipe.gan.native_size
        side = {
            "minimum": max(8, native // 2),
            "maximum": native * 2,
            "value": native,
            "step": max(8, native // 4),
        }
        gan_chosen = pipe.default_generator == "gan"
        self.history = gr.State([])
        self.chosen = gr.State(None)  # the chosen image's parameters
        self.chosen_path = gr.State(None)  # and its PNG

        gr.Markdown(t("image_intro"))
        with gr.Row():
            with gr.Column(scale=1):
                c = self.controls = Controls.build(
                    pipe.schema,
                    ["prompt", "negative_prompt", "generator"],
                    prompt={"placeholder": t("image_prompt_placeholder"), "elem_id": "image-prompt"},
                    generator={"interactive": len(pipe.generators) > 1},
                )
                with gr.Row(visible=pipe.adapters is not None):
                    c["adapter"] = gr.Dropdown(
                        self.adapter_choices(), value="", label=t("image_adapter"), scale=4,
                        allow_custom_value=True,  # a reused PNG may name an adapter made elsewhere
                        elem_id="image-adapter",
                    )  # fmt: skip
                    self.adapter_refresh = refresh_button("image-adapter-refresh")
                with gr.Row():
                    self.go = gr.Button(t("generate"), variant="primary", elem_id="image-generate")
                    self.stop = gr.Button(t("image_interrupt"), variant="stop", elem_id="image-interrupt")
                self.live = gr.Checkbox(
                    False,
                    label=t("image_live"),
                    info=t("image_live_hint"),
                    interactive=pipe.student is not None,
                    elem_id="image-live",
                )
                with gr.Accordion(t("parameters"), open=True):
                    c.update(
                        Controls.build(
                            pipe.schema,
                            ["num_inference_steps", "guidance_scale", "scheduler"],
                            num_inference_steps={"elem_id": "image-steps", "interactive": not gan_chosen},
                            guidance_scale={"interactive": not gan_chosen},
                            scheduler={"interactive": not gan_chosen},
                        )
                    )
                    with gr.Row():
                        c.update(Controls.build(pipe.schema, ["seed"], seed={"elem_id": "image-seed"}))
                        self.last_seed = gr.Textbox(
                            "",
                            label=t("image_last_seed"),
                            interactive=False,
                            placeholder="—",
                            elem_id="image-last-seed",
                        )
                    with gr.Row():
                        self.random_seed = gr.Button(t("random_seed"), size="sm")
                        self.reuse_seed = gr.Button(t("reuse_seed"), size="sm")
                    with gr.Row():
                        c.update(
                            Controls.build(
                                pipe.schema, ["batch_size"], batch_size={"elem_id": "image-batch-size"}
                            )
                        )
                        self.batch_count = gr.Slider(
                            1, cfg.max_batch_count, 1, step=1, label=t("image_batch_count")
                        )
                    with gr.Row():
                        c.update(
                            Controls.build(
                                pipe.schema,
                                ["width", "height"],
                                width={**side, "interactive": not gan_chosen},
                                height={**side, "interactive": not gan_chosen},
                            )
                        )
                    c.update(
                        Controls.build(
                            pipe.schema,
                            ["upscale"],
                            upscale={"elem_id": "image-upscale", "interactive": pipe.upscaler is not None},
                        )
                    )
                gr.Examples(
                    EXAMPLES,
                    [c["prompt"], c["seed"]],
                    label=t("examples"),
                    example_labels=[f"{p} · seed {s}" for p, s in EXAMPLES],  # no table header to translate
                )
                self.png_drop = gr.File(
                    label=t("image_drop_png"), file_types=[".png"], type="filepath", elem_id="image-drop"
                )
            with gr.Column(scale=1):
                self.progress = gr.Markdown(elem_id="image-progress")
                self.live_image = gr.Image(
                    label=t("image_live"),
                    interactive=False,
                    height=280,
                    format="png",
                    visible=False,
                    elem_id="image-live-picture",
                    elem_classes=["pixels"],
                )
                self.previews = pixel_gallery(
                    label=t("image_preview"),
                    columns=4,
                    height=200,
                    allow_preview=False,
                    elem_id="image-previews",
                )
                self.info = gr.Markdown(elem_id="image-info")
                self.gallery = pixel_gallery(
                    label=t("image_gallery"),
                    columns=4,
                    height=420,
                    preview=True,  # the newest image large and whole, the session's others as thumbnails
                    elem_id="image-gallery",
                )
                with gr.Row():
                    self.chosen_info = gr.Markdown()
                    self.reuse = gr.Button(t("image_reuse"), elem_id="image-reuse")
                    self.check_copies = gr.Button(
                        t("image_copies"), elem_id="image-copies", interactive=pipe.copy_index is not None
                    )
                with gr.Row():
                    self.copies_info = gr.Markdown(elem_id="image-copies-info")
                    self.copies_pictures = copies_pictures("image-copies-pictures")
                self.files = gr.File(
                    label=t("image_download"), file_count="multiple", interactive=False, elem_id="image-files"
                )
        self.z_sliders: list[gr.Slider] = []
        if pipe.gan is not None:
            with gr.Accordion(t("image_gan_explore"), open=False):
                gr.Markdown(t("image_gan_explore_hint"))
                with gr.Row():
                    with gr.Column():
                        self.z_sliders = [
                            gr.Slider(-3, 3, 0, step=0.1, label=f"z[{i}]")
                            for i in range(min(N_Z_SLIDERS, pipe.gan.z_dim))
                        ]
                    with gr.Column():
                        self.gan_image = gr.Image(
                            interactive=False,
                            height=256,
                            show_label=False,
                            format="png",
                            elem_id="gan-image",
                            elem_classes=["pixels"],
                        )
                        self.gan_info = gr.Markdown()

    def adapter_choices(self) -> list[tuple[str, str]]:
        return [("none", ""), *((name, name) for name in self.pipe.adapter_names())]

    def _wire(self) -> None:
        c = self.controls
        ui = {"api_visibility": "undocumented"}
        self.adapter_refresh.click(
            lambda: gr.Dropdown(choices=self.adapter_choices()), None, [c["adapter"]], **ui
        )
        gr.on(
            triggers=[self.go.click, c["prompt"].submit],
            fn=gpu_task(self.generate),
            inputs={self.history, self.batch_count, *c.components},
            outputs=[
                self.previews,
                self.progress,
                self.gallery,
                self.info,
                self.files,
                self.last_seed,
                self.history,
                self.chosen,
                self.chosen_info,
                self.chosen_path,
            ],  # fmt: skip
            **self.drawing,
            **ui,
        )
        # Interrupt asks the running job to stop after this step (and keep its images); not a cancel.
        self.stop.click(self.interrupt, None, None, queue=False, api_name="image_interrupt")
        self.random_seed.click(lambda: -1, None, c["seed"], queue=False, **ui)
        self.reuse_seed.click(
            lambda s: s if s not in (None, "") else -1, self.last_seed, c["seed"], queue=False, **ui
        )
        self.gallery.select(
            self.select, [self.history], [self.chosen, self.chosen_info, self.chosen_path], **ui
        )
        self.check_copies.click(
            self.copies, [self.chosen_path], [self.copies_info, self.copies_pictures], **ui
        )
        self.reuse.click(self.reuse_parameters, [self.chosen], list(c.values()), **ui)
        self.png_drop.upload(self.restore_from_png, [self.png_drop], list(c.values()), **ui)
        c["generator"].change(self.generator_changed, [c["generator"]], [c[n] for n in DIFFUSION_ONLY], **ui)
        # Live: every change of the prompt asks (a keystroke, a paste, an example); while one picture is drawn
        # only the newest request waits.
        gr.on(
            triggers=[c["prompt"].change, self.live.change, c["seed"].input, c["upscale"].change],
            fn=gpu_task(self.live_draw),
            inputs=[self.live, c["prompt"], c["seed"], self.last_seed, c["upscale"]],
            outputs=[self.live_image, self.progress],
            trigger_mode="always_last",
            show_progress="hidden",
            **self.drawing,
            **ui,
        )
        if self.z_sliders:
            gr.on(
                triggers=[s.input for s in self.z_sliders],
                fn=self.gan_explore,
                inputs=[c["prompt"], self.last_seed, c["seed"], *self.z_sliders],
                outputs=[self.gan_image, self.gan_info],
                trigger_mode="always_last",
                show_progress="hidden",
                **ui,
                **LIGHT,
            )

        # The API: plain arguments with the schema's defaults.
        api(
            gpu_task(self.api_generate),
            api_name="image_generate",
            schema=self.pipe.schema,
            head=[arg("prompt", str)],
            returns=tuple[list[FileData], dict],
            **self.drawing,
        )
        if self.pipe.student is not None:
            api(
                gpu_task(self.api_live),
                api_name="image_live",
                head=[arg("prompt", str), arg("seed", int, 0), arg("upscale", bool, False)],
                returns=tuple[FileData, dict],
                **self.drawing,
            )
        if self.pipe.gan is not None:
            api(
                self.api_gan,
                api_name="image_gan",
                head=[arg("prompt", str), arg("seed", int, -1), arg("z_offset", list[float], [])],
                returns=tuple[FileData, dict],
                **LIGHT,
            )
        if self.pipe.copy_index is not None:
            api(
                self.api_copies,
                api_name="image_copies",
                head=[arg("image", FileData | None)],
                returns=dict,
                concurrency_id=HEAVY,
            )
        api(
            self.api_read_parameters,
            api_name="image_read_parameters",
            head=[arg("png", FileData | None)],
            returns=dict,
            **LIGHT,
        )

    # -- handlers -------------------------------------------------------------------------------------
    def _show(self, image: Image.Image) -> Image.Image:
        return upscale(image, self.cfg.display_size)

    @user_errors_stream
    def generate(self, data: dict, request: gr.Request = None):
        """Streams previews and progress, then the gallery, info, files and seed. batch_count runs one after
        another, continuing the seed sequence (A1111's batch count). This click's images go first, in seed
        order, and the gallery ends on the first of them, whose seed the seed box shows."""
        interrupt = self._interrupts.arm(request)
        params = self.controls.read(data)
        count = validation.in_range(
            "batch count",
            validation.as_int("batch count", data[self.batch_count]),
            1,
            self.cfg.max_batch_count,
        )
        files, infos, made_now, seed, first_seed, shown = [], [], [], None, None, []
        for run in range(count):
            if seed is not None:
                params = {**params, "seed": seed + params["batch_size"]}
            for event in self.pipe.generate(params, interrupt):
                if isinstance(event, ImageProgress):
                    update = {self.progress: progress_line(event, run, count)}
                    if event.previews:
                        update[self.previews] = [self._show(p) for p in event.previews]
                    yield update
                    continue
                seed = event.seed
                first_seed = seed if first_seed is None else first_seed
                for made in event.images:
                    path = save_png(made.image, made.parameters)
                    files.append(str(path))
                    made_now.append({"path": str(path), "parameters": made.parameters})
                    shown.append(self._show(made.image))
                info = describe(event.images[0].parameters, event.seconds, event.warnings)
                scores = [m.prompt_match for m in event.images if m.prompt_match is not None]
                if scores:
                    info += " · prompt match " + ", ".join(f"{v:.2f}" for v in scores)
                infos.append(info)
            if interrupt.is_set():
                break
        history = (made_now + list(data[self.history] or []))[:HISTORY_LIMIT]
        gallery = [(self._show_path(h["path"]), h["parameters"]["prompt"][:80]) for h in history]
        newest = history[0]["parameters"] if history else None
        yield {
            self.previews: shown,  # the finished images stay where the previews were
            self.progress: "",
            self.gallery: gr.Gallery(gallery, selected_index=0 if gallery else None),
            self.info: "\n\n".join(infos),
            self.files: files,
            self.last_seed: "" if first_seed is None else str(first_seed),
            self.history: history,
            self.chosen: newest,
            self.chosen_info: describe(newest) if newest else "",
            self.chosen_path: history[0]["path"] if history else None,
        }

    def _show_path(self, path: str) -> Image.Image:
        with Image.open(path) as img:
            return self._show(img.convert("RGB"))

    def interrupt(self, request: gr.Request = None) -> None:
        self._interrupts.stop(request)

    @staticmethod
    def select(history, evt: gr.SelectData):
        """A gallery click: that image's parameters, ready to reuse."""
        chosen = (history or [])[evt.index]
        return chosen["parameters"], describe(chosen["parameters"]), chosen["path"]

    @user_errors
    def copies(self, path):
        """The chosen image against the training pictures (on demand: generation never waits for it)."""
        if not path:
            raise ValueError(EN["image_pick_first"])
        with Image.open(path) as img:
            picture = img.convert("RGB")
        check = self.pipe.copies(picture)
        return copies_markdown(check), gr.update(value=copies_gallery(check, picture), visible=True)

    def reuse_parameters(self, parameters):
        """Put a chosen image's parameters back into the controls (prompt, seed, steps, ...)."""
        if not parameters:
            raise refused(t("image_pick_first"))
        return self.controls.write(parameters)

    @user_errors
    def restore_from_png(self, path):
        if not path:
            return {}
        return self.controls.write(read_parameters(path))

    def generator_changed(self, generator: str):
        """Steps, guidance, sampler, negative prompt and size mean nothing to the one-step GAN; the few-step
        student fixes guidance, sampler and negative prompt, and draws in its own few steps."""
        fixed = DIFFUSION_ONLY if generator == "gan" else STUDENT_FIXED if generator == "student" else ()
        update = {self.controls[n]: gr.update(interactive=n not in fixed) for n in DIFFUSION_ONLY}
        if generator == "student":
            update[self.controls["num_inference_steps"]] = gr.update(
                value=self.pipe.student.student_steps, interactive=True
            )
        elif generator == "diffusion":
            update[self.controls["num_inference_steps"]] = gr.update(
                value=self.cfg.num_inference_steps, interactive=True
            )
        return update

    def live_draw(self, live: bool, prompt: str, seed, last_seed, upscale: bool):
        """The live mode: the student's picture of the prompt as it stands, with the seed box's seed (or the
        last run's, or 0 while the box says random)."""
        if not live:
            return gr.update(visible=False), gr.skip()
        if not (prompt or "").strip():
            return gr.update(value=None, visible=True), ""
        try:
            seed = validation.as_int("seed", seed if seed not in (None, "") else -1)
            if seed < 0:
                seed = int(last_seed) if str(last_seed or "").isdigit() else 0
            result = self.pipe.live(prompt, seed, bool(upscale))
        except ValueError as err:  # shown in place, not as a toast per keystroke
            return gr.update(visible=True), f"⚠️ {err}"
        made = result.images[0]
        line = f"Live · {describe(made.parameters, result.seconds, result.warnings)}"
        if made.prompt_match is not None:
            line += f" · prompt match {made.prompt_match:.2f}"
        return gr.update(value=self._show(made.image), visible=True), line

    @user_errors
    def gan_explore(self, prompt, last_seed, seed, *offsets):
        made = self.pipe.gan_explore({"prompt": prompt, "seed": last_seed or seed}, list(offsets))
        return self._show(made.image), describe(made.parameters)

    # -- API: plain inputs, plain outputs -------------------------------------------------------------
    @user_errors_stream
    def api_generate(self, request: gr.Request = None, **params):
        """Streams ``([], {"step", "steps", "eta_s"})`` after each denoising step, then the PNG files (with
        their parameters) and the info dict. /image_interrupt from the same client session stops it after the
        current step and keeps the pictures; cancelling the job or leaving ends it there too."""
        interrupt = self._interrupts.arm(request)
        for result in self.pipe.generate(params, interrupt, preview_every_s=None):
            if isinstance(result, ImageProgress):
                # Each update is also where Gradio can close a cancelled or abandoned job (between steps).
                yield [], {"step": result.step, "steps": result.total, "eta_s": round(result.eta_s, 2)}
        files = [FileData(path=str(save_png(m.image, m.parameters))).model_dump() for m in result.images]
        info = {
            "seed": result.seed,
            "seconds": round(result.seconds, 3),
            "interrupted": result.interrupted,
            "warnings": result.warnings,
            "parameters": [m.parameters for m in result.images],
            "prompt_match": [m.prompt_match for m in result.images],
            "unet": result.unet,
            "decoder": result.decoder,
            "dtype": str(self.pipe.dtype).removeprefix("torch."),
        }
        yield files, info

    @user_errors
    def api_live(self, prompt, seed, upscale, request: gr.Request = None):
        """One picture by the few-step student in its own few steps (what the Image tab's Live mode shows)."""
        result = self.pipe.live(prompt, seed, upscale)
        made = result.images[0]
        info = {
            **made.parameters,
            "seconds": round(result.seconds, 3),
            "warnings": result.warnings,
            "prompt_match": made.prompt_match,
            "unet": result.unet,
            "decoder": result.decoder,
            "dtype": str(self.pipe.dtype).removeprefix("torch."),
        }
        return FileData(path=str(save_png(made.image, made.parameters))).model_dump(), info

    @user_errors
    def api_copies(self, image, request: gr.Request = None):
        """The training pictures nearest to ``image`` (meaning and pixels), their licences, and whether it is a
        likely copy."""
        path = received_file("image", image)
        if not path:
            raise ValueError("no image was given")
        try:
            with Image.open(path) as img:
                picture = img.convert("RGB")
        except (OSError, Image.DecompressionBombError) as err:
            raise ValueError(f"that file is not a readable picture ({type(err).__name__})") from None
        return copy_check_dict(self.pipe.copies(picture))

    @user_errors
    def api_gan(self, prompt, seed, z_offset, request: gr.Request = None):
        """One GAN image; z_offset moves the first len(z_offset) noise dimensions."""
        made = self.pipe.gan_explore({"prompt": prompt, "seed": seed}, z_offset)
        path = save_png(made.image, made.parameters)
        return FileData(path=str(path)).model_dump(), {**made.parameters, "prompt_match": made.prompt_match}

    @staticmethod
    @user_errors
    def api_read_parameters(png, request: gr.Request = None):
        """The parameters stored in a PNG made by this app."""
        return read_parameters(received_file("png", png))


def build_image_tab(pipe: ImagePipeline | None, failure: LoadFailure | None) -> ImageTab | None:
    if pipe is None:
        failure_notice(failure)
        return None
    return ImageTab(pipe)
