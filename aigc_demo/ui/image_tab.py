"""The Image tab: text-to-image with the diffusion model or the GAN. Layout and wiring only.

A1111-style ergonomics: live previews and a progress line with ETA while it denoises, Interrupt (stops
within one step and keeps what exists), a session gallery whose images restore their parameters with one
click, PNG downloads that carry their parameters, and a drop zone that reads them back.
"""

from __future__ import annotations

import logging

import gradio as gr

from aigc_demo.compute import on_compute_thread
from aigc_demo.config import ImageConfig
from aigc_demo.device import gpu_task
from aigc_demo.imaging import upscale
from aigc_demo.pipelines.image import ImageParams, ImagePipeline, ImageProgress, Interrupt
from aigc_demo.provenance import read_parameters, save_png
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.errors import user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.strings import EN, t
from aigc_demo.ui.text_tab import HEAVY, build_failure_notice

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


def describe(params: dict, seconds: float | None = None, warnings=()) -> str:
    parts = [f"seed `{params['seed']}`"]
    if params.get("generator") == "gan":
        parts.append("GAN, one step")
    else:
        parts += [
            f"{params['num_inference_steps']} steps",
            params["scheduler"],
            f"guidance {params['guidance_scale']:g}",
        ]
    parts.append(f"{params['width']}x{params['height']}")
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    text = " · ".join(parts)
    for w in warnings:
        text += f"\n\n⚠️ {w}"
    return text


