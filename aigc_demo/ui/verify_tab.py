"""The Verify tab: drop a picture or a film and see where it came from. Layout and wiring only.

The verdict of its Content Credentials in one line (signed here, signed by someone else, changed after
signing, none), then who signed, what the manifest says was done, what it was made from, and the parameters
that made it; the whole manifest for the curious. The same through ``/verify``.
"""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData
from PIL import Image

from aigc_demo.pipelines.image import ImagePipeline
from aigc_demo.pipelines.text import TextPipeline
from aigc_demo.pipelines.verify import Inspection, VerifyPipeline
from aigc_demo.provenance.cards import card_names, read_card
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import api, arg
from aigc_demo.ui.errors import user_errors
from aigc_demo.ui.shared import (
    copies_gallery,
    copies_markdown,
    copies_pictures,
    copy_check_dict,
    failure_notice,
    received_file,
)
from aigc_demo.ui.strings import EN, t

FILE_TYPES = [".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4"]
BADGES = {
    "valid": "✅",
    "untrusted": "🟡",
    "tampered": "❌",
    "invalid": "❌",
    "absent": "⚪",
    "unreadable": "⚪",
}
LAB_COLUMNS = ["copy", "Content Credentials", "watermark", "PNG text parameters"]
ACTION_NAMES = {"c2pa.created": "created", "c2pa.placed": "placed (made from ingredients)"}
SOURCE_TYPES = {"trainedAlgorithmicMedia": "by a trained model (AI-generated)"}


def verdict_markdown(inspection: Inspection) -> str:
    """The verdict as the page shows it (a handler's text: English, as the messages of every tab)."""
    v = inspection.verdict
    lines = [f"### {BADGES[v.state]} {EN['verify_state_' + v.state]}", v.message]
    if v.signer:
        lines.append(f"- **{EN['verify_signer']}**: {v.signer} · {v.issuer or '?'}")
    for action in v.actions:
        name = ACTION_NAMES.get(action.get("action", ""), action.get("action", "?"))
        source = str(action.get("digitalSourceType", "")).rsplit("/", 1)[-1]
        agent = (action.get("softwareAgent") or {}).get("name", "")
        how = SOURCE_TYPES.get(source, source)
        lines.append(
            f"- **{EN['verify_action']}**: {name}"
            + (f", {how}" if how else "")
            + (f", with {agent}" if agent else "")
        )
    if v.ingredients:
        lines.append(f"- **{EN['verify_ingredients']}**: " + ", ".join(f"`{i}`" for i in v.ingredients))
    if v.failures:
        lines.append(f"- **{EN['verify_codes']}**: " + ", ".join(f"`{c}`" for c in v.failures))
    if inspection.watermark is not None:
        lines.append(f"- **{EN['verify_watermark']}**: {inspection.watermark.summary()}")
    lines.append(f"- **{EN['verify_parameters_from']}**: {inspection.parameters_source}")
    return "\n".join(lines)


def pictures(card) -> list[Image.Image]:
    """A card's sample grids and curves, handed to the page as images (the weights folder is not served)."""
    return [Image.open(p).convert("RGB") for p in card.pictures]


