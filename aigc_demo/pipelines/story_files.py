"""The Story tab's files besides the film: the comic page and the project file that loads back.

A project holds everything that made a film (the plan with the prompts that were drawn, the film settings, the
models), so loading it reproduces the film; ``read_project`` names what is wrong with a broken or foreign one.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from aigc_demo import validation
from aigc_demo.film import subtitle_font, wrap_text
from aigc_demo.pipelines.story_plan import MAX_JSON_CHARS, Plan, load_json

PROJECT_FORMAT, PROJECT_VERSION = "aigc-studio-story", 1


def comic_page(
    plan: Plan,
    panels: list[Image.Image],
    path: Path,
    columns: int = 2,
    mark: Callable[[Image.Image], Image.Image] | None = None,
) -> Path:
    """The panels in a grid with each scene's narration under it, and the title on top: a printable page,
    watermarked by ``mark`` when given."""
    side, pad, text_h = 256, 16, 72
    rows = -(-len(panels) // columns)
    title_h = 56
    page = Image.new(
        "RGB", (columns * (side + pad) + pad, title_h + rows * (side + text_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(page)
    draw.text((pad, 14), plan.title, fill="black", font=subtitle_font(28))
    font = subtitle_font(15)
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        x, y = pad + c * (side + pad), title_h + r * (side + text_h + pad)
        page.paste(panel.convert("RGB").resize((side, side), Image.Resampling.NEAREST), (x, y))
        draw.rectangle((x, y, x + side - 1, y + side - 1), outline=(40, 40, 40))
        lines = wrap_text(f"{i + 1}. {plan.scenes[i].narration}", font, side)[:3]
        draw.multiline_text((x, y + side + 6), "\n".join(lines), fill=(20, 20, 20), font=font, spacing=3)
    (page if mark is None else mark(page)).save(path)
    return path


def write_project(path: Path, plan: Plan, film: dict, models: dict) -> Path:
    """Everything that made the film (plan, prompts, seeds, settings, models): loads back and reproduces it."""
    data = {
        "format": PROJECT_FORMAT,
        "version": PROJECT_VERSION,
        "plan": plan.to_dict(),
        "film": film,
        "models": models,
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def read_project(source) -> tuple[Plan, dict]:
    """(plan, film settings as saved) from a project file's path or text; ValueError names what is wrong.
    The settings are checked by the caller's schema (``StoryPipeline.load_project``)."""
    if isinstance(source, (str, Path)) and not str(source).lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():  # a directory too
            raise ValueError(f"project file {validation.quoted(str(source))} not found")
        if path.stat().st_size > MAX_JSON_CHARS:
            raise ValueError(
                f"the project file is over {MAX_JSON_CHARS // 1000} kB; a story project is a few kB"
            )
        if zipfile.is_zipfile(path):
            raise ValueError("that is a ZIP file; load the story's .json project file")
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        text = str(source)
    data = load_json(text, "the project file")
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise ValueError("not an AIGC Studio story project (its 'format' field is missing or different)")
    if data.get("version") != PROJECT_VERSION:
        raise ValueError(
            f"story project version {validation.quoted(data.get('version'))}; this app reads version {PROJECT_VERSION}"
        )
    film = data.get("film")
    if not isinstance(film, dict):
        raise ValueError("the project file has no 'film' settings")
    return Plan.from_dict(data.get("plan")), film
