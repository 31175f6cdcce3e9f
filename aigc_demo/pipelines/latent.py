"""Latent exploration: encode, decode, sample, interpolate, steer and map an autoencoder's latent space.

Two kinds of model serve the same interface (the UI never sees a tensor, only PIL images, numpy arrays,
floats and frozen dataclasses):

- ``vector``: the project's ``EmojiVAE`` (one global latent vector, default ``weights/vae-emoji``). With
  its *atlas* (``pipelines/latent_atlas.py``: every corpus row's posterior, a PCA and the captions) it also
  offers principal-direction sliders, caption arithmetic, search and a 2D map.
- ``spatial``: any diffusers ``AutoencoderKL`` (e.g. ``weights/autoencoder-kl-emoji``, 64x64 -> 4x16x16,
  or ``stabilityai/sd-vae-ft-mse``). Its latents are exposed *scaled* by ``config.scaling_factor`` (what a
  latent diffusion model sees, roughly unit variance), so the N(0, I) prior of ``sample`` and the slerp of
  ``interpolate`` mean the same thing for both kinds.

Requests are ``SampleParams``, ``InterpolationParams`` and ``AttributeParams``: the checks, the Latent tab's
controls and the API signatures all come from them. Images go in and out at the model's resolution;
``imaging.upscale`` enlarges them crisply for display, ``media.write_animation`` turns a walk into GIF + MP4.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from aigc_demo import validation
from aigc_demo.compute import compute_thread, on_worker
from aigc_demo.config import LatentConfig
from aigc_demo.device import configure_threads, pick_device
from aigc_demo.imaging import limit_pil_pixels, load_image, psnr, to_pil, upscale
from aigc_demo.models import EmojiVAE
from aigc_demo.pipelines.latent_atlas import (
    ATLAS_INDEX,
    ATLAS_TENSORS,
    CorpusItem,
    CorpusMap,
    LatentAtlas,
    Placement,
    draw_map,
    load_atlas,
    place_on_map,
    words,
)
from aigc_demo.schema import Config, Schema, param

log = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 200  # attribute phrases and search queries: a caption is a few words
MAX_PLACED = 256  # pictures placed on the corpus map at once (one encoder pass each, ~1 ms)


# ----------------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleParams:
    n: int = param(16, label="latent_count", low=1, high=Config("max_samples"), step=1)
    seed: int = param(-1, label="seed", seed=True)  # -1 = a fresh seed per request, returned with the images
    # 0 = the centre of the distribution; 1 = as spread as the data (or the prior).
    temperature: float = param(
        1.0, label="latent_temperature", low=0.0, high=Config("max_temperature"), step=0.05
    )
    # "posterior": the aggregate posterior, the mixture of every corpus row's posterior (a random row's code
    # plus its own uncertainty: the prior a VAE's encoder actually fills, as in VampPrior), the default because
    # its samples are variations of real emoji; "corpus": a Gaussian fitted to the corpus latents (one Gaussian
    # spans the gaps between emoji, so its samples mix their parts); "prior": N(0, I), as the textbooks do.
    # Bound per model: the first two need an atlas.
    source: str = param(
        "posterior",
        label="latent_source",
        choices=("posterior", "corpus", "prior"),
        choice_labels={
            "corpus": "latent_source_corpus",
            "posterior": "latent_source_posterior",
            "prior": "latent_source_prior",
        },
    )


@dataclass(frozen=True)
class InterpolationParams:
    # Frames including both ends; 3 is the least that shows a middle.
    steps: int = param(10, label="latent_steps", low=3, high=Config("max_steps"), step=1)
    # slerp keeps a typical norm between two typical latents; lerp cuts towards the origin (washed-out middle).
    method: str = param("slerp", label="latent_method", choices=("slerp", "lerp"))


@dataclass(frozen=True)
class AttributeParams:
    # A caption phrase ("smiling", "cat face") or alternatives ("cat, kitten"); see attribute_vector.
    positive: str = param(
        "smiling", label="latent_positive", max_chars=MAX_CAPTION_CHARS, required=True, example="smiling"
    )
    negative: str = param(
        "neutral", label="latent_negative", max_chars=MAX_CAPTION_CHARS, required=True, example="neutral"
    )
    # In units of the attribute vector (mean difference): 1 = move by the whole difference.
    strength: float = param(
        1.0, label="latent_strength", low=-Config("max_strength"), high=Config("max_strength"), step=0.1
    )


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
    seed: int  # the seed used (drawn fresh when -1 was asked): pass it back to get these again
    params: SampleParams  # the request, with that seed


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


@dataclass(frozen=True, eq=False)
class AttributeEdit:
    image: Image.Image  # decode(latent + strength * attribute.vector)
    attribute: Attribute
    strength: float


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


def _bar_chart(vector: np.ndarray, width: int, height: int) -> Image.Image:
    """A latent vector as bars around a zero line (scale: at least +-3 std)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    mid = height // 2
    top = max(3.0, float(np.abs(vector).max(initial=0.0)))
    bar = width / max(1, len(vector))
    gap = 1 if bar >= 4 else 0  # narrow bars (a 128-d latent in 256 px) touch: a gap would leave no bar
    for i, v in enumerate(vector):
        y = mid - v / top * (mid - 2)
        colour = (31, 119, 180) if v >= 0 else (214, 39, 40)
        x0 = i * bar + gap
        draw.rectangle((x0, min(mid, y), max(x0, (i + 1) * bar - 1 - gap), max(mid, y)), fill=colour)
    draw.line((0, mid, width, mid), fill=(0, 0, 0))
    return img


