"""Text to image: one pipeline over optional generators (latent diffusion, GAN) and an optional scorer.

``ImageParams`` is the request's schema: the Image tab's controls, the ``/image_generate`` signature, the
PNG metadata and the checks all come from it. Each generator (``pipelines/diffusion.py``,
``pipelines/gan.py``) knows its model; the pipeline checks the request once, resolves the seed, runs the
chosen generator on the compute thread and rates every image with the prompt-match scorer. The UI never sees
a tensor: results are PIL images plus the parameters that made them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigc_demo import validation
from aigc_demo.compute import compute_thread, on_worker
from aigc_demo.config import ImageConfig, model_name
from aigc_demo.content_filter import check_images, check_text
from aigc_demo.device import configure_threads, pick_device
from aigc_demo.imaging import to_pil
from aigc_demo.pipelines.cpu_compile import compile_in_background, use_compile_cache
from aigc_demo.pipelines.diffusion import SCHEDULER_NAMES, DiffusionGenerator, load_diffusion
from aigc_demo.pipelines.gan import Z_OFFSET_LIMIT, GanGenerator
from aigc_demo.pipelines.generator import Drawn, ImageGenerator, Progress
from aigc_demo.pipelines.scoring import PromptScorer
from aigc_demo.provenance.copies import CopyCheck, CopyIndex
from aigc_demo.schema import Config, Schema, param

log = logging.getLogger(__name__)


def generator_param():
    """Which generator draws: the diffusion model (default), its few-step student, or the one-step GAN."""
    return param(
        "diffusion", label="image_generator", choices=("diffusion", "student", "gan"),
        choice_labels={"diffusion": "image_diffusion", "student": "image_student", "gan": "image_gan"},
    )  # fmt: skip


@dataclass(frozen=True)
class ImageParams:
    """One text-to-image request. Field order is the API's argument order."""

    prompt: str = param(
        "", label="image_prompt", max_chars=Config("max_prompt_chars"), required=True, lines=2,
        example="red apple, in OpenMoji style",
    )  # fmt: skip
    negative_prompt: str = param("", label="image_negative", max_chars=Config("max_prompt_chars"))
    num_inference_steps: int = param(
        20, label="image_steps", low=1, high=Config("max_steps"), step=1, default_from="num_inference_steps"
    )
    guidance_scale: float = param(
        5.0,
        label="image_guidance",
        low=0.0,
        high=Config("max_guidance"),
        step=0.5,
        default_from="guidance_scale",
    )
    scheduler: str = param(
        "DPM++ 2M", label="image_scheduler", choices=SCHEDULER_NAMES, default_from="scheduler"
    )
    seed: int = param(-1, label="seed", seed=True)  # -1 = random; image i of a batch uses seed + i
    batch_size: int = param(1, label="image_batch_size", low=1, high=Config("max_batch_size"), step=1)
    # 0 = the model's native size; which sizes a model can make is its generator's check
    width: int = param(0, label="image_width", low=0, step=8)
    height: int = param(0, label="image_height", low=0, step=8)
    generator: str = generator_param()
    # The "hires" stage: 64-px pictures enlarged 4x by the project's upscaler (weights/emoji-upscaler).
    upscale: bool = param(False, label="image_upscale")
    # A picture adapter from the Tune tab ("" = none): the diffusion model with a word it was taught.
    adapter: str = param("", label="image_adapter", max_chars=40)


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
    decoder: str = "none"  # the latent decoder's, the same way


