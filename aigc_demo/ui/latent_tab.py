"""The Latent tab: see what an autoencoder learned. Layout and wiring only; the pipeline does the work."""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np

from aigc_demo.compute import on_compute_thread
from aigc_demo.imaging import upscale
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.latent import LatentPipeline
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.errors import user_errors
from aigc_demo.ui.strings import EN, t
from aigc_demo.ui.text_tab import HEAVY, build_failure_notice

log = logging.getLogger(__name__)

N_SLIDERS = 8


class LatentHandlers:
    def __init__(self, pipe: LatentPipeline, display_size: int):
        self.pipe = pipe
        self.size = display_size

    def _show(self, img):
        return upscale(img, self.size)

    @user_errors
    @on_compute_thread
    def from_upload(self, editor_value):
        """Reconstruct an uploaded or sketched image; reset the sliders to the new latent."""
        image = editor_value.get("composite") if isinstance(editor_value, dict) else editor_value
        if image is None:
            raise ValueError("Upload or draw an image first.")
        return self._reconstruction(self.pipe.reconstruct(image))

    @user_errors
    @on_compute_thread
    def from_corpus(self, items, evt: gr.SelectData):
        row = items[evt.index]["row"]
        latent = self.pipe.corpus_latent(row)
        image = self.pipe.decode(latent)
        caption = items[evt.index]["caption"]
        return (
            self._show(image),
            self._show(image),
            f"**{caption}** (corpus latent, row {row}; both views show its decode: the app keeps latents, "
            "not the corpus pictures)",
            latent,
            *[0.0] * N_SLIDERS,
        )

    def _reconstruction(self, rec):
        return (
            self._show(rec.original),
            self._show(rec.reconstruction),
            f"PSNR **{rec.psnr_db:.1f} dB**",
            rec.latent,
            *[0.0] * N_SLIDERS,
        )

    @user_errors
    @on_compute_thread
    def search(self, query):
        items = self.pipe.search(query or "", limit=24)
        thumbs = [(self._show(self.pipe.decode(self.pipe.corpus_latent(i.row))), i.caption) for i in items]
        return thumbs, [{"row": i.row, "caption": i.caption} for i in items]

    @user_errors
    @on_compute_thread
    def steer(self, latent, *coefficients):
        if latent is None:
            return None
        return self._show(self.pipe.steer(np.asarray(latent, dtype=np.float32), coefficients))

    @user_errors
    @on_compute_thread
    def sample(self, n, seed, temperature, source):
        result = self.pipe.sample(
            int(n), seed=None if seed is None or int(seed) < 0 else int(seed), temperature=float(temperature)
        )
        return [
            self._show(img) for img in result.images
        ], f"seed `{result.seed}` (type it in to get these again)"

    @user_errors
    @on_compute_thread
    def set_b(self, latent):
        if latent is None:
            raise ValueError("Pick an image first; it becomes endpoint B.")
        return latent, self._show(self.pipe.decode(np.asarray(latent, dtype=np.float32)))

    @user_errors
    @on_compute_thread
    def interpolate(self, a, b, steps, method):
        if a is None or b is None:
            raise ValueError("Choose two images: the current one (A) and one set as B.")
        result = self.pipe.interpolate(
            np.asarray(a, np.float32), np.asarray(b, np.float32), int(steps), method
        )
        folder = fresh_output_dir("walk-")
        gif, mp4 = self.pipe.write_animation(result.frames, folder)
        return upscale(result.strip, 96), str(gif), str(mp4)

    @user_errors
    @on_compute_thread
    def attribute(self, latent, positive, negative, strength):
        if latent is None:
            raise ValueError("Pick an image first.")
        attr = self.pipe.attribute_vector(positive, negative)
        image = self.pipe.apply(np.asarray(latent, np.float32), attr.vector, float(strength))
        note = f"“{attr.positive}” ({attr.n_positive} items) − “{attr.negative}” ({attr.n_negative} items)"
        return self._show(image), note

    @user_errors
    @on_compute_thread
    def code(self, latent):
        """The latent itself: a bar chart of the vector, or one image per channel of a spatial latent."""
        if latent is None:
            return None if self.pipe.kind == "vector" else []
        images = self.pipe.channels(np.asarray(latent, dtype=np.float32))
        return images[0] if self.pipe.kind == "vector" else images

    # ---- API-only handlers: plain inputs, plain outputs ------------------------------------------
    @user_errors
    @on_compute_thread
    def api_reconstruct(self, image_path):
        """Encode an image file and decode it back; returns the reconstruction, PSNR and the latent."""
        if not image_path:
            raise ValueError("image is missing")
        rec = self.pipe.reconstruct(image_path)
        return self._show(rec.reconstruction), {"psnr_db": rec.psnr_db, "latent": rec.latent.tolist()}

    @user_errors
    @on_compute_thread
    def api_steer(self, row, coefficients):
        """Decode corpus item `row` moved by `coefficients` (std units) along the principal directions."""
        if not isinstance(coefficients, list):
            raise ValueError("coefficients must be a list of numbers")
        latent = self.pipe.corpus_latent(_as_row(row))
        return self._show(self.pipe.steer(latent, coefficients))

    @user_errors
    @on_compute_thread
    def map_click(self, evt: gr.SelectData):
        x, y = evt.index
        latent = self.pipe.pixel_to_latent(x, y)
        near = self.pipe.nearest(latent, k=5)
        lines = "\n".join(f"- {item.char} {item.caption} (distance {d:.2f})" for item, d in near)
        return self._show(self.pipe.decode(latent)), lines, latent


