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


def copies_markdown(check) -> str:
    """A copy check (provenance/copies.py) as the page shows it: the verdict, then the nearest training pictures
    with their licences."""
    head = (
        "⚠️ **Likely copy of a training picture**"
        if check.likely_copy
        else "✅ **Not a copy of a training picture**"
    )
    lines = [
        f"{head}: {check.reason}.",
        "",
        "| nearest training pictures | alike | hash bits apart | licence |",
        "|---|---|---|---|",
    ]
    for n in [*check.nearest, check.nearest_in_pixels]:
        lines.append(
            f"| {n.caption} | {n.similarity:.3f} | {n.pixel_bits} / 192 | {n.licence} ({n.attribution}) |"
        )
    return "\n".join(lines)


def copy_check_dict(check) -> dict:
    """The same for the API."""
    from dataclasses import asdict

    return {
        "likely_copy": check.likely_copy,
        "reason": check.reason,
        "nearest": [asdict(n) for n in check.nearest],
        "nearest_in_pixels": asdict(check.nearest_in_pixels),
    }
