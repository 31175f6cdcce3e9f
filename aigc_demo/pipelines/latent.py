"""Latent exploration: encode, decode, sample, interpolate, steer and map an autoencoder's latent space.

Two kinds of model serve the same interface (the UI never sees a tensor, only PIL images, numpy arrays,
floats and frozen dataclasses):

- ``vector``: the project's ``EmojiVAE`` (one global latent vector, default ``weights/vae-emoji``). With
  its *atlas* (``latents.safetensors`` + ``index.json``: every corpus row's posterior, a PCA and the
  captions) it also offers principal-direction sliders, caption arithmetic, search and a 2D map.
- ``spatial``: any diffusers ``AutoencoderKL`` (e.g. ``weights/autoencoder-kl-emoji``, 64x64 -> 4x16x16,
  or ``stabilityai/sd-vae-ft-mse``). Its latents are exposed *scaled* by ``config.scaling_factor`` (what a
  latent diffusion model sees, roughly unit variance), so the N(0, I) prior of ``sample`` and the slerp of
  ``interpolate`` mean the same thing for both kinds.

Images go in and out at the model's resolution; ``imaging.upscale`` enlarges them crisply for display.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from aigc_demo.config import LatentConfig
from aigc_demo.device import configure_threads, pick_device
from aigc_demo.imaging import psnr, to_pil, upscale
from aigc_demo.models import EmojiVAE

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
ATLAS_TENSORS = "latents.safetensors"
ATLAS_INDEX = "index.json"
STYLE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


# ----------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Reconstruction:
    original: Image.Image  # the prepared input (RGB, square, model size)
    reconstruction: Image.Image
    latent: np.ndarray  # posterior mean, float32, shape = LatentPipeline.latent_shape
    psnr_db: float  # reconstruction vs prepared input, 8-bit


@dataclass(frozen=True, eq=False)
class Samples:
    images: list[Image.Image]
    latents: np.ndarray  # (n, *latent_shape) float32
    seed: int


@dataclass(frozen=True, eq=False)
class Interpolation:
    frames: list[Image.Image]  # frames[0] == decode(a), frames[-1] == decode(b)
    strip: Image.Image  # all frames side by side, model resolution
    method: str  # "slerp" | "lerp" (what was asked; slerp of parallel vectors is computed as lerp)
    steps: int


@dataclass(frozen=True, eq=False)
class Attribute:
    vector: np.ndarray  # mean latent(positive) - mean latent(negative), shape = latent_shape
    n_positive: int
    n_negative: int
    positive: str
    negative: str


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
        px, py = _as_float("x", px), _as_float("y", py)
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


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------
def _as_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating | str):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(f)


def _as_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating | str):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return f


def _check_range(name: str, value, low, high) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _as_seed(seed) -> int:
    """None -> a fresh random seed (returned with the result, so any output can be reproduced)."""
    if seed is None:
        return random.randint(0, MAX_SEED)
    value = _as_int("seed", seed)
    _check_range("seed", value, 0, MAX_SEED)
    return value


# ----------------------------------------------------------------------------------------------------
# Images in
# ----------------------------------------------------------------------------------------------------
def limit_pil_pixels(max_pixels: int) -> None:
    """Tighten (never loosen) PIL's decompression-bomb guard to our own limit.

    PIL warns above MAX_IMAGE_PIXELS and refuses at twice that, *before* allocating, so a 20000x20000 PNG
    costs a header read, not 1.2 GB. Process-wide: other pipelines get the same guard.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or current > max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _check_size(w: int, h: int, min_side: int, max_pixels: int) -> None:
    if w < min_side or h < min_side:
        raise ValueError(f"image is too small: {w}x{h}; it must be at least {min_side}x{min_side}")
    if w * h > max_pixels:
        raise ValueError(
            f"image is too large: {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is {max_pixels / 1e6:g}"
        )