def _as_row(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"row must be a whole number, not {value!r}") from None


def build_latent_tab(
    pipe: LatentPipeline | None, failure: LoadFailure | None, display_size: int = 256
) -> None:
    if pipe is None:
        build_failure_notice(failure)
        return
    h = LatentHandlers(pipe, display_size)
    heavy = {"concurrency_id": HEAVY, "api_visibility": "undocumented"}
    latent = gr.State(None)
    latent_b = gr.State(None)
    # Some corpus items from the start, so there is always something to click.
    first_thumbs, first_items = h.search("") if pipe.has_atlas else ([], [])
    corpus_items = gr.State(first_items)

    gr.Markdown(t("latent_intro"))
    with gr.Row():
        with gr.Column(scale=1):
            editor = gr.ImageEditor(label=t("latent_input"), type="pil", height=300, elem_id="latent-input")
            encode = gr.Button(t("latent_encode"), variant="primary")
            query = gr.Textbox(label=t("latent_search"), placeholder=t("latent_search_placeholder"))
            results = gr.Gallery(
                first_thumbs,
                label=t("latent_corpus"),
                columns=5,  # Gradio's 100 px minimum per column: 6 overflowed the half-width column
                height=220,
                allow_preview=False,
                object_fit="contain",
                format="png",
                elem_classes=["pixels"],
                elem_id="latent-corpus",
            )
        with gr.Column(scale=1):
            with gr.Row():
                original = gr.Image(
                    label=t("latent_original"),
                    interactive=False,
                    height=256,
                    format="png",
                    elem_classes=["pixels"],
                )
                reconstruction = gr.Image(
                    label=t("latent_reconstruction"),
                    interactive=False,
                    height=256,
                    format="png",
                    elem_classes=["pixels"],
                )
            rec_info = gr.Markdown(elem_id="latent-psnr")
            # A vector latent is one bar chart, shown whole in an image view; a spatial one is a gallery of channels.
            if pipe.kind == "vector":
                code = gr.Image(
                    label=t("latent_code"), interactive=False, height=170, format="png", elem_id="latent-code"
                )
            else:
                code = gr.Gallery(
                    label=t("latent_code"),
                    columns=4,
                    height=170,
                    allow_preview=False,
                    object_fit="contain",
                    format="png",
                    elem_classes=["pixels"],
                    elem_id="latent-code",
                )
            steered = gr.Image(
                label=t("latent_steered"),
                interactive=False,
                height=256,
                format="png",
                elem_classes=["pixels"],
                elem_id="latent-steered",
            )
            n_dirs = min(N_SLIDERS, pipe.directions)
            ratios = pipe.explained_variance_ratio
            sliders = [
                gr.Slider(
                    -3,
                    3,
                    0,
                    step=0.1,
                    label=f"PC{i + 1} ({ratios[i] * 100:.1f} %)",
                    visible=i < n_dirs,
                    elem_id=f"pc-slider-{i}",
                )
                for i in range(N_SLIDERS)
            ]

    with gr.Accordion(t("latent_samples"), open=False):
        with gr.Row():
            n = gr.Slider(1, 32, 16, step=1, label=t("latent_count"))
            temperature = gr.Slider(0.0, 2.0, 1.0, step=0.05, label=t("temperature_prior"))
            seed = gr.Number(-1, precision=0, label=t("seed"))
            source = gr.Radio(
                [(EN["latent_source_corpus"], "corpus"), (EN["latent_source_prior"], "prior")],
                value="corpus" if pipe.has_atlas else "prior",
                label=t("latent_source"),
            )
            sample_btn = gr.Button(t("generate"), variant="primary", elem_id="latent-sample-btn")
        sample_info = gr.Markdown()
        samples = gr.Gallery(
            columns=8,
            height=300,
            show_label=False,
            format="png",
            elem_classes=["pixels"],
            elem_id="latent-samples",
        )

    with gr.Accordion(t("latent_interpolate"), open=False):
        with gr.Row():
            set_b = gr.Button(t("latent_set_b"), elem_id="latent-set-b")
            b_image = gr.Image(
                label="B", interactive=False, height=128, format="png", elem_classes=["pixels"]
            )
            steps = gr.Slider(3, 32, 10, step=1, label=t("latent_steps"))
            method = gr.Radio(["slerp", "lerp"], value="slerp", label=t("latent_method"))
            walk = gr.Button(t("generate"), variant="primary", elem_id="latent-walk-btn")
        strip = gr.Image(
            label=t("latent_strip"),
            interactive=False,
            format="png",
            elem_classes=["pixels"],
            elem_id="latent-strip",
        )
        with gr.Row():
            gif = gr.Image(label="GIF", interactive=False, height=256)
            mp4 = gr.Video(label="MP4", height=256, elem_id="latent-mp4", autoplay=True, loop=True)

    with gr.Accordion(t("latent_attributes"), open=False):
        with gr.Row():
            positive = gr.Textbox("smiling", label=t("latent_positive"))
            negative = gr.Textbox("neutral", label=t("latent_negative"))
            strength = gr.Slider(-3, 3, 1.0, step=0.1, label=t("latent_strength"))
            apply_btn = gr.Button(t("generate"), variant="primary")
        with gr.Row():
            attr_image = gr.Image(
                interactive=False, height=256, show_label=False, format="png", elem_classes=["pixels"]
            )
            attr_info = gr.Markdown()

    with gr.Accordion(t("latent_map"), open=False):
        with gr.Row():
            corpus_map = gr.Image(
                value=pipe.corpus_map().image if pipe.has_atlas else None,
                interactive=False,
                label=t("latent_map_hint"),
                elem_id="latent-map",
                height=512,
                format="png",
            )
            with gr.Column():
                map_image = gr.Image(
                    interactive=False, height=256, show_label=False, format="png", elem_classes=["pixels"]
                )
                map_info = gr.Markdown(elem_id="latent-map-info")

    # API-only endpoints with plain inputs (the editor's layered value is awkward for API clients).
    with gr.Row(visible=False):
        api_image = gr.File(type="filepath")  # our own checks open it, not gradio's PIL preprocessing
        api_row = gr.Number(precision=0)
        api_coefficients = gr.JSON()
        api_result_image = gr.Image(format="png")  # lossless for API clients (the default is webp)
        api_result_info = gr.JSON()
        api_reconstruct = gr.Button()
        api_steer = gr.Button()
    api_reconstruct.click(
        h.api_reconstruct,
        [api_image],
        [api_result_image, api_result_info],
        api_name="latent_reconstruct",
        concurrency_id=HEAVY,
    )
    api_steer.click(
        h.api_steer,
        [api_row, api_coefficients],
        [api_result_image],
        api_name="latent_steer",
        concurrency_id=HEAVY,
    )

    rec_outputs = [original, reconstruction, rec_info, latent, *sliders]
    picked = [
        encode.click(h.from_upload, [editor], rec_outputs, api_name="ui_latent_encode", **heavy),
        results.select(h.from_corpus, [corpus_items], rec_outputs, api_visibility="undocumented"),
    ]
    for event in picked:
        event.then(h.steer, [latent, *sliders], [steered], api_visibility="undocumented").then(
            h.code, [latent], [code], api_visibility="undocumented"
        )
    query.submit(
        h.search, [query], [results, corpus_items], api_name="latent_search", api_visibility="undocumented"
    )
    for slider in sliders:
        # "always_last" drops intermediate positions while one decode runs: the image follows the hand.
        slider.input(
            h.steer,
            [latent, *sliders],
            [steered],
            trigger_mode="always_last",
            show_progress="hidden",
            api_visibility="undocumented",
        )
    sample_btn.click(
        h.sample, [n, seed, temperature, source], [samples, sample_info], api_name="latent_sample", **heavy
    )
    set_b.click(h.set_b, [latent], [latent_b, b_image], api_visibility="undocumented")
    walk.click(
        h.interpolate,
        [latent, latent_b, steps, method],
        [strip, gif, mp4],
        api_name="latent_interpolate",
        **heavy,
    )
    apply_btn.click(
        h.attribute,
        [latent, positive, negative, strength],
        [attr_image, attr_info],
        api_name="latent_attribute",
        **heavy,
    )
    corpus_map.select(h.map_click, None, [map_image, map_info, latent], api_visibility="undocumented").then(
        h.steer, [latent, *sliders], [steered], api_visibility="undocumented"
    )