class ImageHandlers:
    def __init__(self, pipe: ImagePipeline, cfg: ImageConfig):
        self.pipe = pipe
        self.cfg = cfg
        self._interrupts = SessionStops(Interrupt)  # one per browser session

    def _show(self, image):
        return upscale(image, self.cfg.display_size)

    @staticmethod
    def params(
        prompt, negative, generator, steps, guidance, scheduler, seed, batch_size, width, height
    ) -> ImageParams:
        return ImageParams(
            prompt=prompt,
            negative_prompt=negative,
            generator=generator,
            num_inference_steps=steps,
            guidance_scale=guidance,
            scheduler=scheduler,
            seed=seed,
            batch_size=batch_size,
            width=width,
            height=height,
        )

    @user_errors_stream
    @on_compute_thread
    def generate(
        self, history, batch_count, prompt, negative, generator, steps, guidance, scheduler, seed, batch_size,
        width, height, request: gr.Request = None,
    ):  # fmt: skip
        """Streams (previews, progress, gallery, info, files, seed, history, chosen, chosen info); batch_count
        runs one after another. This click's images go first, in seed order (A1111's), and the gallery ends
        on the first of them, whose seed the seed box shows and which "reuse" takes.

        Explicit parameters, not *values: Gradio injects ``request`` by position in the signature.
        """
        interrupt = self._interrupts.arm(request)
        params = self.params(
            prompt, negative, generator, steps, guidance, scheduler, seed, batch_size, width, height
        )
        count = _batch_count(batch_count, self.cfg.max_batch_count)
        files, infos, made_now, seed, first_seed = [], [], [], None, None
        for run in range(count):
            if seed is not None:  # later runs continue the seed sequence, as A1111's batch count does
                params = _with_seed(params, seed + params.batch_size)
            for event in self.pipe.generate(params, interrupt):
                if isinstance(event, ImageProgress):
                    bar = _progress_line(event, run, count)
                    yield (
                        [self._show(p) for p in event.previews] or gr.skip(),
                        bar,
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                        gr.skip(),
                    )
                    continue
                seed = event.seed
                first_seed = seed if first_seed is None else first_seed
                params = _with_seed(params, seed)
                for made in event.images:
                    path = save_png(made.image, made.parameters)
                    files.append(str(path))
                    made_now.append({"path": str(path), "parameters": made.parameters})
                info = describe(event.images[0].parameters, event.seconds, event.warnings)
                scores = [m.prompt_match for m in event.images if m.prompt_match is not None]
                if scores:
                    info += " · prompt match " + ", ".join(f"{v:.2f}" for v in scores)
                infos.append(info)
            if interrupt.is_set():
                break
        history = (made_now + list(history or []))[:HISTORY_LIMIT]
        gallery = [(self._show_path(h["path"]), h["parameters"]["prompt"][:80]) for h in history]
        newest = history[0]["parameters"] if history else None
        yield (
            [],
            "",
            gr.Gallery(gallery, selected_index=0 if gallery else None),
            "\n\n".join(infos),
            files,
            first_seed if first_seed is not None else gr.skip(),
            history,
            newest,
            describe(newest) if newest else "",
        )

    def _show_path(self, path: str):
        from PIL import Image

        with Image.open(path) as img:
            return self._show(img.convert("RGB"))

    def interrupt(self, request: gr.Request = None) -> None:
        self._interrupts.stop(request)

    @staticmethod
    def select(history, evt: gr.SelectData):
        """A gallery click: that image's parameters, ready to reuse."""
        chosen = (history or [])[evt.index]
        return chosen["parameters"], describe(chosen["parameters"])

    @staticmethod
    def reuse(parameters):
        """Put a chosen image's parameters back into the controls (prompt, seed, steps, ...)."""
        if not parameters:
            raise gr.Error(EN["image_pick_first"])
        return _controls_from(parameters)

    @staticmethod
    @user_errors
    def restore_from_png(path):
        if not path:
            return [gr.skip()] * 10
        return _controls_from(read_parameters(path))

    @user_errors
    @on_compute_thread
    def gan_explore(self, prompt, seed, *offsets):
        made = self.pipe.gan_explore(ImageParams(prompt=prompt, seed=seed), list(offsets))
        return self._show(made.image), describe(made.parameters)

    # -- API: plain inputs, plain outputs -----------------------------------------------------------
    @user_errors
    @on_compute_thread
    def api_generate(
        self,
        prompt,
        negative_prompt,
        num_inference_steps,
        guidance_scale,
        scheduler,
        seed,
        batch_size,
        width,
        height,
        generator,
        request: gr.Request = None,
    ):
        """One finished generation. /image_interrupt from the same client session stops it after a step."""
        interrupt = self._interrupts.arm(request)
        params = ImageParams(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            scheduler=scheduler,
            seed=seed,
            batch_size=batch_size,
            width=width,
            height=height,
            generator=generator,
        )
        result = self.pipe(params, interrupt)
        files = [str(save_png(m.image, m.parameters)) for m in result.images]
        info = {
            "seed": result.seed,
            "seconds": round(result.seconds, 3),
            "interrupted": result.interrupted,
            "warnings": result.warnings,
            "parameters": [m.parameters for m in result.images],
            "prompt_match": [m.prompt_match for m in result.images],
            "unet": result.unet,
            "dtype": str(self.pipe.dtype).removeprefix("torch."),
        }
        return files, info

    @user_errors
    @on_compute_thread
    def api_gan(self, prompt, seed, z_offset):
        """One GAN image; z_offset moves the first len(z_offset) noise dimensions."""
        if not isinstance(z_offset, list):
            raise ValueError("z_offset must be a list of numbers, e.g. [0.5, -1.0]")
        made = self.pipe.gan_explore(ImageParams(prompt=prompt, seed=seed), z_offset)
        return str(save_png(made.image, made.parameters)), {
            **made.parameters,
            "prompt_match": made.prompt_match,
        }

    @staticmethod
    @user_errors
    def api_read_parameters(path):
        return read_parameters(path)


