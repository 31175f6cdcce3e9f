"""What every tab shares: the CPU-heavy concurrency group and the notice shown when a model failed to load."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from aigc_demo import validation
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.strings import t

# concurrency_id of every CPU-heavy event: a few at once, their steps taking turns (aigc_demo/compute.py).
HEAVY = "heavy"
# Events that take milliseconds (a latent slider's decode, a GAN draw, a search): a lane of their own, so
# they never queue behind a generation.
LIGHT = {"concurrency_id": "light", "concurrency_limit": 8}


def drawing_lane(batch_images: int) -> dict:
    """The lane of picture requests: as many at once as can share one UNet call (pipelines/step_batcher.py);
    1 draws them one by one."""
    return {"concurrency_id": "drawing", "concurrency_limit": max(1, batch_images)}


def received_folders() -> list[Path]:
    """Where files sent to the app live: Gradio's upload cache (uploads, and what the page shows) and the app's
    staging folder for its outputs (aigc_demo/outputs.py)."""
    from gradio.utils import get_upload_folder

    from aigc_demo.outputs import output_root

    return [Path(get_upload_folder()), output_root()]


def received_file(name: str, value) -> str | None:
    """A file argument's path (validation.file_path), refused unless it is a file sent to the app."""
    return validation.file_path(name, value, received_folders())


def received_files(name: str, values) -> list[str]:
    return validation.file_paths(name, values, received_folders())


def failure_notice(failure: LoadFailure | None) -> None:
    """The tab's model could not be loaded: say what failed and how to fix it; the other tabs work."""
    failure = failure or LoadFailure("model", "not loaded", "")
    gr.Markdown(t("load_failed"), elem_classes=["load-failed"])
    gr.Markdown(t("how_to_fix"))
    gr.Markdown(f"`{failure.error}`\n\n{failure.hint}")


def refresh_button(elem_id: str | None = None, **kwargs) -> gr.Button:
    """Beside an adapter menu: re-reads the adapters on disk, so one made in the Tune tab shows without a
    page reload."""
    return gr.Button(t("refresh_adapters"), size="sm", scale=0, min_width=120, elem_id=elem_id, **kwargs)


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
    shown = [*check.nearest, check.nearest_in_pixels]
    for n in shown:
        lines.append(f"| {n.caption} | {n.similarity:.3f} | {n.pixel_bits} / 192 | {n.licence} |")
    # Each source's attribution once, under the table: in a cell it squeezes the numbers' columns.
    sources = dict.fromkeys((n.licence, n.attribution) for n in shown)
    lines += ["", *(f"- {licence}: {attribution}" for licence, attribution in sources)]
    return "\n".join(lines)


def copies_pictures(elem_id: str) -> gr.Gallery:
    """Where copies_gallery's pictures go: hidden until a check has run."""
    return gr.Gallery(
        label=t("copies_pictures"), columns=5, height=220, object_fit="contain", format="png",
        visible=False, elem_id=elem_id,
    )  # fmt: skip


def copies_gallery(check, picture: Image.Image, side: int = 128) -> list[tuple[Image.Image, str]]:
    """``picture``, then the nearest training pictures themselves, drawn again from their sources (the index
    keeps fingerprints, not artwork), each captioned with how alike it is and its licence; sources not
    installed here are left out."""
    from aigc_demo.data.sources import render_item

    shown = [(picture.convert("RGB").resize((side, side), Image.Resampling.NEAREST), "the picture checked")]
    seen = set()
    for n in [*check.nearest, check.nearest_in_pixels]:
        if n.item_id in seen or (picture := render_item(n.item_id, side)) is None:
            continue
        seen.add(n.item_id)
        shown.append((picture, f"{n.caption} · alike {n.similarity:.2f} · {n.pixel_bits} bits · {n.licence}"))
    return shown


def copy_check_dict(check) -> dict:
    """The same for the API."""
    from dataclasses import asdict

    return {
        "likely_copy": check.likely_copy,
        "reason": check.reason,
        "nearest": [asdict(n) for n in check.nearest],
        "nearest_in_pixels": asdict(check.nearest_in_pixels),
    }
