"""The corpus in a model's latent space: every row's posterior mean, their PCA, the captions, search, a
clickable 2D map, and any pictures placed on that map (what a set of generations covers).

An atlas is two files next to the model (written by ``aigc_demo.training.train_vae``): ``latents.safetensors``
(``mean``, ``pca_mean``, ``pca_components``, ``pca_explained_variance[_ratio]``, ``pca_coords``) and
``index.json`` (one item per row: char, name, caption, style, keywords).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aigc_demo import validation
from aigc_demo.config import LatentConfig

ATLAS_TENSORS = "latents.safetensors"
ATLAS_INDEX = "index.json"
STYLE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class CorpusItem:
    row: int
    char: str
    name: str
    caption: str
    style: str


@dataclass(frozen=True, eq=False)
class CorpusMap:
    """The corpus in the plane of the first two principal components, as an image you can click."""

    image: Image.Image
    x_range: tuple[float, float]  # PC1 at the left and right image edges
    y_range: tuple[float, float]  # PC2 at the bottom and top image edges
    pca_mean: np.ndarray
    components: np.ndarray  # (2, D): the first two principal directions (rows)

    def pixel_to_coords(self, px: float, py: float) -> tuple[float, float]:
        """Pixel (x right, y down, as Gradio's SelectData.index) -> (PC1, PC2), at the pixel's centre."""
        px, py = validation.as_float("x", px), validation.as_float("y", py)
        w, h = self.image.size
        if not (0 <= px < w and 0 <= py < h):
            raise ValueError(f"point ({px:g}, {py:g}) is outside the {w}x{h} map")
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return x0 + (px + 0.5) / w * (x1 - x0), y1 - (py + 0.5) / h * (y1 - y0)

    def coords_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        w, h = self.image.size
        return (x - x0) / (x1 - x0) * w - 0.5, (y1 - y) / (y1 - y0) * h - 0.5

    def pixel_to_latent(self, px: float, py: float) -> np.ndarray:
        """A click -> the full latent whose projection is that point (pca_mean + coords @ components)."""
        coords = np.asarray(self.pixel_to_coords(px, py), dtype=np.float64)
        return (self.pca_mean + coords @ self.components).astype(np.float32)

    def latent_to_pixel(self, latent: np.ndarray) -> tuple[float, float]:
        flat = np.asarray(latent, dtype=np.float64).reshape(-1)
        x, y = (flat - self.pca_mean) @ self.components.T
        return self.coords_to_pixel(float(x), float(y))


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters and digits of any script), as search and matching see them."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True, eq=False)
class LatentAtlas:
    """Posterior means of every corpus row, their PCA, and the captions (written by train_vae)."""

    means: np.ndarray  # (N, D) float32
    stds: np.ndarray  # (N, D) float32: each row's posterior standard deviation
    pca_mean: np.ndarray  # (D,) float64
    components: np.ndarray  # (K, D) float64, rows = directions, by decreasing variance
    variance: np.ndarray  # (K,)
    variance_ratio: np.ndarray  # (K,)
    coords: np.ndarray  # (N, 2): projections on the first two components
    items: tuple[CorpusItem, ...]
    keywords: tuple[tuple[str, ...], ...]
    styles: tuple[str, ...]
    # Derived once in __post_init__ (6k rows: ~10 ms): lower-cased search text and word sets per row.
    _text: tuple[str, ...] = field(init=False, repr=False)
    _word_sets: tuple[frozenset[str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, d = self.means.shape
        if (
            self.stds.shape != (n, d)
            or len(self.items) != n
            or self.coords.shape != (n, 2)
            or self.components.shape[1] != d
        ):
            raise ValueError(
                f"inconsistent atlas: {n} latents, {len(self.items)} items, coords {self.coords.shape}, "
                f"components {self.components.shape}"
            )
        if any(item.row != i for i, item in enumerate(self.items)):
            raise ValueError("atlas index rows must be 0..N-1 in order (one per latent)")
        object.__setattr__(
            self,
            "_text",
            tuple(
                f"{i.name}\n{i.caption}\n{' '.join(k)}".lower()
                for i, k in zip(self.items, self.keywords, strict=True)
            ),
        )
        object.__setattr__(self, "_word_sets", tuple(frozenset(words(t)) for t in self._text))

    @classmethod
    def from_folder(cls, folder: str | Path) -> LatentAtlas:
        from safetensors.numpy import load_file

        folder = Path(folder)
        t = load_file(str(folder / ATLAS_TENSORS))
        index = json.loads((folder / ATLAS_INDEX).read_text(encoding="utf-8"))
        rows = index["items"]
        items = tuple(
            CorpusItem(
                int(r["row"]), r.get("char", ""), r.get("name", ""), r.get("caption", ""), r.get("style", "")
            )
            for r in rows
        )
        keywords = tuple(tuple(str(k) for k in r.get("keywords") or ()) for r in rows)
        return cls(
            means=t["mean"].astype(np.float32),
            stds=np.exp(0.5 * t["logvar"].astype(np.float32)),
            pca_mean=t["pca_mean"].astype(np.float64),
            components=t["pca_components"].astype(np.float64),
            variance=t["pca_explained_variance"].astype(np.float64),
            variance_ratio=t["pca_explained_variance_ratio"].astype(np.float64),
            coords=t["pca_coords"].astype(np.float64),
            items=items,
            keywords=keywords,
            styles=tuple(index.get("styles") or sorted({i.style for i in items})),
        )

    def search(self, query: str, limit: int) -> list[CorpusItem]:
        """Case-insensitive: the emoji itself, then names starting with the query, then any substring."""
        q = query.strip().lower()
        if not q:
            # A spread over the whole corpus (it is sorted by category) rather than its first rows.
            step = max(1, len(self.items) // max(1, limit))
            return list(self.items[::step][:limit])
        exact, prefix, inside = [], [], []
        for item, text in zip(self.items, self._text, strict=True):
            if q == item.char or q == item.name.lower():
                exact.append(item)
            elif item.name.lower().startswith(q):
                prefix.append(item)
            elif q in text or q in item.char:
                inside.append(item)
        return (exact + prefix + inside)[:limit]

    def matching_rows(self, phrase: str) -> np.ndarray:
        """Rows matching any comma- or |-separated alternative; an alternative needs all its words."""
        alternatives = [set(words(a)) for a in re.split(r"[,|]", phrase)]
        alternatives = [a for a in alternatives if a]
        if not alternatives:
            return np.zeros(0, dtype=np.int64)
        hits = [i for i, ws in enumerate(self._word_sets) if any(a <= ws for a in alternatives)]
        return np.asarray(hits, dtype=np.int64)


def load_atlas(cfg: LatentConfig) -> LatentAtlas | None:
    """The configured atlas folder (must exist), else the model folder's own, else None."""
    if cfg.atlas:
        folder = Path(cfg.atlas)
        if not (folder / ATLAS_TENSORS).is_file() or not (folder / ATLAS_INDEX).is_file():
            raise FileNotFoundError(f"atlas folder {folder} needs {ATLAS_TENSORS} and {ATLAS_INDEX}")
        return LatentAtlas.from_folder(folder)
    folder = Path(cfg.model)
    if (folder / ATLAS_TENSORS).is_file() and (folder / ATLAS_INDEX).is_file():
        return LatentAtlas.from_folder(folder)
    return None


def draw_map(atlas: LatentAtlas, size: int) -> CorpusMap:
    """Full-bleed axes (no margins), so image pixels map linearly to PCA coordinates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    coords = atlas.coords
    lo, hi = coords.min(0), coords.max(0)
    pad = np.maximum((hi - lo) * 0.05, 1e-3)
    x_range = (float(lo[0] - pad[0]), float(hi[0] + pad[0]))
    y_range = (float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    styles = [i.style for i in atlas.items]
    for k, style in enumerate(atlas.styles):
        mask = np.array([s == style for s in styles])
        if mask.any():
            colour = STYLE_COLOURS[k % len(STYLE_COLOURS)]
            ax.scatter(coords[mask, 0], coords[mask, 1], s=5, c=colour, alpha=0.55, linewidths=0, label=style)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_axis_off()
    ax.legend(loc="upper right", fontsize=8, markerscale=2.5, framealpha=0.85)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    if image.size != (size, size):  # float figsize rounding: keep the promised size exactly
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return CorpusMap(image, x_range, y_range, atlas.pca_mean.copy(), atlas.components[:2].copy())


@dataclass(frozen=True)
class PlacedPicture:
    """Where one picture lands on the corpus map, and the corpus emoji it is closest to in latent space."""

    pc1: float
    pc2: float
    nearest: CorpusItem
    distance: float  # Euclidean, full latent (not just the two plotted directions)
    on_map: bool  # False when its point lies beyond the map's edges (drawn clamped to the edge)

    def as_dict(self) -> dict:
        return {
            "pc1": round(self.pc1, 4),
            "pc2": round(self.pc2, 4),
            "nearest": self.nearest.caption or self.nearest.name,
            "nearest_row": self.nearest.row,
            "distance": round(self.distance, 4),
            "on_map": self.on_map,
        }


@dataclass(frozen=True, eq=False)
class Placement:
    """Pictures drawn over the corpus map as framed thumbnails, so what a set covers is visible."""

    image: Image.Image
    pictures: list[PlacedPicture]

    @property
    def distinct_nearest(self) -> int:
        """How many different corpus emoji the pictures are closest to (a set of one subject: few)."""
        return len({p.nearest.row for p in self.pictures})

    def summary(self) -> str:
        n = len(self.pictures)
        off = sum(not p.on_map for p in self.pictures)
        text = (
            f"{n} picture{'s' if n != 1 else ''} on the corpus map; closest to {self.distinct_nearest} "
            f"different training emoji"
        )
        return text + (f"; {off} beyond the map's edge (drawn at the edge)" if off else "")

    def as_dict(self) -> dict:
        return {"pictures": [p.as_dict() for p in self.pictures], "distinct_nearest": self.distinct_nearest}


PLACED_FRAME = "#e4003a"  # a red no style colour uses, so the pictures stand out from the corpus dots


def thumbnail_side(n: int, map_side: int) -> int:
    """Large enough to recognise, small enough that a sweep of 100 leaves the corpus visible."""
    return max(16, min(48, int(map_side / (2.2 * math.sqrt(max(n, 1))))))


def place_on_map(
    corpus_map: CorpusMap, latents: np.ndarray, pictures: list[Image.Image], atlas: LatentAtlas
) -> Placement:
    """``pictures`` (their latents in ``latents``, one row each) framed on a copy of ``corpus_map``."""
    flat = np.asarray(latents, dtype=np.float64).reshape(len(pictures), -1)
    page = corpus_map.image.copy()
    draw = ImageDraw.Draw(page)
    w, h = page.size
    side = thumbnail_side(len(pictures), min(w, h))
    placed = []
    for z, picture in zip(flat, pictures, strict=True):
        pc1, pc2 = (z - corpus_map.pca_mean) @ corpus_map.components.T
        px, py = corpus_map.coords_to_pixel(float(pc1), float(pc2))
        on_map = 0 <= px < w and 0 <= py < h
        left = int(round(min(max(px, side / 2), w - 1 - side / 2) - side / 2))
        top = int(round(min(max(py, side / 2), h - 1 - side / 2) - side / 2))
        page.paste(picture.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (left, top))
        draw.rectangle((left - 1, top - 1, left + side, top + side), outline=PLACED_FRAME, width=2)
        distances = np.linalg.norm(atlas.means.astype(np.float64) - z[None], axis=1)
        row = int(np.argmin(distances))
        placed.append(PlacedPicture(float(pc1), float(pc2), atlas.items[row], float(distances[row]), on_map))
    return Placement(page, placed)
