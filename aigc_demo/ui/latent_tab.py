"""The Latent tab: see what an autoencoder learned. Layout and wiring only; the pipeline does the work.

The request controls come from ``SampleParams``, ``InterpolationParams`` and ``AttributeParams``
(``pipelines/latent.py``) and bind to them by name; so do the API endpoints, which take plain arguments with
the same defaults. Handlers return ``{component: value}`` for what changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image

from aigc_demo.imaging import upscale
from aigc_demo.media import write_animation
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.latent import LatentPipeline
from aigc_demo.provenance.content_credentials import sign_if_enabled
from aigc_demo.provenance.parameters import new_watermark
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import user_errors
from aigc_demo.ui.shared import HEAVY, LIGHT, failure_notice, pixel_gallery, received_file
from aigc_demo.ui.strings import t

log = logging.getLogger(__name__)

UI = {"api_visibility": "undocumented"}  # the page's own events; the API is the gr.api endpoints
STRIP_SIDE = 96  # interpolation strip frames, upscaled from the model's size


def _file(image: Image.Image, folder: Path, name: str) -> dict:
    """A signed PNG for an API client (Gradio moves it into its cache and serves it; lossless, unlike webp)."""
    path = folder / f"{name}.png"
    image.save(path, compress_level=1)
    return FileData(path=str(sign_if_enabled(path, {"tab": "latent", "output": name}))).model_dump()


def _caption(item) -> str:
    """Short enough to show whole under a thumbnail; the full caption appears once the item is picked."""
    return f"{item.char} {item.style}".strip()


class LatentHandlers:
    """The tab's components, its event handlers and its API endpoints, around one shared pipeline."""

    def __init__(self, pipe: LatentPipeline):
        self.pipe = pipe
        self.size = pipe.cfg.display_size

    def _show(self, image: Image.Image) -> Image.Image:
        return upscale(image, self.size)

    # -- layout ---------------------------------------------------------------------------------------
    def build(self) -> None:
        """Lay out the tab in the current Blocks context and wire its events and API endpoints."""
        pipe = self.pipe
        self.latent = gr.State(None)  # the current image's latent (numpy): what sliders and attributes move
        self.latent_b = gr.State(None)  # endpoint B of a walk
        # Some corpus items from the start, so there is always something to click.
        first = self.search("") if pipe.has_atlas else {}
        self.corpus_items = gr.State(first.get("items", []))

        gr.Markdown(t("latent_intro"))
        with gr.Row():
            with gr.Column(scale=1):
                self.editor = gr.ImageEditor(
                    label=t("latent_input"),
                    placeholder=t("latent_input_placeholder"),
                    layers=False,  # one sketch or photo: layers would only add an English "Layer 1"
                    type="pil",
                    height=300,
                    elem_id="latent-input",
                )
                self.encode = gr.Button(t("latent_encode"), variant="primary")
                self.query = gr.Textbox(label=t("latent_search"), placeholder=t("latent_search_placeholder"))
                self.results = pixel_gallery(
                    first.get("thumbs", []),
                    label=t("latent_corpus"),
                    columns=4,  # wide enough for a whole caption; 6 overflowed the half-width column
                    height=220,
                    allow_preview=False,
                    elem_id="latent-corpus",
                )
            with gr.Column(scale=1):
                with gr.Row():
                    self.original = self._image(t("latent_original"), elem_id="latent-original")
                    self.reconstruction = self._image(
                        t("latent_reconstruction"), elem_id="latent-reconstruction"
                    )
                self.rec_info = gr.Markdown(elem_id="latent-psnr")
                # A vector latent is one bar chart, shown whole; a spatial one is a gallery of channels.
                if pipe.kind == "vector":
                    self.code = gr.Image(
                        label=t("latent_code"),
                        interactive=False,
                        height=170,
                        format="png",
                        elem_id="latent-code",
                    )
                else:
                    self.code = pixel_gallery(
                        label=t("latent_code"),
                        columns=4,
                        height=170,
                        allow_preview=False,
                        elem_id="latent-code",
                    )
                self.steered = self._image(t("latent_steered"), elem_id="latent-steered")
                ratios = pipe.explained_variance_ratio
                limit = pipe.cfg.max_strength
                # One slider per direction the config allows; those this model lacks stay hidden at zero.
                self.sliders = [
                    gr.Slider(
                        -limit,
                        limit,
                        0,
                        step=0.1,
                        label=f"PC{i + 1} ({ratios[i] * 100:.1f} %)" if i < len(ratios) else f"PC{i + 1}",
                        visible=i < pipe.directions,
                        elem_id=f"pc-slider-{i}",
                    )
                    for i in range(pipe.cfg.max_directions)
                ]

        with gr.Accordion(t("latent_samples"), open=False):
            with gr.Row():
                self.sample_controls = Controls.build(
                    pipe.sample_schema,
                    ["n", "temperature", "seed", "source"],
                    seed={"elem_id": "latent-seed"},
                )
                self.sample_btn = gr.Button(t("generate"), variant="primary", elem_id="latent-sample-btn")
            self.sample_info = gr.Markdown(elem_id="latent-sample-info")
            self.samples = pixel_gallery(
                columns=8,
                height=300,
                show_label=False,
                elem_id="latent-samples",
            )

        with gr.Accordion(t("latent_interpolate"), open=False):
            with gr.Row():
                self.set_b_btn = gr.Button(t("latent_set_b"), elem_id="latent-set-b")
                self.b_image = gr.Image(
                    label="B", interactive=False, height=128, format="png", elem_classes=["pixels"]
                )
                self.walk_controls = Controls.build(pipe.interpolation_schema, ["steps", "method"])
                self.walk_btn = gr.Button(t("generate"), variant="primary", elem_id="latent-walk-btn")
            self.strip = self._image(t("latent_strip"), elem_id="latent-strip", height=None)
            with gr.Row():
                self.gif = gr.Image(label="GIF", interactive=False, height=256)
                self.mp4 = gr.Video(label="MP4", height=256, elem_id="latent-mp4", autoplay=True, loop=True)

        with gr.Accordion(t("latent_attributes"), open=False):
            with gr.Row():
                self.attribute_controls = Controls.build(
                    pipe.attribute_schema, ["positive", "negative", "strength"]
                )
                self.apply_btn = gr.Button(t("generate"), variant="primary", elem_id="latent-apply-btn")
            with gr.Row():
                self.attr_image = self._image(None, elem_id="latent-attribute-image")
                self.attr_info = gr.Markdown(elem_id="latent-attribute-info")

        with gr.Accordion(t("latent_map"), open=False):
            with gr.Row():
                self.corpus_map = gr.Image(
                    value=pipe.corpus_map().image if pipe.has_atlas else None,
                    interactive=False,
                    label=t("latent_map_hint"),
                    elem_id="latent-map",
                    height=512,
                    format="png",
                )
                with gr.Column():
                    self.map_image = self._image(None)
                    self.map_info = gr.Markdown(elem_id="latent-map-info")
        self._wire()

    @staticmethod
    def _image(label, elem_id: str | None = None, height: int | None = 256) -> gr.Image:
        """An output image of crisp pixels, PNG (Gradio's default webp would blur them)."""
        return gr.Image(
            label=label,
            show_label=label is not None,
            interactive=False,
            height=height,
            format="png",
            elem_classes=["pixels"],
            elem_id=elem_id,
        )

    def _wire(self) -> None:
        picked = [
            self.latent,
            self.original,
            self.reconstruction,
            self.rec_info,
            self.steered,
            self.code,
            *self.sliders,
        ]
        self.encode.click(self.from_upload, [self.editor], picked, concurrency_id=HEAVY, **UI)
        self.results.select(self.from_corpus, [self.corpus_items], picked, **UI)
        self.query.submit(self.search_ui, [self.query], [self.results, self.corpus_items], **UI)
        gr.on(
            # "always_last" drops intermediate positions while one decode runs: the image follows the hand.
            triggers=[s.input for s in self.sliders],
            fn=self.steer,
            inputs=[self.latent, *self.sliders],
            outputs=[self.steered],
            trigger_mode="always_last",
            show_progress="hidden",
            **UI,
            **LIGHT,
        )
        self.sample_btn.click(
            self.sample,
            self.sample_controls.components,
            [self.samples, self.sample_info],
            concurrency_id=HEAVY,
            **UI,
        )
        self.set_b_btn.click(self.set_b, [self.latent], [self.latent_b, self.b_image], **UI)
        self.walk_btn.click(
            self.interpolate,
            {self.latent, self.latent_b, *self.walk_controls.components},
            [self.strip, self.gif, self.mp4],
            concurrency_id=HEAVY,
            **UI,
        )
        self.apply_btn.click(
            self.attribute,
            {self.latent, *self.attribute_controls.components},
            [self.attr_image, self.attr_info],
            concurrency_id=HEAVY,
            **UI,
        )
        self.corpus_map.select(
            self.map_click,
            None,
            [self.map_image, self.map_info, *picked],
            **UI,
        )

        # The API: plain arguments with the schemas' defaults.
        pipe = self.pipe
        api(
            self.api_sample,
            api_name="latent_sample",
            schema=pipe.sample_schema,
            returns=tuple[list[FileData], dict],
            concurrency_id=HEAVY,
        )
        api(
            self.api_interpolate,
            api_name="latent_interpolate",
            schema=pipe.interpolation_schema,
            head=[
                arg("a_row", int, 0),
                arg("b_row", int, 1),
                arg("a_image", FileData | None, None),
                arg("b_image", FileData | None, None),
            ],
            returns=tuple[FileData, FileData, FileData],
            concurrency_id=HEAVY,
        )
        api(
            self.api_attribute,
            api_name="latent_attribute",
            schema=pipe.attribute_schema,
            head=[arg("row", int, 0)],
            returns=tuple[FileData, str],
            concurrency_id=HEAVY,
        )
        api(
            self.api_reconstruct,
            api_name="latent_reconstruct",
            head=[arg("image", FileData | None)],
            returns=tuple[FileData, dict],
            concurrency_id=HEAVY,
        )
        api(
            self.api_steer,
            api_name="latent_steer",
            head=[arg("row", int), arg("coefficients", list[float])],
            returns=FileData,
            **LIGHT,
        )
        api(
            self.api_search,
            api_name="latent_search",
            head=[arg("query", str, "")],
            returns=list[dict],
            **LIGHT,
        )

    # -- picking an image: every view of "the current latent" at once ---------------------------------
    def _picked(
        self,
        latent: np.ndarray,
        decoded: Image.Image,
        info: str,
        original: Image.Image | None,
        decode_label: str = "latent_decode",
    ) -> dict:
        """An upload shows its original beside the reconstruction; a corpus item or a map spot has no original
        here (the app keeps latents, not pictures), so it shows one image, labelled as the decode."""
        shown = self._show(decoded)
        return {
            self.latent: latent,
            self.original: gr.Image(
                value=self._show(original) if original is not None else None, visible=original is not None
            ),
            self.reconstruction: gr.Image(
                value=shown, label=t("latent_reconstruction" if original is not None else decode_label)
            ),
            self.rec_info: info,
            self.steered: shown,  # every slider back at zero: the latent itself
            self.code: self._code(latent),
            **{slider: 0.0 for slider in self.sliders},
        }

    def _code(self, latent: np.ndarray):
        """The latent itself: a bar chart of the vector, or one image per channel of a spatial latent."""
        images = self.pipe.channels(latent)
        return images[0] if self.pipe.kind == "vector" else images

    @user_errors
    def from_upload(self, editor_value) -> dict:
        """Reconstruct an uploaded or sketched image; reset the sliders to the new latent."""
        image = editor_value.get("composite") if isinstance(editor_value, dict) else editor_value
        if image is None:
            raise ValueError("Upload or draw an image first.")
        rec = self.pipe.reconstruct(image)
        return self._picked(rec.latent, rec.reconstruction, f"PSNR **{rec.psnr_db:.1f} dB**", rec.original)

    @user_errors
    def from_corpus(self, items: list[dict], evt: gr.SelectData) -> dict:
        item = self.pipe.corpus_item(items[evt.index]["row"])
        latent = self.pipe.corpus_latent(item.row)
        info = f"**{item.caption}** · corpus row {item.row}: the decode of its stored latent"
        return self._picked(latent, self.pipe.decode(latent), info, None)

    @user_errors
    def map_click(self, evt: gr.SelectData) -> dict:
        """The spot becomes the current latent, so every view of it (decode, code, sliders) follows."""
        x, y = evt.index
        latent = self.pipe.pixel_to_latent(x, y)
        near = self.pipe.nearest(latent, k=5)
        lines = "\n".join(f"- {item.char} {item.caption} (distance {d:.2f})" for item, d in near)
        decoded = self.pipe.decode(latent)
        item, distance = near[0]
        info = f"a spot on the map, nearest **{item.caption}** (distance {distance:.2f})"
        picked = self._picked(latent, decoded, info, None, decode_label="latent_map_decode")
        return {self.map_image: picked[self.steered], self.map_info: lines, **picked}

    # -- the other handlers ---------------------------------------------------------------------------
    def search(self, query: str) -> dict:
        """Thumbnails (decodes) and the rows they stand for."""
        items = self.pipe.search(query or "", limit=24)
        thumbs = [(self._show(self.pipe.decode(self.pipe.corpus_latent(i.row))), _caption(i)) for i in items]
        return {"thumbs": thumbs, "items": [{"row": i.row, "caption": i.caption} for i in items]}

    @user_errors
    def search_ui(self, query: str) -> dict:
        found = self.search(query)
        return {self.results: found["thumbs"], self.corpus_items: found["items"]}

    @user_errors
    def steer(self, latent, *coefficients):
        if latent is None:
            return None
        return self._show(self.pipe.steer(latent, list(coefficients)))

    @user_errors
    def sample(self, data: dict) -> dict:
        result = self.pipe.sample(self.sample_controls.read(data))
        return {
            self.samples: [self._show(img) for img in result.images],
            self.sample_info: f"seed `{result.seed}` (type it in to get these again)",
        }

    @user_errors
    def set_b(self, latent) -> dict:
        if latent is None:
            raise ValueError("Pick an image first; it becomes endpoint B.")
        return {self.latent_b: latent, self.b_image: self._show(self.pipe.decode(latent))}

    @user_errors
    def interpolate(self, data: dict) -> dict:
        a, b = data[self.latent], data[self.latent_b]
        if a is None or b is None:
            raise ValueError("Choose two images: the current one (A) and one set as B.")
        strip, gif, mp4 = self._walk(a, b, self.walk_controls.read(data))
        return {self.strip: upscale(strip, STRIP_SIDE), self.gif: str(gif), self.mp4: str(mp4)}

    def _walk(self, a: np.ndarray, b: np.ndarray, params: dict) -> tuple[Image.Image, Path, Path]:
        result = self.pipe.interpolate(a, b, params)
        cfg = self.pipe.cfg
        folder = fresh_output_dir("walk-")
        marker, record = new_watermark({"tab": "latent", "output": "interpolation walk", **params})
        gif, mp4 = write_animation(
            result.frames, folder, fps=cfg.animation_fps, display_size=self.size, mark=marker
        )
        for path in (gif, mp4):
            sign_if_enabled(path, record)
        return result.strip, gif, mp4

    @user_errors
    def attribute(self, data: dict) -> dict:
        latent = data[self.latent]
        if latent is None:
            raise ValueError("Pick an image first.")
        edit = self.pipe.edit(latent, self.attribute_controls.read(data))
        return {self.attr_image: self._show(edit.image), self.attr_info: _attribute_note(edit.attribute)}

    # -- API endpoints: plain arguments in, files and plain values out --------------------------------
    @user_errors
    def api_sample(self, request: gr.Request | None = None, **params) -> tuple[list[dict], dict]:
        """Decode ``n`` random latents; the info carries the seed that reproduces them."""
        result = self.pipe.sample(params)
        folder = fresh_output_dir("latent-")
        files = [_file(self._show(img), folder, f"sample-{i:02d}") for i, img in enumerate(result.images)]
        p = result.params
        return files, {"seed": result.seed, "n": p.n, "temperature": p.temperature, "source": p.source}

    @user_errors
    def api_interpolate(
        self, a_row=0, b_row=1, a_image=None, b_image=None, request: gr.Request | None = None, **params
    ) -> tuple[dict, dict, dict]:
        """Walk from A to B: a corpus row each, or an uploaded image instead of its row."""
        a = self._api_latent(a_row, a_image, "a")
        b = self._api_latent(b_row, b_image, "b")
        strip, gif, mp4 = self._walk(a, b, params)
        folder = gif.parent
        return _file(upscale(strip, STRIP_SIDE), folder, "strip"), _path(gif), _path(mp4)

    def _api_latent(self, row, image, name: str) -> np.ndarray:
        if (path := received_file(f"{name}_image", image)) is not None:
            return self.pipe.reconstruct(path).latent
        if not self.pipe.has_atlas:
            raise ValueError(f"{name}_image is needed: this model has no corpus rows to pick from")
        return self.pipe.corpus_latent(row)

    @user_errors
    def api_attribute(self, row=0, request: gr.Request | None = None, **params) -> tuple[dict, str]:
        """Corpus item ``row`` moved by ``strength`` along the attribute ``positive`` - ``negative``."""
        edit = self.pipe.edit(self.pipe.corpus_latent(row), params)
        return _file(self._show(edit.image), fresh_output_dir("latent-"), "attribute"), _attribute_note(
            edit.attribute
        )

    @user_errors
    def api_reconstruct(self, image=None, request: gr.Request | None = None) -> tuple[dict, dict]:
        """Encode an image file and decode it back; returns the reconstruction, PSNR and the latent."""
        if (path := received_file("image", image)) is None:
            raise ValueError("image is missing")
        rec = self.pipe.reconstruct(path)
        file = _file(self._show(rec.reconstruction), fresh_output_dir("latent-"), "reconstruction")
        return file, {"psnr_db": rec.psnr_db, "latent": rec.latent.tolist()}

    @user_errors
    def api_steer(self, row, coefficients, request: gr.Request | None = None) -> dict:
        """Decode corpus item ``row`` moved by ``coefficients`` (std units) along the principal directions."""
        image = self.pipe.steer(self.pipe.corpus_latent(row), coefficients)
        return _file(self._show(image), fresh_output_dir("latent-"), "steered")

    @user_errors
    def api_search(self, query="", request: gr.Request | None = None) -> list[dict]:
        """Corpus items whose emoji, name, caption or keywords match ``query`` (rows for the other endpoints)."""
        return [
            {"row": i.row, "char": i.char, "name": i.name, "caption": i.caption, "style": i.style}
            for i in self.pipe.search(query)
        ]


def _path(path: Path) -> dict:
    return FileData(path=str(path)).model_dump()


def _attribute_note(attr) -> str:
    return f"“{attr.positive}” ({attr.n_positive} items) − “{attr.negative}” ({attr.n_negative} items)"


def build_latent_tab(pipe: LatentPipeline | None, failure: LoadFailure | None) -> None:
    if pipe is None:
        failure_notice(failure)
        return
    LatentHandlers(pipe).build()