def _batch_count(value, limit: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch count must be a whole number, not {value!r}") from None
    if not 1 <= number <= limit:
        raise ValueError(f"batch count must be between 1 and {limit}, not {number}")
    return number


def _with_seed(params: ImageParams, seed: int) -> ImageParams:
    from dataclasses import replace

    return replace(params, seed=seed)


def _progress_line(event: ImageProgress, run: int, count: int) -> str:
    done = event.step / event.total
    bar = "█" * round(done * 20) + "░" * (20 - round(done * 20))
    batch = f" · batch {run + 1}/{count}" if count > 1 else ""
    return (
        f"`{bar}` step {event.step}/{event.total} · {event.elapsed_s:.1f} s · ETA {event.eta_s:.1f} s{batch}"
    )


def _controls_from(p: dict):
    """Values for [prompt, negative, generator, steps, guidance, scheduler, seed, batch, width, height]."""
    keep = gr.skip()
    return (
        p.get("prompt", keep),
        p.get("negative_prompt", keep),
        p.get("generator", keep),
        p.get("num_inference_steps", keep),
        p.get("guidance_scale", keep),
        p.get("scheduler", keep),
        p.get("seed", keep),
        keep,
        p.get("width", keep),
        p.get("height", keep),
    )


def build_image_tab(pipe: ImagePipeline | None, failure: LoadFailure | None, cfg: ImageConfig) -> None:
    if pipe is None:
        build_failure_notice(failure)
        return
    h = ImageHandlers(pipe, cfg)
    has_diffusion = pipe.sd is not None
    native = pipe.native_size if has_diffusion else 64
    size_step = native // 4 if has_diffusion else 64
    history = gr.State([])
    chosen = gr.State(None)

    gr.Markdown(t("image_intro"))
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(
                label=t("image_prompt"),
                placeholder=t("image_prompt_placeholder"),
                lines=2,
                elem_id="image-prompt",
            )
            negative = gr.Textbox(label=t("image_negative"), lines=1)
            generator = gr.Radio(
                [(EN["image_diffusion"], "diffusion"), (EN["image_gan"], "gan")],
                value="diffusion" if has_diffusion else "gan",
                label=t("image_generator"),
                interactive=pipe.gan is not None and has_diffusion,
            )
            with gr.Row():
                go = gr.Button(t("generate"), variant="primary", elem_id="image-generate")
                stop = gr.Button(t("image_interrupt"), variant="stop", elem_id="image-interrupt")
            with gr.Accordion(t("parameters"), open=True):
                steps = gr.Slider(
                    1,
                    cfg.max_steps,
                    cfg.num_inference_steps,
                    step=1,
                    label=t("image_steps"),
                    elem_id="image-steps",
                )
                guidance = gr.Slider(
                    0, cfg.max_guidance, cfg.guidance_scale, step=0.5, label=t("image_guidance")
                )
                scheduler = gr.Dropdown(pipe.scheduler_names, value=cfg.scheduler, label=t("image_scheduler"))
                with gr.Row():
                    seed = gr.Number(-1, precision=0, label=t("seed"), elem_id="image-seed")
                    last_seed = gr.Number(
                        None,
                        precision=0,
                        label=t("image_last_seed"),
                        interactive=False,
                        elem_id="image-last-seed",
                    )
                with gr.Row():
                    random_seed = gr.Button(t("random_seed"), size="sm")
                    reuse_seed = gr.Button(t("reuse_seed"), size="sm")
                with gr.Row():
                    batch_size = gr.Slider(
                        1,
                        cfg.max_batch_size,
                        1,
                        step=1,
                        label=t("image_batch_size"),
                        elem_id="image-batch-size",
                    )
                    batch_count = gr.Slider(1, cfg.max_batch_count, 1, step=1, label=t("image_batch_count"))
                with gr.Row():
                    width = gr.Slider(
                        max(size_step, native // 2),
                        native * 2,
                        native,
                        step=size_step,
                        label=t("image_width"),
                    )
                    height = gr.Slider(
                        max(size_step, native // 2),
                        native * 2,
                        native,
                        step=size_step,
                        label=t("image_height"),
                    )
            gr.Examples(
                EXAMPLES,
                [prompt, seed],
                label=t("examples"),
                example_labels=[f"{p} · seed {s}" for p, s in EXAMPLES],  # no table header to translate
            )
            png_drop = gr.File(
                label=t("image_drop_png"), file_types=[".png"], type="filepath", elem_id="image-drop"
            )
        with gr.Column(scale=1):
            progress = gr.Markdown(elem_id="image-progress")
            previews = gr.Gallery(
                label=t("image_preview"),
                columns=4,
                height=200,
                allow_preview=False,
                object_fit="contain",
                format="png",  # Gradio's default webp is lossy: it smears the upscaled pixels
                elem_id="image-previews",
                elem_classes=["pixels"],
            )
            info = gr.Markdown(elem_id="image-info")
            gallery = gr.Gallery(
                label=t("image_gallery"),
                columns=4,
                height=420,
                preview=True,  # the newest image large and whole, the session's others as thumbnails below
                object_fit="contain",
                format="png",
                elem_id="image-gallery",
                elem_classes=["pixels"],
            )
            with gr.Row():
                chosen_info = gr.Markdown()
                reuse = gr.Button(t("image_reuse"), elem_id="image-reuse")
            files = gr.File(
                label=t("image_download"), file_count="multiple", interactive=False, elem_id="image-files"
            )

    if pipe.gan is not None:
        with gr.Accordion(t("image_gan_explore"), open=False):
            gr.Markdown(t("image_gan_explore_hint"))
            with gr.Row():
                with gr.Column():
                    z_sliders = [
                        gr.Slider(-3, 3, 0, step=0.1, label=f"z[{i}]")
                        for i in range(min(N_Z_SLIDERS, pipe.gan_z_dim))
                    ]
                with gr.Column():
                    gan_image = gr.Image(
                        interactive=False,
                        height=256,
                        show_label=False,
                        format="png",
                        elem_id="gan-image",
                        elem_classes=["pixels"],
                    )
                    gan_info = gr.Markdown()
        for slider in z_sliders:
            slider.input(
                h.gan_explore,
                [prompt, last_seed, *z_sliders],
                [gan_image, gan_info],
                trigger_mode="always_last",
                show_progress="hidden",
                api_visibility="undocumented",
            )

    controls = [prompt, negative, generator, steps, guidance, scheduler, seed, batch_size, width, height]
    for trigger in (go.click, prompt.submit):
        trigger(
            gpu_task(h.generate),
            [history, batch_count, *controls],
            [previews, progress, gallery, info, files, last_seed, history, chosen, chosen_info],
            api_visibility="undocumented",
            concurrency_id=HEAVY,
        )
    # Interrupt asks the running job to stop after this step (and keep its images); not a cancel.
    stop.click(h.interrupt, None, None, queue=False, api_name="image_interrupt")
    random_seed.click(lambda: -1, None, seed, queue=False, api_visibility="undocumented")
    reuse_seed.click(
        lambda s: s if s is not None else -1, last_seed, seed, queue=False, api_visibility="undocumented"
    )
    gallery.select(h.select, [history], [chosen, chosen_info], api_visibility="undocumented")
    reuse.click(h.reuse, [chosen], controls, api_visibility="undocumented")
    png_drop.upload(h.restore_from_png, [png_drop], controls, api_visibility="undocumented")

    # API-only endpoints with plain inputs.
    with gr.Row(visible=False):
        api_in = [
            gr.Textbox(),
            gr.Textbox(),
            gr.Number(),
            gr.Number(),
            gr.Textbox(),
            gr.Number(),
            gr.Number(),
            gr.Number(),
            gr.Number(),
            gr.Textbox(),
        ]
        api_files = gr.File(file_count="multiple")
        api_info = gr.JSON()
        api_png = gr.File(type="filepath")
        api_params = gr.JSON()
        api_z = gr.JSON()
        api_gan_file = gr.File()
        api_go = gr.Button()
        api_read = gr.Button()
        api_gan = gr.Button()
    api_go.click(
        gpu_task(h.api_generate),
        api_in,
        [api_files, api_info],
        api_name="image_generate",
        concurrency_id=HEAVY,
    )
    if pipe.gan is not None:
        api_gan.click(
            h.api_gan,
            [api_in[0], api_in[5], api_z],
            [api_gan_file, api_params],
            api_name="image_gan",
            concurrency_id=HEAVY,
        )
    api_read.click(h.api_read_parameters, [api_png], [api_params], api_name="image_read_parameters")
