"""Evaluate: X/Y/Z parameter sweeps of the image pipeline, and quality figures for any set of pictures.

A sweep is AUTOMATIC1111's X/Y/Z plot: up to three axes, each a parameter of ``ImageParams`` (or the picture
size, or a prompt search/replace) with a list of values, every combination drawn with the rest of the request
fixed. Axis values pass the same checks as a request (``Schema``), so a sweep asks nothing the Image tab
could not. The result is one labelled grid per Z value (each cell with its prompt match), a CSV of the cells,
and the figures of ``aigc_demo/metrics.py`` over all cells, against the training pictures the copy index
keeps as the real set. With the Latent tab's autoencoder and atlas, the cells are also placed on its corpus
map, so what a set covers of the training data is seen, not only counted.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aigc_demo import metrics, validation
from aigc_demo.pipelines.image import ImagePipeline, ImageProgress, Interrupt
from aigc_demo.pipelines.latent_atlas import Placement
from aigc_demo.provenance.copies import embed_pictures, perceptual_hash

MAX_CELLS = 100  # a sweep larger than this is refused: at ~1 s a picture it would hold a core for minutes
MAX_VALUES = 16  # per axis
# axis -> what the grid's labels call it; "size" sets width and height, "prompt" searches and replaces.
AXES = {
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "scheduler": "sampler",
    "seed": "seed",
    "size": "size",
    "generator": "generator",
    "negative_prompt": "negative prompt",
    "prompt": "prompt S/R",
}
RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)(?:\s*\(\s*\+\s*(\d+)\s*\))?$")  # "10-30 (+10)": 10, 20, 30


@dataclass(frozen=True)
class Axis:
    name: str  # a key of AXES
    values: tuple  # checked: ints, floats, strings; (w, h) for "size"; replacement texts for "prompt"
    search: str = ""  # "prompt": the text each value replaces (the first value, as in AUTOMATIC1111)

    def label(self, value) -> str:
        if self.name == "size":
            return f"{value[0]}x{value[1]}"
        return f"{AXES[self.name]}: {value}" if self.name != "prompt" else str(value)

    def apply(self, value, request: dict) -> dict:
        if self.name == "size":
            return {**request, "width": value[0], "height": value[1]}
        if self.name == "prompt":
            return {**request, "prompt": request["prompt"].replace(self.search, value)}
        return {**request, self.name: value}


def _items(name: str, text: str) -> list[str]:
    items = [v.strip() for v in str(text or "").split(",") if v.strip()]
    if not items:
        raise ValueError(f"the {AXES[name]} axis has no values (give a comma-separated list)")
    expanded: list[str] = []
    for item in items:
        m = RANGE.match(item) if name in ("num_inference_steps", "seed") else None
        if m:
            a, b, step = int(m[1]), int(m[2]), int(m[3] or 1)
            if b < a or step < 1:
                raise ValueError(f"the range {item!r} must go up, in steps of at least 1")
            expanded += [str(v) for v in range(a, b + 1, step)][: MAX_VALUES + 1]
        else:
            expanded.append(item)
    if len(expanded) > MAX_VALUES:
        raise ValueError(f"the {AXES[name]} axis has {len(expanded)}+ values; the limit is {MAX_VALUES}")
    return expanded


def parse_axis(name: str | None, text: str, pipe: ImagePipeline, prompt: str) -> Axis | None:
    """The axis ``name`` with the values in ``text`` ("10, 20, 30", "10-30 (+10)", "64x64, 128x128"), each
    checked like a request's; None for no axis. ValueError naming the axis and the bad value."""
    if not name or name == "nothing":
        return None
    if name not in AXES:
        raise ValueError(f"unknown axis {name!r}; choose one of: {', '.join(AXES)}")
    items = _items(name, text)
    schema = pipe.schema
    try:
        if name == "size":
            sizes = []
            for item in items:
                w, _, h = item.lower().partition("x")
                sizes.append(
                    (schema["width"].check(w.strip()), schema["height"].check(h.strip() or w.strip()))
                )
            return Axis(name, tuple(sizes))
        if name == "prompt":
            if items[0] not in prompt:
                raise ValueError(f"the prompt S/R axis's first value {items[0]!r} is not in the prompt")
            return Axis(name, tuple(items), search=items[0])
        if name == "seed":
            return Axis(name, tuple(int(schema["seed"].check(v)) for v in items))
        return Axis(name, tuple(schema[name].check(v) for v in items))
    except ValueError as err:
        raise ValueError(f"the {AXES[name]} axis: {err}") from None