class VerifyTab:
    def __init__(
        self, pipe: VerifyPipeline, text: TextPipeline | None = None, image: ImagePipeline | None = None
    ):
        self.pipe = pipe
        self.text_pipe = text  # its tokenizer reads the text watermark
        self.image_pipe = image if image is not None and image.copy_index is not None else None  # copy check
        gr.Markdown(t("verify_intro"))
        with gr.Row():
            with gr.Column(scale=1):
                self.file = gr.File(
                    label=t("verify_file"), file_types=FILE_TYPES, type="filepath", elem_id="verify-file"
                )
                self.run = gr.Button(t("verify_run"), variant="primary", elem_id="verify-run")
                self.text = gr.Textbox(
                    label=t("verify_text"), lines=5, max_lines=12, elem_id="verify-text",
                    interactive=text is not None,
                    placeholder=t("verify_text_placeholder") if text is not None else t("verify_text_unavailable"),
                )  # fmt: skip
                self.check_text = gr.Button(t("verify_check_text"), elem_id="verify-check-text")
                self.text_verdict = gr.Markdown(elem_id="verify-text-verdict")
            with gr.Column(scale=1):
                self.verdict = gr.Markdown(elem_id="verify-verdict")
                self.copies_pictures = copies_pictures("verify-copies-pictures")
                self.parameters = gr.JSON(label=t("verify_parameters"), elem_id="verify-parameters")
                with gr.Accordion(t("verify_manifest"), open=False):
                    self.manifest = gr.JSON(show_label=False, elem_id="verify-manifest")
                self.run_lab = gr.Button(t("verify_lab"), elem_id="verify-lab")
                self.lab_table = gr.Dataframe(
                    headers=LAB_COLUMNS,
                    interactive=False,
                    wrap=True,
                    visible=False,
                    elem_id="verify-lab-table",
                )
        with gr.Accordion(t("verify_about"), open=False):
            gr.Markdown(t("verify_about_hint"))
            names = card_names()
            self.card_name = gr.Dropdown(names, value=names[0], show_label=False, elem_id="about-card-name")
            with gr.Row():
                self.card = gr.Markdown(read_card(names[0]).markdown, elem_id="about-card")
                self.card_pictures = gr.Gallery(
                    pictures(read_card(names[0])),
                    show_label=False,
                    height=480,
                    format="png",
                    preview=True,  # each picture whole: a sample grid is wide
                    object_fit="contain",
                    elem_id="about-pictures",
                )
        ui = {"api_visibility": "undocumented"}
        self.card_name.change(self.show_card, [self.card_name], [self.card, self.card_pictures], **ui)
        outputs = [self.verdict, self.copies_pictures, self.parameters, self.manifest]
        gr.on([self.file.upload, self.run.click], self.show, [self.file], outputs, **ui)
        cleared = ("", gr.update(value=None, visible=False), None, None)
        self.file.clear(lambda: cleared, None, outputs, queue=False, **ui)
        self.run_lab.click(self.show_lab, [self.file], [self.lab_table], **ui)
        api(self.api_lab, api_name="verify_lab", head=[arg("file", FileData | None)], returns=list[dict])
        api(self.api_verify, api_name="verify", head=[arg("file", FileData | None)], returns=dict)
        api(self.api_about, api_name="about", head=[arg("card", str, "")], returns=dict)
        if text is not None:
            gr.on(
                [self.check_text.click, self.text.submit],
                self.show_text,
                [self.text],
                [self.text_verdict],
                **ui,
            )
            api(self.api_verify_text, api_name="verify_text", head=[arg("text", str)], returns=dict)

    def _copies(self, path) -> tuple | None:
        """(the picture, its copy check); None for videos, or without the image pipeline's index."""
        if self.image_pipe is None:
            return None
        try:
            with Image.open(path) as img:
                picture = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return picture, self.image_pipe.copies(picture)

    @user_errors
    def show(self, path):
        inspection = self.pipe.inspect(path)
        text = verdict_markdown(inspection)
        shown = gr.update(value=None, visible=False)
        if (checked := self._copies(path)) is not None:
            picture, check = checked
            text += "\n\n" + copies_markdown(check)
            shown = gr.update(value=copies_gallery(check, picture), visible=True)
        return text, shown, inspection.parameters, inspection.verdict.manifest

    @user_errors
    def show_lab(self, path):
        rows = self.pipe.lab(path)
        return gr.update(value=[list(r.values()) for r in rows], visible=True)

    @user_errors
    def api_lab(self, file, request: gr.Request = None):
        """For the picture and each copy (JPEG, half size, 10% crop, PNG->JPEG->PNG, screenshot): which of its
        Content Credentials, watermark and PNG text parameters survive."""
        return self.pipe.lab(received_file("file", file))

    @user_errors
    def show_text(self, text: str) -> str:
        detection = self.text_pipe.watermark(text)
        badge = "✅" if detection.watermarked else "⚪"
        return f"{badge} {detection.summary()}"

    @user_errors
    def api_verify_text(self, text, request: gr.Request = None):
        """The green-list watermark's z-score in ``text`` (made with this app's key and model?)."""
        d = self.text_pipe.watermark(text)
        return {
            "watermarked": d.watermarked, "z": round(d.z, 2), "tokens_scored": d.tokens_scored,
            "green_fraction": round(d.green_fraction, 3), "tokens_needed": d.tokens_needed, "summary": d.summary(),
        }  # fmt: skip

    @user_errors
    def show_card(self, name: str):
        card = read_card(name)
        return card.markdown, pictures(card)

    @user_errors
    def api_about(self, card, request: gr.Request = None):
        """The model and data cards: their names, and with ``card`` one card's text."""
        return {"cards": card_names(), "card": read_card(card).markdown if card else None}

    @user_errors
    def api_verify(self, file, request: gr.Request = None):
        """The file's Content Credentials verdict, signer, actions, ingredients, parameters and manifest."""
        path = received_file("file", file)
        report = self.pipe.inspect(path).as_dict()
        checked = self._copies(path)
        return {**report, "copies": None if checked is None else copy_check_dict(checked[1])}


def build_verify_tab(
    pipe: VerifyPipeline | None,
    failure: LoadFailure | None,
    text: TextPipeline | None,
    image: ImagePipeline | None,
) -> VerifyTab | None:
    if pipe is None:
        failure_notice(failure)
        return None
    return VerifyTab(pipe, text, image)