# ----------------------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------------------
class LatentPipeline:
    """One resident autoencoder (+ optional atlas) shared by every user; all methods are stateless.

    Model work runs on ``self.worker`` (``aigc_demo/compute.py``), whoever calls.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        atlas: LatentAtlas | None = None,
        cfg: LatentConfig | None = None,
        model_id: str | None = None,
    ):
        self.cfg = cfg or LatentConfig()
        self.worker = compute_thread()
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
        # Drawing from the corpus needs its latents: without an atlas, the prior is the only source.
        sources = ("posterior", "corpus", "prior") if atlas is not None else ("prior",)
        self.sample_schema = Schema(
            SampleParams, self.cfg, choices={"source": sources}, defaults={"source": sources[0]}
        )
        self.interpolation_schema = Schema(InterpolationParams, self.cfg)
        self.attribute_schema = Schema(AttributeParams, self.cfg)

    @classmethod
    def from_config(cls, cfg: LatentConfig | None = None) -> LatentPipeline:
        """Load on the compute thread, whose thread count then serves every call."""
        return compute_thread().run(cls._load, cfg or LatentConfig())

    @classmethod
    def _load(cls, cfg: LatentConfig) -> LatentPipeline:
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

    def warm_up(self) -> None:
        """Draw the corpus map and decode once, so the first visitor's click is as fast as the rest."""
        if self.has_atlas:
            self.corpus_map()
            self.decode(self.corpus_latent(0))
        else:
            self.decode(np.zeros(self.latent_shape, dtype=np.float32))

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
        """PIL / numpy / path / bytes / file dict -> RGB on white, centre-cropped square at the model's size."""
        cfg = self.cfg
        return load_image(image, cfg.min_image_side, cfg.max_image_pixels, self.image_size)

    @on_worker(light=True)
    def reconstruct(self, image) -> Reconstruction:
        # 1. Normalise the input exactly as the corpus was (RGB on white, square, model size).
        original = self.prepare_image(image)
        # 2. Encode to the posterior mean (the most likely latent; no sampling noise).
        latent = self._encode(original)
        # 3. Decode and score against what the model actually saw.
        recon = self._decode(latent[None])[0]
        return Reconstruction(original, recon, latent, psnr(original, recon))

    @on_worker(light=True)  # a slider's picture: milliseconds, watched
    def decode(self, latent: np.ndarray) -> Image.Image:
        return self._decode(self._latent(latent)[None])[0]

    @on_worker
    def sample(self, params: SampleParams | Mapping | None = None, **values) -> Samples:
        """Decode ``n`` random latents scaled by ``temperature`` (0 = the centre), from ``source``."""
        # 1. Check the request; -1 draws a fresh seed from the OS, never from an RNG other code seeds.
        p = self.sample_schema.parse(params, **values)
        seed = validation.seed(p.seed)
        gen = torch.Generator().manual_seed(seed)
        # 2. Latents: N(0, I); a corpus row's posterior; or the corpus Gaussian (its PCA: mean + eps *
        #    sqrt(variance) @ components).
        if p.source == "prior":
            z = (torch.randn((p.n, *self.latent_shape), generator=gen) * p.temperature).numpy()
        elif p.source == "posterior":
            atlas = self._need_atlas("sampling the aggregate posterior")
            rows = torch.randint(len(atlas.means), (p.n,), generator=gen).numpy()
            eps = torch.randn((p.n, atlas.means.shape[1]), generator=gen).numpy()
            z = atlas.means[rows] + p.temperature * atlas.stds[rows] * eps
            z = z.reshape(p.n, *self.latent_shape).astype(np.float32)
        else:
            atlas = self._need_atlas("sampling from the corpus")
            eps = torch.randn((p.n, len(atlas.variance)), generator=gen, dtype=torch.float64).numpy()
            z = atlas.pca_mean + (eps * p.temperature * np.sqrt(atlas.variance)) @ atlas.components
            z = z.reshape(p.n, *self.latent_shape).astype(np.float32)
        # 3. Decode.
        return Samples(self._decode(z), z, seed, self.sample_schema.parse(p, seed=seed))

    @on_worker
    def interpolate(
        self, a: np.ndarray, b: np.ndarray, params: InterpolationParams | Mapping | None = None, **values
    ) -> Interpolation:
        # 1. Check inputs.
        a, b = self._latent(a, "a"), self._latent(b, "b")
        p = self.interpolation_schema.parse(params, **values)
        # 2. Path in latent space; the endpoints are the inputs themselves, bit for bit.
        t = np.linspace(0.0, 1.0, p.steps)
        path = slerp(a, b, t) if p.method == "slerp" else lerp(a, b, t)
        path[0], path[-1] = a, b
        # 3. Decode and lay out.
        frames = self._decode(path)
        strip = Image.new("RGB", (self.image_size * p.steps, self.image_size), (255, 255, 255))
        for i, frame in enumerate(frames):
            strip.paste(frame, (i * self.image_size, 0))
        return Interpolation(frames, strip, p.method, p.steps)

    # -- principal directions and attributes ---------------------------------------------------------
    def steer_latent(self, latent: np.ndarray, coefficients: Sequence[float]) -> np.ndarray:
        """latent + sum_i c_i * sqrt(var_i) * component_i, with c_i in std units.

        Coefficients beyond ``directions`` are accepted only when zero, so a UI with a fixed number of
        sliders works for every model (all-zero = the latent unchanged, even without an atlas).
        """
        z = self._latent(latent)
        limit = self.cfg.max_strength
        coeffs = validation.numbers_list("coefficients", coefficients, self.cfg.max_directions, -limit, limit)
        used = [(i, c) for i, c in enumerate(coeffs) if c != 0.0]
        if not used:
            return z
        atlas = self._need_atlas("steering along principal directions")
        if used[-1][0] >= self.directions:
            raise ValueError(
                f"coefficients[{used[-1][0]}] is set but only {self.directions} directions exist"
            )
        offset = np.zeros(z.size, dtype=np.float64)
        for i, c in used:
            offset += c * math.sqrt(atlas.variance[i]) * atlas.components[i]
        return (z.astype(np.float64) + offset.reshape(z.shape)).astype(np.float32)

    @on_worker(light=True)
    def steer(self, latent: np.ndarray, coefficients: Sequence[float]) -> Image.Image:
        return self.decode(self.steer_latent(latent, coefficients))

    def attribute_vector(self, positive: str, negative: str) -> Attribute:
        """Mean posterior latent of the rows matching ``positive`` minus that of ``negative``.

        A side is a caption phrase ("smiling", "cat face") or alternatives ("cat, kitten"); a row matches
        an alternative when its name, caption or keywords contain all its words. Rows matching both sides
        are left out of both, so "face" vs "smiling face" still means something.
        """
        atlas = self._need_atlas("attribute arithmetic")
        p = self.attribute_schema.parse(positive=positive, negative=negative)
        for name, text in (("positive", p.positive), ("negative", p.negative)):
            if not words(text):
                raise ValueError(f"{name} must name something (letters or digits), e.g. “smiling” or “cat”")
        pos, neg = atlas.matching_rows(p.positive), atlas.matching_rows(p.negative)
        both = np.intersect1d(pos, neg)
        pos, neg = np.setdiff1d(pos, both), np.setdiff1d(neg, both)
        for name, text, rows in (("positive", p.positive, pos), ("negative", p.negative, neg)):
            if len(rows) == 0:
                extra = " that is not also matched by the other side" if len(both) else ""
                raise ValueError(f"no corpus item matches {name} {validation.quoted(text)}{extra}")
        vector = atlas.means[pos].astype(np.float64).mean(0) - atlas.means[neg].astype(np.float64).mean(0)
        return Attribute(
            vector.astype(np.float32).reshape(self.latent_shape), len(pos), len(neg), p.positive, p.negative
        )

    def apply_latent(self, latent: np.ndarray, vector: np.ndarray, strength: float) -> np.ndarray:
        z, v = self._latent(latent), self._latent(vector, "vector")
        strength = self.attribute_schema["strength"].check(strength)
        return (z + np.float32(strength) * v).astype(np.float32)

    @on_worker
    def apply(self, latent: np.ndarray, vector: np.ndarray, strength: float) -> Image.Image:
        return self.decode(self.apply_latent(latent, vector, strength))

    @on_worker
    def edit(
        self, latent: np.ndarray, params: AttributeParams | Mapping | None = None, **values
    ) -> AttributeEdit:
        """``latent`` moved by ``strength`` times the attribute ``positive`` - ``negative``, decoded."""
        p = self.attribute_schema.parse(params, **values)
        attribute = self.attribute_vector(p.positive, p.negative)
        return AttributeEdit(self.apply(latent, attribute.vector, p.strength), attribute, p.strength)

    # -- corpus ----------------------------------------------------------------------------------------
    def search(self, query: str, limit: int = 24) -> list[CorpusItem]:
        atlas = self._need_atlas("corpus search")
        query = validation.text("query", query, MAX_CAPTION_CHARS)
        limit = validation.in_range("limit", validation.as_int("limit", limit), 1, 500)
        return atlas.search(query, limit)

    def corpus_latent(self, row: int) -> np.ndarray:
        row = self._row(row)  # first: it says so when there is no atlas
        return self.atlas.means[row].reshape(self.latent_shape).copy()

    def corpus_item(self, row: int) -> CorpusItem:
        row = self._row(row)
        return self.atlas.items[row]

    def _row(self, row) -> int:
        atlas = self._need_atlas("corpus latents")
        return validation.in_range("row", validation.as_int("row", row), 0, len(atlas.items) - 1)

    def corpus_map(self, size: int = 512) -> CorpusMap:
        """Scatter of the corpus on PC1/PC2 coloured by style; drawn once per size (~0.5 s), then cached."""
        atlas = self._need_atlas("the corpus map")
        size = validation.in_range("size", validation.as_int("size", size), 128, 2048)
        with self._map_lock:
            if self._map is None or self._map.image.size != (size, size):
                self._map = draw_map(atlas, size)
            return self._map

    def pixel_to_latent(self, px: float, py: float) -> np.ndarray:
        """A click on the last drawn corpus map (512 px if none was drawn yet) -> a full latent."""
        drawn = self._map
        corpus_map = drawn if drawn is not None else self.corpus_map()
        return corpus_map.pixel_to_latent(px, py).reshape(self.latent_shape)

    @on_worker
    def place(self, images: Sequence) -> Placement:
        """``images`` (generated or any) encoded and drawn as thumbnails on the corpus map, each with the
        corpus emoji nearest to it: what a set of pictures covers of the training data, seen at once."""
        atlas = self._need_atlas("placing pictures on the corpus map")
        if isinstance(images, (str, bytes, Image.Image)) or not isinstance(images, Sequence):
            raise ValueError("images must be a list of pictures")
        if not images:
            raise ValueError("no pictures to place on the map")
        if len(images) > MAX_PLACED:
            raise ValueError(f"{len(images)} pictures; at most {MAX_PLACED} are placed at once")
        prepared = [self.prepare_image(image) for image in images]
        latents = np.stack([self._encode(image) for image in prepared])
        return place_on_map(self.corpus_map(), latents, prepared, atlas)

    def nearest(self, latent: np.ndarray, k: int = 5) -> list[tuple[CorpusItem, float]]:
        """The k corpus rows whose posterior means are closest (Euclidean) to ``latent``."""
        atlas = self._need_atlas("nearest neighbours")
        z = self._latent(latent).reshape(-1)
        k = validation.in_range("k", validation.as_int("k", k), 1, 100)
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
