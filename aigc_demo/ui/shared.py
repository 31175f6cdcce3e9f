"""What every tab shares: the CPU-heavy concurrency group and the notice shown when a model failed to load."""

from __future__ import annotations

import gradio as gr

from aigc_demo.registry import LoadFailure
from aigc_demo.ui.strings import t

# concurrency_id of every CPU-heavy event: on 2 cores two generations at once only slow each other down.
HEAVY = "heavy"


def failure_notice(failure: LoadFailure | None) -> None:
    """The tab's model could not be loaded: say what failed and how to fix it; the other tabs work."""
    failure = failure or LoadFailure("model", "not loaded", "")
    gr.Markdown(t("load_failed"), elem_classes=["load-failed"])
    gr.Markdown(t("how_to_fix"))
    gr.Markdown(f"`{failure.error}`\n\n{failure.hint}")


def pixel_gallery(*args, **kwargs) -> gr.Gallery:
    """A gallery of small generated images shown large: whole pictures, crisp pixels, and PNG (Gradio's default
    webp is lossy and smears the upscaled pixels)."""
    return gr.Gallery(
        *args, **{"object_fit": "contain", "format": "png", "elem_classes": ["pixels"], **kwargs}
    )