def _open_file(source, min_side: int, max_pixels: int, target: int) -> Image.Image:
    """Open a path or bytes and decode the first frame to RGB, refusing bad input before decoding."""
    # PIL checks the header against MAX_IMAGE_PIXELS inside Image.open, before any allocation: it raises
    # DecompressionBombError beyond twice the limit and warns below that (a warning filtered to "error"
    # arrives as the exception). Our own check right after open refuses anything over the configured
    # limit either way; no warnings.catch_warnings here, it is not thread-safe in a server.
    try:
        with Image.open(source) as img:
            _check_size(img.width, img.height, min_side, max_pixels)
            if img.format == "JPEG":
                img.draft("RGB", (target * 2, target * 2))  # decode big photos at 1/2..1/8 scale: fast
            img.seek(0)  # animated: the first frame
            img.load()
            return _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image is too large ({err})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, EOFError, struct.error) as err:
        raise ValueError(f"could not decode the image (corrupt or truncated file: {err})") from None


def _array_to_pil(arr: np.ndarray, min_side: int, max_pixels: int) -> Image.Image:
    """HxW, HxWx1/3/4 arrays: uint8, uint16 (scaled down), bool or floats in [0, 1] (or [0, 255])."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be HxW or HxWx3/4, got shape {arr.shape}")
    _check_size(arr.shape[1], arr.shape[0], min_side, max_pixels)
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.bool_:
        u8 = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535 if arr.max(initial=0) > 255 else 255
        u8 = (np.clip(arr, 0, top).astype(np.float32) * (255 / top) + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("the image array contains NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        u8 = (np.clip(arr * scale, 0, 255) + 0.5).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image array dtype {arr.dtype}")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[u8.ndim if u8.ndim == 2 else u8.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(u8), mode=mode)


def _deep_gray_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit and float grayscale -> 8-bit. PIL's own convert clips everything above 255 to white."""
    arr = np.asarray(img, dtype=np.float32)
    peak = float(arr.max(initial=0.0))
    if img.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = 65535.0 if peak > 255 else 255.0
    return Image.fromarray((np.clip(arr / top, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB. Transparency is composited on white: the corpus (and so the model) is on white."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not make a viewable image unusable
        log.debug("ignoring unreadable EXIF orientation")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _deep_gray_to_l(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _fit_square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square, then resize to the model's input size."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side)) if w != h else img
    if side == size:
        return square.copy()
    return square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)


# ----------------------------------------------------------------------------------------------------
# Models: one adapter per kind, so the pipeline deals only in (B, *latent_shape) <-> (B, 3, H, W) in [0, 1]
# ----------------------------------------------------------------------------------------------------
class _VectorModel:
    kind = "vector"

    def __init__(self, vae: EmojiVAE):
        self.module = vae
        self.image_size = vae.config.image_size
        self.latent_shape: tuple[int, ...] = (vae.config.latent_dim,)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.module.encode(x01.contiguous(memory_format=torch.channels_last))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.module.decode(z)


class _SpatialModel:
    """diffusers AutoencoderKL: [-1, 1] images; latents scaled (and shifted, for SD3/Flux-style VAEs)."""

    kind = "spatial"

    def __init__(self, vae):
        cfg = vae.config
        self.module = vae
        self.scale = float(getattr(cfg, "scaling_factor", None) or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", None) or 0.0)
        size = cfg.sample_size
        self.image_size = int(size[0] if isinstance(size, list | tuple) else size)
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        side = self.image_size // factor
        self.latent_shape = (int(cfg.latent_channels), side, side)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01 * 2 - 1).contiguous(memory_format=torch.channels_last)
        return (self.module.encode(x).latent_dist.mean - self.shift) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = (z / self.scale + self.shift).contiguous(memory_format=torch.channels_last)
        return self.module.decode(z).sample * 0.5 + 0.5


def _adapter(model) -> _VectorModel | _SpatialModel:
    # channels_last weights: single-image decodes measured ~20 % faster on this CPU for both models
    # (unlike training, where it slows the AutoencoderKL). Converts the caller's module in place.
    model.to(memory_format=torch.channels_last)
    if isinstance(model, EmojiVAE):
        return _VectorModel(model)
    if hasattr(getattr(model, "config", None), "latent_channels") and hasattr(model, "decode"):
        return _SpatialModel(model)
    raise ValueError(
        f"unsupported model {type(model).__name__}: expected EmojiVAE or diffusers AutoencoderKL"
    )


def load_model(spec: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A folder (EmojiVAE or AutoencoderKL, told apart by config.json) or a hub id (AutoencoderKL)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: not a model folder")
        config = json.loads(config_path.read_text())
        if config.get("_class_name") == "EmojiVAE":
            return EmojiVAE.from_pretrained(path, torch_dtype=dtype).to(device)
        if config.get("_class_name") == "AutoencoderKL":
            from diffusers import AutoencoderKL

            return AutoencoderKL.from_pretrained(path, torch_dtype=dtype).to(device).eval()
        raise ValueError(f"{config_path}: unsupported model (need _class_name EmojiVAE or AutoencoderKL)")
    if path.is_absolute() or spec.startswith((".", "~")) or path.exists():
        hint = ""
        if path.name == "vae-emoji":
            hint = "; train it with: python -m aigc_demo.training.train_vae"
        elif path.name == "autoencoder-kl-emoji":
            hint = "; train it with: python -m aigc_demo.training.train_autoencoder"
        raise FileNotFoundError(f"model folder {path} not found{hint}")
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(spec, torch_dtype=dtype).to(device).eval()


# ----------------------------------------------------------------------------------------------------
# Atlas: the corpus in latent space
# ----------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True, eq=False)
class LatentAtlas:
    """Posterior means of every corpus row, their PCA, and the captions (written by train_vae)."""

    means: np.ndarray  # (N, D) float32
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
        if len(self.items) != n or self.coords.shape != (n, 2) or self.components.shape[1] != d:
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
        object.__setattr__(self, "_word_sets", tuple(frozenset(_words(t)) for t in self._text))

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
        alternatives = [set(_words(a)) for a in re.split(r"[,|]", phrase)]
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


# ----------------------------------------------------------------------------------------------------
# Small pure helpers
# ----------------------------------------------------------------------------------------------------
def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The usual latent-walk slerp (Shoemake): the angle comes from the directions, the weights apply to
    the raw vectors. Between two typical prior draws it keeps a typical norm, where lerp cuts towards the
    origin (washed-out middle frames). Falls back to lerp for (nearly) parallel vectors or a zero one."""
    fa, fb = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    na, nb = np.linalg.norm(fa), np.linalg.norm(fb)
    tt = t[:, None]
    if na < 1e-8 or nb < 1e-8:
        return lerp(a, b, t)
    omega = math.acos(float(np.clip(fa @ fb / (na * nb), -1.0, 1.0)))
    if math.sin(omega) < 1e-4:
        return lerp(a, b, t)
    out = (np.sin((1 - tt) * omega) * fa + np.sin(tt * omega) * fb) / math.sin(omega)
    return out.reshape(len(t), *a.shape).astype(np.float32)


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    tt = t.reshape(-1, *([1] * a.ndim)).astype(np.float64)
    return ((1 - tt) * a.astype(np.float64) + tt * b.astype(np.float64)).astype(np.float32)


def _even_canvas(img: Image.Image) -> Image.Image:
    """H.264 with yuv420p needs even width and height: pad one white pixel where odd."""
    w, h = img.size
    if w % 2 == 0 and h % 2 == 0:
        return img
    canvas = Image.new("RGB", (w + w % 2, h + h % 2), (255, 255, 255))
    canvas.paste(img, (0, 0))
    return canvas


def _bar_chart(vector: np.ndarray, width: int, height: int) -> Image.Image:
    """A latent vector as bars around a zero line (scale: at least +-3 std)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    mid = height // 2
    top = max(3.0, float(np.abs(vector).max(initial=0.0)))
    bar = width / max(1, len(vector))
    for i, v in enumerate(vector):
        y = mid - v / top * (mid - 2)
        colour = (31, 119, 180) if v >= 0 else (214, 39, 40)
        draw.rectangle((i * bar + 1, min(mid, y), (i + 1) * bar - 2, max(mid, y)), fill=colour)
    draw.line((0, mid, width, mid), fill=(0, 0, 0))
    return img


# ----------------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------------
class LatentPipeline:
    """One resident autoencoder (+ optional atlas) shared by every user; all methods are stateless."""

    def __init__(
        self,
        model: torch.nn.Module,
        atlas: LatentAtlas | None = None,
        cfg: LatentConfig | None = None,
        model_id: str | None = None,
    ):
        self.cfg = cfg or LatentConfig()
        self._model = _adapter(model.eval())
        self.model_id = model_id or type(model).__name__
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        if atlas is not None and atlas.means.shape[1] != math.prod(self.latent_shape):
            raise ValueError(
                f"the atlas has {atlas.means.shape[1]}-d latents but the model's are {self.latent_shape}: "
                "rebuild it for this model"
            )
        self.atlas = atlas
        self._map: CorpusMap | None = None
        self._map_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: LatentConfig | None = None) -> LatentPipeline:
        cfg = cfg or LatentConfig()
        t0 = time.perf_counter()
        configure_threads(cfg.threads)
        # Process-wide, so only here (the app's path), never from __init__ (tests build many pipelines).
        limit_pil_pixels(cfg.max_image_pixels)
        plan = pick_device()
        model = load_model(cfg.model, plan.device, plan.dtype)
        pipe = cls(model, atlas=load_atlas(cfg), cfg=cfg, model_id=cfg.model)
        log.info(
            "latent pipeline ready (%s, %s %s, atlas: %s) in %.2f s",
            cfg.model,
            pipe.kind,
            pipe.latent_shape,
            pipe.has_atlas,
            time.perf_counter() - t0,
        )
        return pipe

    # -- what this model offers ----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """ "vector" (EmojiVAE) or "spatial" (AutoencoderKL)."""
        return self._model.kind

    @property
    def image_size(self) -> int:
        return self._model.image_size

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self._model.latent_shape

    @property
    def module(self) -> torch.nn.Module:
        """The underlying torch module (for benchmarks and advanced callers; the UI never needs it)."""
        return self._model.module

    @property
    def has_atlas(self) -> bool:
        return self.atlas is not None

    @property
    def directions(self) -> int:
        """How many principal directions ``steer`` accepts (0 without an atlas)."""
        if self.atlas is None:
            return 0
        return min(self.cfg.max_directions, len(self.atlas.variance))

    @property
    def explained_variance_ratio(self) -> list[float]:
        if self.atlas is None:
            return []
        return [float(v) for v in self.atlas.variance_ratio[: self.directions]]

    # -- tensors <-> images (the only place torch is touched) ----------------------------------------
    def _encode(self, image: Image.Image) -> np.ndarray:
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.inference_mode():
            mean = self._model.encode(x.to(self.device, self.dtype))
        return mean[0].float().cpu().numpy()

    def _decode(self, latents: np.ndarray) -> list[Image.Image]:
        """One latent per call: batch size never changes the numbers, so frames equal single decodes."""
        images = []
        with torch.inference_mode():
            for z in latents:
                t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None]
                images.append(to_pil(self._model.decode(t.to(self.device, self.dtype))[0]))
        return images

    def _latent(self, latent, name: str = "latent") -> np.ndarray:
        """A float32 array of the model's latent shape (a leading batch of 1 is accepted), all finite."""
        try:
            arr = np.asarray(latent, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an array of numbers") from None
        if arr.shape != self.latent_shape and arr.shape == (1, *self.latent_shape):
            arr = arr[0]
        if arr.shape != self.latent_shape:
            raise ValueError(f"{name} has shape {arr.shape}; this model's latents are {self.latent_shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return arr

    def _need_atlas(self, what: str) -> LatentAtlas:
        if self.atlas is None:
            raise ValueError(f"{what} needs the corpus atlas ({ATLAS_TENSORS} + {ATLAS_INDEX}) of this model")
        return self.atlas

    # -- images --------------------------------------------------------------------------------------
    def prepare_image(self, image) -> Image.Image:
        """PIL / numpy / path / bytes -> RGB on white, centre-cropped square at the model's size."""
        cfg = self.cfg
        if isinstance(image, Image.Image):
            _check_size(image.width, image.height, cfg.min_image_side, cfg.max_image_pixels)
            try:
                if getattr(image, "is_animated", False):
                    image.seek(0)
                rgb = _to_rgb(image)
            except (OSError, SyntaxError, EOFError, struct.error) as err:
                raise ValueError(f"could not decode the image ({err})") from None
        elif isinstance(image, np.ndarray):
            rgb = _to_rgb(_array_to_pil(image, cfg.min_image_side, cfg.max_image_pixels))
        elif isinstance(image, str | Path):
            path = Path(image)
            if not path.is_file():
                raise ValueError(f"no image file at {path}")
            rgb = _open_file(path, cfg.min_image_side, cfg.max_image_pixels, self.image_size)
        elif isinstance(image, bytes | bytearray):
            rgb = _open_file(BytesIO(image), cfg.min_image_side, cfg.max_image_pixels, self.image_size)
        else:
            raise ValueError(
                f"expected an image (PIL image, numpy array or file path), not {type(image).__name__}"
            )
        return _fit_square(rgb, self.image_size)

    def reconstruct(self, image) -> Reconstruction:
        # 1. Normalise the input exactly as the corpus was (RGB on white, square, model size).
        original = self.prepare_image(image)
        # 2. Encode to the posterior mean (the most likely latent; no sampling noise).
        latent = self._encode(original)
        # 3. Decode and score against what the model actually saw.
        recon = self._decode(latent[None])[0]
        return Reconstruction(original, recon, latent, psnr(original, recon))

    def decode(self, latent: np.ndarray) -> Image.Image:
        return self._decode(self._latent(latent)[None])[0]

    def sample(
        self, n: int, seed: int | None = None, temperature: float = 1.0, source: str = "prior"
    ) -> Samples:
        """Decode random latents scaled by ``temperature`` (0 = the centre).

        source="prior" draws from the VAE's N(0, I) prior, as the textbooks do; source="corpus" draws from a
        Gaussian fitted to the corpus latents (its PCA), which lands where real emoji live even when the
        encoder has not filled the prior (our 35-minute VAE has not: its prior samples are blobs).
        """
        n = _as_int("n", n)
        _check_range("n", n, 1, self.cfg.max_samples)
        temperature = _as_float("temperature", temperature)
        _check_range("temperature", temperature, 0.0, self.cfg.max_temperature)
        if source not in ("prior", "corpus"):
            raise ValueError(f"source must be 'prior' or 'corpus', not {source!r}")
        if source == "corpus" and not self.has_atlas:
            raise ValueError("source='corpus' needs corpus latents (latents.safetensors) next to the model")
        seed = _as_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if source == "prior":
            z = (torch.randn((n, *self.latent_shape), generator=gen) * temperature).numpy()
        else:
            atlas = self.atlas
            eps = torch.randn((n, len(atlas.variance)), generator=gen, dtype=torch.float64).numpy()
            z = atlas.pca_mean + (eps * temperature * np.sqrt(atlas.variance)) @ atlas.components
            z = z.reshape(n, *self.latent_shape).astype(np.float32)
        return Samples(self._decode(z), z, seed)

    def interpolate(
        self, a: np.ndarray, b: np.ndarray, steps: int = 8, method: str = "slerp"
    ) -> Interpolation:
        # 1. Check inputs.
        a, b = self._latent(a, "a"), self._latent(b, "b")
        steps = _as_int("steps", steps)
        _check_range("steps", steps, 2, self.cfg.max_steps)
        if method not in ("slerp", "lerp"):
            raise ValueError(f"method must be 'slerp' or 'lerp', not {method!r}")
        # 2. Path in latent space; the endpoints are the inputs themselves, bit for bit.
        t = np.linspace(0.0, 1.0, steps)
        path = slerp(a, b, t) if method == "slerp" else lerp(a, b, t)
        path[0], path[-1] = a, b
        # 3. Decode and lay out.
        frames = self._decode(path)
        strip = Image.new("RGB", (self.image_size * steps, self.image_size), (255, 255, 255))
        for i, frame in enumerate(frames):
            strip.paste(frame, (i * self.image_size, 0))
        return Interpolation(frames, strip, method, steps)

    def write_animation(
        self,
        frames: Sequence[Image.Image],
        folder: str | Path,
        fps: int | None = None,
        boomerang: bool = True,
    ) -> tuple[Path, Path]:
        """Animated GIF (Pillow) and MP4 (H.264, yuv420p, via imageio-ffmpeg) of ``frames``.

        Frames are upscaled with NEAREST to at least the display size (>= 256 px): a 64 px GIF is a
        postage stamp, and smooth resampling would blur the pixels the model actually produced.
        """
        # 1. Check inputs.
        frames = list(frames)
        if not frames or not all(isinstance(f, Image.Image) for f in frames):
            raise ValueError("frames must be a non-empty list of images")
        if len(frames) > 4 * self.cfg.max_steps:
            raise ValueError(f"{len(frames)} frames; the limit is {4 * self.cfg.max_steps}")
        fps = _as_int("fps", self.cfg.animation_fps if fps is None else fps)
        _check_range("fps", fps, 1, 60)
        # 2. Play forth and back (without repeating the turning frames), crisp and large.
        if boomerang and len(frames) > 2:
            frames = frames + frames[-2:0:-1]
        side = max(256, self.cfg.display_size)
        big = [_even_canvas(upscale(f.convert("RGB"), side)) for f in frames]
        # 3. Write both files under one unique stem.
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"latent-walk-{uuid.uuid4().hex[:8]}"
        gif, mp4 = stem.with_suffix(".gif"), stem.with_suffix(".mp4")
        big[0].save(gif, save_all=True, append_images=big[1:], duration=round(1000 / fps), loop=0)
        _write_mp4(mp4, big, fps)
        return gif, mp4

    # -- principal directions and attributes ---------------------------------------------------------
    def steer_latent(self, latent: np.ndarray, coefficients: Sequence[float]) -> np.ndarray:
        """latent + sum_i c_i * sqrt(var_i) * component_i, with c_i in std units.

        Coefficients beyond ``directions`` are accepted only when zero, so a UI with a fixed number of
        sliders works for every model (all-zero = the latent unchanged, even without an atlas).
        """
        z = self._latent(latent)
        if isinstance(coefficients, str | bytes) or not hasattr(coefficients, "__iter__"):
            raise ValueError("coefficients must be a list of numbers (one per direction)")
        coeffs = [_as_float(f"coefficient {i + 1}", c) for i, c in enumerate(coefficients)]
        limit = self.cfg.max_strength
        for i, c in enumerate(coeffs):
            _check_range(f"coefficient {i + 1}", c, -limit, limit)
        used = [(i, c) for i, c in enumerate(coeffs) if c != 0.0]
        if not used:
            return z
        atlas = self._need_atlas("steering along principal directions")
        if used[-1][0] >= self.directions:
            raise ValueError(
                f"coefficient {used[-1][0] + 1} is set but only {self.directions} directions exist"
            )
        offset = np.zeros(z.size, dtype=np.float64)
        for i, c in used:
            offset += c * math.sqrt(atlas.variance[i]) * atlas.components[i]
        return (z.astype(np.float64) + offset.reshape(z.shape)).astype(np.float32)

    def steer(self, latent: np.ndarray, coefficients: Sequence[float]) -> Image.Image:
        return self.decode(self.steer_latent(latent, coefficients))

    def attribute_vector(self, positive: str, negative: str) -> Attribute:
        """Mean posterior latent of the rows matching ``positive`` minus that of ``negative``.

        A side is a caption phrase ("smiling", "cat face") or alternatives ("cat, kitten"); a row matches
        an alternative when its name, caption or keywords contain all its words. Rows matching both sides
        are left out of both, so "face" vs "smiling face" still means something.
        """
        atlas = self._need_atlas("attribute arithmetic")
        for name, text in (("positive", positive), ("negative", negative)):
            if not isinstance(text, str) or not _words(text):
                raise ValueError(f"{name} must name something, e.g. 'smiling' or 'cat'")
            if len(text) > 200:
                raise ValueError(f"{name} is {len(text)} characters; the limit is 200")
        pos, neg = atlas.matching_rows(positive), atlas.matching_rows(negative)
        both = np.intersect1d(pos, neg)
        pos, neg = np.setdiff1d(pos, both), np.setdiff1d(neg, both)
        for name, text, rows in (("positive", positive, pos), ("negative", negative, neg)):
            if len(rows) == 0:
                extra = " that is not also matched by the other side" if len(both) else ""
                raise ValueError(f"no corpus item matches {name} {text.strip()!r}{extra}")
        vector = atlas.means[pos].astype(np.float64).mean(0) - atlas.means[neg].astype(np.float64).mean(0)
        return Attribute(
            vector.astype(np.float32).reshape(self.latent_shape),
            len(pos),
            len(neg),
            positive.strip(),
            negative.strip(),
        )

    def apply_latent(self, latent: np.ndarray, vector: np.ndarray, strength: float) -> np.ndarray:
        z, v = self._latent(latent), self._latent(vector, "vector")
        strength = _as_float("strength", strength)
        _check_range("strength", strength, -self.cfg.max_strength, self.cfg.max_strength)
        return (z + np.float32(strength) * v).astype(np.float32)

    def apply(self, latent: np.ndarray, vector: np.ndarray, strength: float) -> Image.Image:
        return self.decode(self.apply_latent(latent, vector, strength))

    # -- corpus ----------------------------------------------------------------------------------------
    def search(self, query: str, limit: int = 24) -> list[CorpusItem]:
        atlas = self._need_atlas("corpus search")
        if not isinstance(query, str):
            raise ValueError("query must be text")
        if len(query) > 200:
            raise ValueError(f"query is {len(query)} characters; the limit is 200")
        limit = _as_int("limit", limit)
        _check_range("limit", limit, 1, 500)
        return atlas.search(query, limit)

    def corpus_latent(self, row: int) -> np.ndarray:
        atlas = self._need_atlas("corpus latents")
        row = _as_int("row", row)
        _check_range("row", row, 0, len(atlas.items) - 1)
        return atlas.means[row].reshape(self.latent_shape).copy()

    def corpus_map(self, size: int = 512) -> CorpusMap:
        """Scatter of the corpus on PC1/PC2 coloured by style; drawn once per size (~0.5 s), then cached."""
        atlas = self._need_atlas("the corpus map")
        size = _as_int("size", size)
        _check_range("size", size, 128, 2048)
        with self._map_lock:
            if self._map is None or self._map.image.size != (size, size):
                self._map = _draw_map(atlas, size)
            return self._map

    def pixel_to_latent(self, px: float, py: float) -> np.ndarray:
        """A click on the last drawn corpus map (512 px if none was drawn yet) -> a full latent."""
        drawn = self._map
        corpus_map = drawn if drawn is not None else self.corpus_map()
        return corpus_map.pixel_to_latent(px, py).reshape(self.latent_shape)

    def nearest(self, latent: np.ndarray, k: int = 5) -> list[tuple[CorpusItem, float]]:
        """The k corpus rows whose posterior means are closest (Euclidean) to ``latent``."""
        atlas = self._need_atlas("nearest neighbours")
        z = self._latent(latent).reshape(-1)
        k = _as_int("k", k)
        _check_range("k", k, 1, 100)
        dist = np.linalg.norm(atlas.means - z[None], axis=1)
        order = np.argsort(dist, kind="stable")[:k]
        return [(atlas.items[i], float(dist[i])) for i in order]

    # -- spatial latents ---------------------------------------------------------------------------------
    def channels(self, latent: np.ndarray) -> list[Image.Image]:
        """Spatial latents: one grayscale image per channel (min-max normalised), upscaled crisply.

        Vector latents have no channels: they come back as a single bar chart of the vector, so a UI can
        show "the latent" for either kind.
        """
        z = self._latent(latent)
        side = self.cfg.display_size
        if self.kind == "vector":
            return [_bar_chart(z, side, side // 2)]
        images = []
        for channel in z:
            lo, hi = float(channel.min()), float(channel.max())
            norm = (channel - lo) / (hi - lo) if hi - lo > 1e-12 else np.full_like(channel, 0.5)
            images.append(upscale(to_pil(norm), side))
        return images


def _write_mp4(path: Path, frames: list[Image.Image], fps: int) -> None:
    import imageio_ffmpeg

    w, h = frames[0].size
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
        output_params=["-threads", "1", "-movflags", "+faststart"],
    )
    writer.send(None)  # start ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"), dtype=np.uint8)).tobytes())
    finally:
        writer.close()


def _draw_map(atlas: LatentAtlas, size: int) -> CorpusMap:
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