MAX_REPLIES = 16  # per text setting


@dataclass(frozen=True, eq=False)
class TextSetting:
    name: str
    params: object  # GenerationParams
    replies: list[str]
    figures: list[metrics.Figure]
    adapter: str = ""  # a Tune tab adapter, "" for the base model


@dataclass(frozen=True, eq=False)
class Cell:
    x: int
    y: int
    z: int
    image: Image.Image
    parameters: dict
    prompt_match: float | None
    seconds: float


@dataclass(frozen=True, eq=False)
class SweepProgress:
    done: int  # finished cells
    total: int
    elapsed_s: float
    eta_s: float
    cells: list[Cell]  # the finished ones
    axes: tuple[Axis | None, Axis | None, Axis | None]


@dataclass(frozen=True, eq=False)
class SweepResult:
    axes: tuple[Axis | None, Axis | None, Axis | None]  # x, y, z
    cells: list[Cell]
    grids: list[Image.Image]  # one per z value
    figures: list[metrics.Figure]
    seconds: float
    images_seconds: float  # of which drawing the pictures
    stopped: bool
    warnings: list[str] = field(default_factory=list)
    placement: Placement | None = None  # the cells on the corpus map (None without the latent atlas)


class EvaluatePipeline:
    """Sweeps and measures through the image pipeline (its worker, checks and scorer), places pictures on the
    latent pipeline's corpus map, and compares text settings through the text pipeline."""

    def __init__(self, image: ImagePipeline | None, text=None, encode=None, tuned=None, latent=None):
        self.image = image
        self.latent = latent  # a LatentPipeline: its corpus map shows where pictures land
        self.text = text  # a TextPipeline
        self.tuned = tuned  # adapter name -> the TextPipeline serving it (the Tune tab's adapters)
        self.encode = encode  # texts -> sentence embeddings (MiniLM), for the replies' mutual similarity
        self._real_radii: np.ndarray | None = None
        self._radii_lock = threading.Lock()

    def real_radii(self) -> np.ndarray | None:
        """The training pictures' k-NN radii for precision (a few seconds for ~6,000; once per process)."""
        with self._radii_lock:
            if self._real_radii is None and self.image is not None and self.image.copy_index is not None:
                real = metrics.normalised(self.image.copy_index.embeddings.numpy())
                self._real_radii = metrics.knn_radii(real, metrics.PR_K)
            return self._real_radii

    def axes(self, request: dict, specs) -> tuple[Axis | None, Axis | None, Axis | None]:
        """Three (name, values text) pairs -> checked axes; ValueError for an empty sweep or too many cells."""
        prompt = self.image.check(request)[0].prompt
        axes = tuple(parse_axis(name, text, self.image, prompt) for name, text in specs)
        names = [a.name for a in axes if a is not None]
        if not names:
            raise ValueError("choose at least one axis to sweep")
        if len(set(names)) < len(names):
            raise ValueError("each axis must sweep a different parameter")
        cells = int(np.prod([len(a.values) for a in axes if a is not None]))
        if cells > MAX_CELLS:
            raise ValueError(f"{cells:,} cells; a sweep makes at most {MAX_CELLS}")
        return axes  # type: ignore[return-value]

    def sweep(self, request: dict, specs, interrupt: Interrupt | None = None) -> Iterator:
        """Yields SweepProgress after each cell, then one SweepResult. ``specs``: three (axis, values text)
        pairs for X, Y and Z ("" or "nothing": unused). Stop (``interrupt``) keeps the finished cells."""
        # 1. Check every request of the sweep before drawing any.
        request = {**request, "batch_size": 1}
        axes = self.axes(request, specs)
        seed = self.image.check(request)[0].seed  # -1 resolves once: every cell shares it unless swept
        ranges = [range(len(a.values)) if a is not None else range(1) for a in axes]
        plan = []
        for z in ranges[2]:
            for y in ranges[1]:
                for x in ranges[0]:
                    cell = {**request, "seed": seed}
                    for axis, k in zip(axes, (x, y, z), strict=True):
                        if axis is not None:
                            cell = axis.apply(axis.values[k], cell)
                    self.image.check(cell)
                    plan.append((x, y, z, cell))
        # 2. Draw cell by cell.
        interrupt = interrupt or Interrupt()
        t0 = time.perf_counter()
        cells: list[Cell] = []
        warnings: list[str] = []
        for x, y, z, cell in plan:
            if interrupt.is_set():
                break
            t1 = time.perf_counter()
            result = None
            for event in self.image.generate(cell, interrupt, preview_every_s=None):
                if not isinstance(event, ImageProgress):
                    result = event
            if result is None or result.interrupted or not result.images:
                break
            warnings += [w for w in result.warnings if w not in warnings]
            made = result.images[0]
            cells.append(
                Cell(x, y, z, made.image, made.parameters, made.prompt_match, time.perf_counter() - t1)
            )
            elapsed = time.perf_counter() - t0
            eta = elapsed / len(cells) * (len(plan) - len(cells))
            yield SweepProgress(len(cells), len(plan), elapsed, eta, list(cells), axes)
        images_seconds = time.perf_counter() - t0
        # 3. Grids and figures over what was drawn.
        grids = [draw_grid(cells, axes, z) for z in ranges[2] if any(c.z == z for c in cells)]
        figures = self.measure([c.image for c in cells], [c.prompt_match for c in cells]) if cells else []
        placement = self.place([c.image for c in cells]) if cells else None
        stopped = len(cells) < len(plan)
        if stopped:
            warnings.append(f"Stopped: {len(cells)} of {len(plan)} cells were drawn; the grid keeps them.")
        yield SweepResult(
            axes,
            cells,
            grids,
            figures,
            time.perf_counter() - t0,
            images_seconds,
            stopped,
            warnings,
            placement,
        )

    def compare_text(
        self, prompt: str, settings: dict[str, dict], replies: int = 4, stop=None
    ) -> Iterator[tuple[int, int] | list[TextSetting]]:
        """``replies`` replies to ``prompt`` under each named setting (seeds seed, seed + 1, ...: the same for
        every setting), then figures per setting. Yields (done, total) after each reply, then the list. A
        setting's ``adapter`` (a Tune tab adapter's name) compares a tuned model with the base, or two tuned
        models; perplexity is then under that setting's own model."""
        from aigc_demo.pipelines.text_engines import TokenLogprobs

        if self.text is None:
            raise ValueError("comparing text settings needs the text model, which is not loaded")
        replies = validation.in_range("replies", validation.as_int("replies", replies), 2, MAX_REPLIES)
        models = {name: self._model(values.get("adapter") or "") for name, values in settings.items()}
        checked = {
            name: self.text.parse_params({k: v for k, v in values.items() if k != "adapter"})
            for name, values in settings.items()
        }
        total, done, results = replies * len(checked), 0, []
        for name, params in checked.items():
            model, adapter = models[name]
            texts, perplexities, lengths = [], [], []
            for i in range(replies):
                if stop is not None and stop.is_set():
                    break
                recorder, last = TokenLogprobs(), None
                seeded = replace(params, seed=(max(params.seed, 0) + i))
                for last in model.chat(prompt, params=seeded, stop=stop, logprobs=recorder):
                    pass
                texts.append(last.text)
                lengths.append(last.stats.new_tokens)
                if recorder.values:
                    perplexities.append(float(np.exp(-np.mean(recorder.values))))
                done += 1
                yield done, total
            figures = self._text_figures(texts, perplexities, lengths)
            results.append(TextSetting(name, checked[name], texts, figures, adapter))
        yield results

    def _model(self, adapter: str):
        """(pipeline, adapter name) for a setting: the base model, or a Tune tab adapter."""
        if not adapter or adapter == "base":
            return self.text, ""
        if self.tuned is None:
            raise ValueError("adapters need the Tune tab's pipeline, which did not load")
        return self.tuned(adapter), adapter

    def _text_figures(self, texts: list[str], perplexities: list[float], lengths: list[int]) -> list:
        similarity = (
            metrics.mutual_similarity(self.encode(texts).numpy())
            if self.encode is not None and len(texts) > 1
            else metrics.Figure(
                "similarity", None, len(texts), note="needs 2 replies and the sentence encoder"
            )
        )
        repetition = metrics.mean_interval(
            "repetition", np.array([metrics.repetition_rate(t) for t in texts])
        )
        return [
            metrics.mean_interval(
                "perplexity", np.array(perplexities), note="under the model, raw distribution"
            ),
            metrics.distinct_n(texts, 1),
            metrics.distinct_n(texts, 2),
            replace(repetition, note="share of a reply's 4-grams that repeat"),
            metrics.mean_interval("length", np.array(lengths, dtype=float), note="tokens"),
            similarity,
        ]

    @property
    def can_place(self) -> bool:
        return self.latent is not None and self.latent.has_atlas

    def place(self, images: list[Image.Image]) -> Placement | None:
        """``images`` on the Latent tab's corpus map, or None when that model or its atlas is not loaded."""
        return self.latent.place(images) if self.can_place else None

    def measure(self, images: list[Image.Image], scores: list[float | None]) -> list[metrics.Figure]:
        """The figures of aigc_demo/metrics.py for ``images`` (their prompt matches in ``scores``)."""
        if not images:
            raise ValueError("no pictures to measure")
        known = [s for s in scores if s is not None]
        figures = [
            metrics.mean_interval("prompt match", np.array(known))
            if known
            else metrics.Figure("prompt match", None, 0, note="no scorer or no prompt")
        ]
        index = self.image.copy_index
        if index is None:
            note = "needs the scorer and weights/copy-index"
            return [
                *figures,
                *(metrics.Figure(n, None, len(images), note=note) for n in ("diversity", "KID")),
            ]
        features = self.image.worker.run(_embed, index, images)
        hashes = np.stack([perceptual_hash(im) for im in images])
        real = index.embeddings.numpy()
        figures += [metrics.diversity(features), metrics.near_duplicates(hashes, index.pixel_bits)]
        figures += metrics.precision_recall(real, features, real_radii=self.real_radii())
        figures += [metrics.kid(real, features), metrics.frechet_note(len(images))]
        return figures