class Interrupt:
    """Set by the UI's Interrupt button (one per user session); checked before every denoising step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


# Keys of a result's parameters that are not request fields: the model that made it.
RESULT_KEYS: dict[str, type] = {"model": str}


class ImagePipeline:
    """Serves the loaded generators to every user; loaded once, runs on the shared compute thread."""

    def __init__(
        self,
        generators: list[ImageGenerator],
        cfg: ImageConfig,
        scorer: PromptScorer | None = None,
        upscaler: torch.nn.Module | None = None,
        copy_index: CopyIndex | None = None,
    ):
        if not generators:
            raise ValueError("an image pipeline needs at least one generator")
        self.generators: dict[str, ImageGenerator] = {g.name: g for g in generators}
        self.cfg = cfg
        self.scorer = scorer
        self.upscaler = upscaler  # EmojiUpscaler: (B, 3, H, W) in [0, 1] -> (B, 3, 4H, 4W)
        self.copy_index = copy_index  # the training pictures' fingerprints (provenance/copies.py)
        self.worker = compute_thread()
        self.schema = Schema(ImageParams, cfg, defaults={"generator": self.default_generator})
        self.adapters = None  # the Tune tab's ImageTuner, when loaded: .names() and .generator(name)
        self._drawing = 0  # requests being drawn (a fine-tune on this thread waits for them)
        self._drawing_lock = threading.Lock()

    def attach_adapters(self, source) -> None:
        """Serve picture adapters from ``source`` (``names()``, ``generator(name)``) in ``adapter``."""
        self.adapters = source

    def adapter_names(self) -> list[str]:
        return self.adapters.names() if self.adapters is not None else []

    @property
    def busy(self) -> bool:
        """A picture is being drawn: a fine-tune sharing the compute thread waits between its steps."""
        return self._drawing > 0

    def _count_drawing(self, change: int) -> None:
        with self._drawing_lock:
            self._drawing += change

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: ImageConfig) -> ImagePipeline:
        """Load on the compute thread: its thread count and the compiled UNet's guards are the ones that serve."""
        return compute_thread().run(cls._load, cfg)

    @classmethod
    def _load(cls, cfg: ImageConfig) -> ImagePipeline:
        from aigc_demo.models import EmojiUpscaler, GANGenerator, PromptMatch, load_text_encoder

        configure_threads(cfg.threads)
        plan = pick_device()
        dtypes = {"auto": plan.dtype, "float32": torch.float32, "bfloat16": torch.bfloat16}
        dtype = dtypes[validation.choice("AIGC_IMAGE_DTYPE", cfg.dtype, list(dtypes))]
        validation.choice("AIGC_IMAGE_COMPILE", cfg.compile, ["off", "auto", "background", "now"])
        t0 = time.perf_counter()
        gan_folder = bool(cfg.gan) and Path(cfg.gan, "config.json").is_file()
        scorer_folder = bool(cfg.scorer) and Path(cfg.scorer, "config.json").is_file()
        own_folder = any(
            Path(m).is_dir() and not Path(m, "text_encoder").is_dir() for m in (cfg.model, cfg.student) if m
        )
        encoder = load_text_encoder(cfg.text_encoder) if (own_folder or gan_folder or scorer_folder) else None
        generators: list[ImageGenerator] = []
        compiling = cfg.compile != "off" and plan.device.type == "cpu"
        try:
            sd, plain_unet = load_diffusion(cfg.model, encoder, dtype, plan.device, keep_plain_unet=compiling)
            diffusion = DiffusionGenerator(sd, cfg.model, batch_images=cfg.batch_images)
            generators.append(diffusion)
        except FileNotFoundError:
            if not gan_folder:
                raise
            log.warning("image model %s not found: serving the GAN only", cfg.model)
            diffusion = plain_unet = None
        plain_student = None
        if cfg.student:
            try:
                student, plain_student = load_diffusion(
                    cfg.student, encoder, dtype, plan.device, keep_plain_unet=compiling
                )
                generators.append(
                    DiffusionGenerator(
                        student, cfg.student, "student", cfg.student_steps, batch_images=cfg.batch_images
                    )
                )
            except FileNotFoundError as err:
                log.warning("few-step student not loaded (no live mode): %s", err)
        if gan_folder:
            gan = GANGenerator.from_pretrained(cfg.gan).to(plan.device)
            generators.append(GanGenerator(gan, encoder, cfg.gan))
        scorer = None
        if scorer_folder:
            scorer = PromptScorer(PromptMatch.from_pretrained(cfg.scorer).to(plan.device), encoder)
        copy_index = None
        if scorer is not None and cfg.copy_index and Path(cfg.copy_index, "index.json").is_file():
            copy_index = CopyIndex.from_folder(Path(cfg.copy_index), scorer)
        upscaler = None
        if cfg.upscaler and Path(cfg.upscaler, "config.json").is_file():
            upscaler = EmojiUpscaler.from_pretrained(cfg.upscaler).to(plan.device)
        log.info(
            "image pipeline: %s on %s %s in %.1f s", cfg.model, plan.device, dtype, time.perf_counter() - t0
        )
        pipe = cls(generators, cfg, scorer, upscaler, copy_index)
        if compiling:
            pipe._compile(plain_unet, plain_student)
        return pipe

    def _compile(self, plain_unet, plain_student) -> None:
        """Compile the diffusion model's UNet for its default request at batch 1 and at the largest batch (an
        A1111 habit), then the student's for the Live mode's request (batch 1, unguided), each model's decoder
        after its UNet (one for both when their autoencoders are the same); other requests run eager. "auto"
        compiles now what the cache holds kernels for, the rest in the background."""
        cfg = self.cfg
        use_compile_cache(cfg.compile_cache)
        jobs = {}
        for generator, plain, batches in (
            (self.diffusion, plain_unet, sorted({1, cfg.max_batch_size})),
            (self.student, plain_student, [1]),
        ):
            if generator is not None and plain is not None:
                defaults = self.schema.parse(prompt="warm-up", generator=generator.name)
                shared = (
                    generator is self.student
                    and self.diffusion is not None
                    and generator.share_decoder(self.diffusion)
                )
                parts = generator.compile_jobs(
                    plain, batches, defaults, cfg.compile_cache, decoder=not shared
                )
                jobs.update({f"{generator.name} {part}": job for part, job in parts.items()})
        now = [
            name
            for name, job in jobs.items()
            if cfg.compile == "now" or (cfg.compile == "auto" and job.cached)
        ]
        for name, job in jobs.items():
            cached = "kernels in the cache" if job.cached else "not cached"
            log.info("%s (%s): compiling %s", name, cached, "now" if name in now else "in the background")
        for name in now:
            jobs[name].run()
        compile_in_background([job for name, job in jobs.items() if name not in now])

    # -- what is loaded -------------------------------------------------------------------------------
    @property
    def diffusion(self) -> DiffusionGenerator | None:
        return self.generators.get("diffusion")  # type: ignore[return-value]

    @property
    def student(self) -> DiffusionGenerator | None:
        return self.generators.get("student")  # type: ignore[return-value]

    @property
    def gan(self) -> GanGenerator | None:
        return self.generators.get("gan")  # type: ignore[return-value]

    @property
    def default_generator(self) -> str:
        return next(iter(self.generators))

    @property
    def dtype(self) -> torch.dtype:
        return self.diffusion.dtype if self.diffusion is not None else torch.float32

    # -- checks ---------------------------------------------------------------------------------------
    def check(self, params: ImageParams | dict) -> tuple[ImageParams, list[str]]:
        """A checked copy of ``params`` (seed resolved, size filled in) and warnings; ValueError if bad."""
        params = self.schema.parse(params)
        check_text(params.prompt, "prompt")
        generator = self.generator_for(params)
        width, height = generator.check_size(params.width, params.height, self.cfg.max_pixels)
        params, warnings = generator.settle(params)
        warnings += [
            w
            for name in ("prompt", "negative_prompt")
            if (w := generator.prompt_warning(name, getattr(params, name)))
        ]
        seed = validation.seed(params.seed, reserve=self.cfg.max_batch_size)
        return replace(params, width=width, height=height, seed=seed), warnings

    def generator_for(self, params: ImageParams) -> ImageGenerator:
        """The generator that draws ``params``: a loaded one, or the diffusion model with an adapter."""
        generator = self.generators.get(params.generator)
        if generator is None:
            missing = {
                "gan": "no GAN is loaded (train one with `python -m aigc_demo.training.train_gan`)",
                "student": "no few-step student is loaded (AIGC_IMAGE_STUDENT)",
            }
            raise ValueError(missing.get(params.generator, "no diffusion model is loaded"))
        if not params.adapter:
            return generator
        if params.generator != "diffusion":
            raise ValueError("a picture adapter works with the diffusion model: choose it as the generator")
        if self.adapters is None:
            raise ValueError("picture adapters need the Tune tab's picture tuner, which is not loaded")
        return self.adapters.generator(params.adapter)

    # -- generation -----------------------------------------------------------------------------------
    @on_worker(ahead=True)  # steps do not wait while each progress event travels to the client
    def generate(
        self,
        params: ImageParams | dict,
        interrupt: Interrupt | None = None,
        preview_every_s: float | None = 0.25,
    ) -> Iterator[ImageProgress | ImageResult]:
        """Yields ImageProgress after each step, then one ImageResult.

        A progress event carries previews when ``preview_every_s`` has passed since the last ones (an eye
        cannot follow more; each costs a VAE decode); None = no previews (scripts, the API, the benchmark).
        """
        # 1. Check the request and pick its generator.
        params, warnings = self.check(params)
        generator = self.generator_for(params)
        interrupt = interrupt or Interrupt()
        t0 = time.perf_counter()
        # 2. Draw, reporting each step.
        drawn: Drawn | None = None
        step = 0
        self._count_drawing(+1)
        try:
            for event in generator.generate(params, interrupt, preview_every_s):
                if isinstance(event, Progress):
                    step, eta = event.step, event.elapsed_s / event.step * (event.total - event.step)
                    yield ImageProgress(event.step, event.total, event.elapsed_s, eta, event.previews)
                else:
                    drawn = event
        except GeneratorExit:  # the caller closed the stream: a cancelled job, a client gone
            log.info("image: abandoned by its caller after step %d of %d", step, params.num_inference_steps)
            raise
        finally:
            self._count_drawing(-1)
        # 3. Withhold what the image check flags; rate the rest against the prompt (at the size drawn), enlarge
        # if asked, record what made each.
        kept = withhold_flagged(drawn.images, warnings)
        images = [drawn.images[i] for i in kept]
        scores = self.prompt_match(images, params.prompt)
        if params.upscale:
            images, warning = self.upscaled_or_warning(images)
            warnings += [warning] if warning else []
        made = [
            GeneratedImage(img, self.parameters_of(params, params.seed + i, drawn.interrupted), score)
            for i, img, score in zip(kept, images, scores, strict=True)
        ]
        if drawn.interrupted:
            warnings.append("Interrupted: these are the predictions at the step where it stopped.")
        yield ImageResult(
            made,
            params.seed,
            time.perf_counter() - t0,
            drawn.interrupted,
            warnings,
            drawn.unet,
            drawn.decoder,
        )

    def __call__(self, params: ImageParams | dict, interrupt: Interrupt | None = None) -> ImageResult:
        """Run to the end and return the result (for scripts, tests and the benchmark)."""
        result = None
        for result in self.generate(params, interrupt, preview_every_s=None):
            pass
        return result

    def parameters_of(self, params: ImageParams, seed: int, interrupted: bool = False) -> dict:
        """What a PNG records: the request fields that shape an image, its own seed and the model."""
        out = {k: v for k, v in asdict(params).items() if k != "batch_size"}
        out.update(seed=seed, model=model_name(self.generators[params.generator].model_id))
        if interrupted:
            out["interrupted"] = True
        return out

    @on_worker
    def draw_panels(
        self, params: ImageParams | dict, panels: list[tuple[str, int]], interrupt: Interrupt | None = None
    ) -> Iterator[ImageProgress | Drawn]:
        """One picture per (prompt, seed) of ``panels`` with the rest of ``params``: one batch through the
        diffusion model (the Story tab's panels), a call per panel for the GAN. Progress, then one Drawn."""
        if not panels:
            raise ValueError("no panels to draw")
        base = {**_as_dict(params), "batch_size": 1}
        params, _ = self.check({**base, "prompt": panels[0][0]})
        panels = [
            (c.prompt, c.seed)
            for c in (self.schema.parse({**base, "prompt": p, "seed": s}) for p, s in panels)
        ]
        interrupt = interrupt or Interrupt()
        if params.generator == "gan":
            drawn = Drawn([self.gan.draw(prompt, [seed])[0] for prompt, seed in panels], interrupted=False)
            withhold_flagged(drawn.images, [], keep_all=True)
            yield drawn
            return
        for event in self.generator_for(params).generate(params, interrupt, None, panels):
            if isinstance(event, Progress):
                eta = event.elapsed_s / event.step * (event.total - event.step)
                yield ImageProgress(event.step, event.total, event.elapsed_s, eta, [])
            else:
                withhold_flagged(event.images, [], keep_all=True)
                yield event

    UPSCALE_MAX_SIDE = 128  # the upscaler is trained on 64-px art; larger pictures are left as they are

    def upscaled_or_warning(self, images: list[Image.Image]) -> tuple[list[Image.Image], str | None]:
        if self.upscaler is None:
            return images, "Upscale x4 is off: no upscaler is loaded (AIGC_IMAGE_UPSCALER)."
        if max(images[0].size) > self.UPSCALE_MAX_SIDE:
            return (
                images,
                f"Upscale x4 is for pictures up to {self.UPSCALE_MAX_SIDE} px; these are left as drawn.",
            )
        return self.upscale(images), None

    @on_worker
    def upscale(self, images: list[Image.Image]) -> list[Image.Image]:
        """Each picture 4x larger through the upscaler (NEAREST where none is loaded: crisp, never blurred)."""
        if self.upscaler is None:
            return [img.resize((img.width * 4, img.height * 4), Image.Resampling.NEAREST) for img in images]
        param = next(self.upscaler.parameters())
        x = torch.from_numpy(np.stack([np.asarray(img.convert("RGB")) for img in images]))
        x = x.permute(0, 3, 1, 2).to(param.device, param.dtype) / 255.0
        with torch.inference_mode():
            out = self.upscaler(x)
        return [to_pil(img) for img in out]

    @on_worker
    def latent_path(self, start: Image.Image, end: Image.Image, frames: int) -> list[Image.Image]:
        """In-between pictures of two images through the diffusion model's autoencoder ([] without one)."""
        if self.diffusion is None or frames <= 0:
            return []
        return self.diffusion.latent_path(start, end, frames)

    @on_worker
    def prompt_match(self, images: list[Image.Image], prompt: str) -> list[float | None]:
        """Cosine of each image and the prompt in the scorer's space (None for each without a scorer)."""
        if self.scorer is None:
            return [None] * len(images)
        return self.scorer(images, prompt)

    @on_worker
    def copies(self, image: Image.Image) -> CopyCheck:
        """The training pictures nearest to ``image``, with their licences, and whether it is a likely copy."""
        if self.copy_index is None:
            raise ValueError("the copy check needs the scorer and weights/copy-index (AIGC_IMAGE_COPY_INDEX)")
        return self.copy_index.check(image)

    @on_worker(light=True)  # one GAN step per z slider move
    def gan_explore(self, params: ImageParams | dict, z_offset) -> GeneratedImage:
        """One GAN image with its first len(z_offset) noise dimensions moved (the z sliders)."""
        params, _ = self.check({**_as_dict(params), "generator": "gan", "batch_size": 1})
        offset = validation.numbers_list(
            "z_offset", z_offset, self.gan.z_dim, -Z_OFFSET_LIMIT, Z_OFFSET_LIMIT
        )
        image = self.gan.draw(params.prompt, [params.seed], np.asarray(offset, dtype=np.float32))[0]
        return GeneratedImage(
            image, self.parameters_of(params, params.seed), self.prompt_match([image], params.prompt)[0]
        )

    def live(self, prompt: str, seed: int = 0, upscale: bool = False) -> ImageResult:
        """One picture by the few-step student in ``live_steps`` steps: the live mode, which redraws as the
        prompt changes under a fixed seed."""
        if self.student is None:
            raise ValueError(
                "the live mode needs the few-step student (AIGC_IMAGE_STUDENT), which is not loaded"
            )
        request = {"prompt": prompt, "seed": seed, "upscale": upscale, "generator": "student"}
        return self({**request, "num_inference_steps": self.cfg.live_steps})

    def warm_up(self) -> None:
        """A 2-step image from each diffusion model: builds the kernels and pages in the weights before a
        visitor waits."""
        for name in self.generators:
            self(self.schema.parse(prompt="warm-up", num_inference_steps=2, seed=0, generator=name))


def withhold_flagged(images: list[Image.Image], warnings: list[str], keep_all: bool = False) -> list[int]:
    """Indices of the pictures the image check (content_filter.check_images) passes; a warning names what
    was withheld. ValueError when nothing is left, or when ``keep_all`` (a story needs every panel)."""
    hits = check_images(images)
    kept = [i for i, hit in enumerate(hits) if hit is None]
    if len(kept) < len(images):
        hit = next(h for h in hits if h is not None)
        what = f"it reads as {hit.concept} ({hit.reason})"
        if keep_all or not kept:
            one = "A picture" if len(images) > 1 else "The picture"
            raise ValueError(f"{one} was withheld by the image check: {what}. Change the prompt or the seed.")
        warnings.append(
            f"{len(images) - len(kept)} of {len(images)} pictures were withheld by the image check: {what}."
        )
    return kept


def _as_dict(params) -> dict:
    return dict(params) if isinstance(params, dict) else asdict(params)