def _embed(index, images: list[Image.Image]) -> np.ndarray:
    return embed_pictures(index.scorer.model, images).numpy()


# -- the grid ------------------------------------------------------------------------------------------------

LABEL_FONT = 14
CELL_MIN = 128  # 64-px pictures are enlarged (NEAREST: crisp) so labels and pictures read together


def draw_grid(cells: list[Cell], axes, z: int) -> Image.Image:
    """The cells of one Z value as a labelled grid: X values across the top, Y values down the left, the Z
    value as a title, each cell's prompt match under it; cells not drawn (stopped) stay empty."""
    from aigc_demo.film import subtitle_font

    x_axis, y_axis, z_axis = axes
    nx = len(x_axis.values) if x_axis else 1
    ny = len(y_axis.values) if y_axis else 1
    mine = [c for c in cells if c.z == z]
    side = max(CELL_MIN, *(max(c.image.size) for c in mine))
    font = subtitle_font(LABEL_FONT)
    left = 150 if y_axis else 10
    top = 34 + (28 if z_axis else 0)
    under = 22
    grid = Image.new("RGB", (left + nx * (side + 8) + 2, top + ny * (side + under + 8) + 2), "white")
    draw = ImageDraw.Draw(grid)
    if z_axis:
        draw.text((10, 6), z_axis.label(z_axis.values[z]), fill="black", font=subtitle_font(LABEL_FONT + 4))
    for x in range(nx):
        text = x_axis.label(x_axis.values[x]) if x_axis else ""
        draw.text((left + x * (side + 8), top - 22), _fit(text, font, side), fill="black", font=font)
    for y in range(ny):
        text = y_axis.label(y_axis.values[y]) if y_axis else ""
        draw.text(
            (8, top + y * (side + under + 8) + side // 2 - 8),
            _fit(text, font, left - 12),
            fill="black",
            font=font,
        )
    for c in mine:
        px, py = left + c.x * (side + 8), top + c.y * (side + under + 8)
        picture = c.image.convert("RGB")
        scale = side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        grid.paste(picture.resize(size, Image.Resampling.NEAREST), (px, py))
        if c.prompt_match is not None:
            draw.text((px, py + side + 3), f"match {c.prompt_match:.2f}", fill=(60, 60, 60), font=font)
    return grid


def _fit(text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


# -- files ---------------------------------------------------------------------------------------------------

CSV_FIELDS = ["x", "y", "z", "prompt_match", "seconds"]
GRID_KEY = "aigc_studio_sweep"  # the grid PNG's text chunk: every cell's place and parameters, as JSON
MAP_KEY = "aigc_studio_map"  # the map PNG's text chunk: each picture's place and nearest corpus emoji


def save_grid(result: SweepResult, z: int, folder: Path) -> Path:
    """The grid of Z value ``z`` as a PNG carrying every cell's parameters (a text chunk, and signed), with a
    watermark linking it to them."""
    cells = [
        {"x": c.x, "y": c.y, "z": c.z, "prompt_match": c.prompt_match, **c.parameters}
        for c in result.cells
        if c.z == z
    ]
    record = {
        "sweep": {k: a.name if a else None for k, a in zip("xyz", result.axes, strict=True)},
        "cells": cells,
    }
    return _save_marked(result.grids[z], record, GRID_KEY, folder / f"sweep-grid-{z + 1}.png")


def save_map(placement: Placement, folder: Path, name: str = "corpus-map.png") -> Path:
    """The corpus map with the pictures placed on it, as a PNG carrying where each landed."""
    return _save_marked(placement.image, {"map": placement.as_dict()}, MAP_KEY, folder / name)


def _save_marked(image: Image.Image, record: dict, key: str, path: Path) -> Path:
    """``image`` watermarked, ``record`` (with the watermark id) in text chunk ``key``, then signed."""
    from PIL import PngImagePlugin

    from aigc_demo.provenance.content_credentials import sign_if_enabled
    from aigc_demo.provenance.parameters import new_watermark

    marker, record = new_watermark(record)
    info = PngImagePlugin.PngInfo()
    info.add_text(key, json.dumps(record, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    marker(image).save(path, pnginfo=info)
    return sign_if_enabled(path, record)


def write_csv(result: SweepResult, path: Path) -> Path:
    """One row per cell: its place, axis labels, prompt match, time and every parameter that made it."""
    keys = sorted({k for c in result.cells for k in c.parameters})
    names = ["x_value", "y_value", "z_value"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_FIELDS, *names, *keys])
        for c in result.cells:
            labels = [
                axis.label(axis.values[k]) if axis else ""
                for axis, k in zip(result.axes, (c.x, c.y, c.z), strict=True)
            ]
            score = "" if c.prompt_match is None else f"{c.prompt_match:.4f}"
            row = [c.x, c.y, c.z, score, f"{c.seconds:.3f}", *labels]
            writer.writerow(row + [c.parameters.get(k, "") for k in keys])
    return path
