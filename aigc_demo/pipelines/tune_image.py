"""Teaching the diffusion model a new word from a few pictures: LoRA on the UNet's attention, live, on the CPU.

A person gives 4-16 pictures of one thing and a made-up word for it ("my-mascot"). ``ImageTuner`` trains LoRA
layers (peft, through diffusers' adapter support) on the attention projections of a fresh fp32 copy of the
served UNet with the objective the model was trained with (v-prediction, min-SNR weighting), every picture
captioned with the word alone. The text encoder stays frozen: the word reaches the UNet as the states of its
word pieces, and the adapter learns what they should draw. Training runs on the image pipeline's compute
thread one step per job (``fit``), so pictures for other visitors slot in between steps.

A finished run is a folder in diffusers' LoRA format (``save_lora_weights``: loadable with
``StableDiffusionPipeline.load_lora_weights``), a card, and the pictures' fingerprints (scorer embeddings and
perceptual hashes, never the pictures) for the likeness check. The Image tab draws with an adapter through
``generator(name)``: a copy of the UNet with the adapter fused in, prepacked like the served one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigc_demo import validation
from aigc_demo.compute import StopFlag, on_worker
from aigc_demo.config import TuneConfig, model_name
from aigc_demo.imaging import load_image
from aigc_demo.pipelines.diffusion import DiffusionGenerator
from aigc_demo.pipelines.image import GeneratedImage, ImagePipeline, Interrupt
from aigc_demo.pipelines.tune import CARD_FILE, RECORD_FILE, Adapter, AdapterShelf
from aigc_demo.schema import Config, Schema, param
from aigc_demo.training.fine_tune import FitProgress, FitSettings, fit, pause_while

log = logging.getLogger(__name__)

# Queries, keys, values and outputs of every attention layer, self- and cross-attention alike: on the emoji
# model, cross-attention keys and values alone learned a mascot as fast and drifted other prompts as much.
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name for save/load_lora_weights
FINGERPRINT_FILE = "fingerprints.safetensors"
PREVIEW_SEEDS = 4
PREVIEW_STEPS = 12
# The fit curve: the denoising loss of every picture at these timesteps with noise fixed for the run, a
# smooth measure of how well the adapter has learned the pictures (there are too few to hold any out).
PROBE_TIMESTEPS = (250, 500, 750)
MIN_SNR = 5.0  # the base model's loss weighting (training/train_diffusion.py)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,39}")


@dataclass(frozen=True)
class PictureTuneParams:
    """Settings of a picture fine-tune; the defaults learn a mascot from 8 pictures in a minute or two."""

    # The example mascot is drawn from about step 75; more steps mostly drift other prompts towards it.
    steps: int = param(100, label="tune_image_steps", low=10, high=Config("max_image_steps"), step=10)
    learning_rate: float = param(1e-3, label="tune_learning_rate", low=1e-5, high=1e-2)
    rank: int = param(8, label="tune_rank", info="tune_rank_info", low=1, high=64, step=1)
    batch_size: int = param(8, label="tune_batch_size", low=1, high=16, step=1)
    preview_every: int = param(25, label="tune_preview_every", low=0, high=500, step=5)  # 0 = no previews
    seed: int = param(0, label="seed", seed=True)


@dataclass(frozen=True, eq=False)
class PictureSet:
    """The checked training data: the word and the pictures at the model's size."""

    word: str
    pictures: list[Image.Image]
    sha256: str  # of the pictures' pixels as trained

    def summary(self, params: PictureTuneParams, eta_s: float | None) -> str:
        eta = "" if eta_s is None else f"; about **{eta_s:.0f} s**"
        return (
            f"**{len(self.pictures)} pictures** of “{self.word}”, {params.steps} steps of {params.batch_size}"
            f"{eta} on this machine."
        )


@dataclass(frozen=True, eq=False)
class Preview:
    """What the model draws for the word at ``step`` (step 0: the base model), same seeds every time."""

    step: int
    images: list[Image.Image]


@dataclass(frozen=True, eq=False)
class PictureTuneResult:
    adapter: Adapter | None  # None when stopped before the first step or nothing improved
    progress: FitProgress
    preview: Preview
    seconds: float


@dataclass(frozen=True, eq=False)
class Likeness:
    """How close a picture is to the training pictures: the nearest in meaning and in pixels."""

    similarity: float  # scorer embedding cosine to the nearest training picture
    pixel_bits: int  # perceptual-hash bits (of 192) that differ from the nearest training picture
    # A near copy by the corpus copy check's thresholds (weights/copy-index); None without that index.
    copy: bool | None = None


@dataclass(frozen=True, eq=False)
class Drawing:
    image: GeneratedImage
    likeness: Likeness | None  # None without the scorer


@dataclass(frozen=True, eq=False)
class PictureComparison:
    prompts: list[str]
    seed: int
    base: list[Drawing]
    tuned: list[Drawing]


class ImageTuner:
    """LoRA fine-tuning of the image pipeline's diffusion model on a few pictures, and the tuned models."""

    def __init__(self, image: ImagePipeline, cfg: TuneConfig | None = None):
        if image.diffusion is None:
            raise ValueError("teaching a new word needs the diffusion model, which is not loaded")
        self.image = image
        self.cfg = cfg or TuneConfig()
        self.schema: Schema[PictureTuneParams] = Schema(PictureTuneParams, self.cfg)
        self.shelf = AdapterShelf(Path(self.cfg.adapters_dir) / "image", int(self.cfg.max_adapters_mb * 1e6))
        self.worker = image.worker
        self._seconds_per_step: dict[int, float] = {}  # batch size -> measured on this machine
        self._serving: OrderedDict[str, DiffusionGenerator] = OrderedDict()
        self._serving_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one training run at a time, whoever calls
        image.attach_adapters(self)

    @classmethod
    def from_config(cls, cfg: TuneConfig, image: ImagePipeline) -> ImageTuner:
        return cls(image, cfg)

    def warm_up(self) -> None:
        """Nothing: the trainable copy is loaded per run (a second), so serving starts at full speed."""

    @property
    def diffusion(self) -> DiffusionGenerator:
        return self.image.diffusion

    @property
    def base_model(self) -> str:
        return model_name(self.diffusion.model_id)

    # -- data --------------------------------------------------------------------------------------------
    def parse_params(self, values=None, **more) -> PictureTuneParams:
        return self.schema.parse(values, **more)

    def check_word(self, word) -> str:
        """A made-up word: one token the text encoder knows would change the meaning of every prompt using it."""
        word = validation.text("new word", word, 40, required=True).strip()
        if not _WORD.fullmatch(word):
            raise ValueError(
                f"the new word {validation.quoted(word)} must be one word of 2-40 letters, digits, '-' or '_' "
                "(no spaces), e.g. my-mascot"
            )
        pieces = self.diffusion.sd.tokenizer.tokenize(word)
        if len(pieces) <= 1:
            raise ValueError(
                f"“{word}” is a word the model already knows (one token of its vocabulary): teaching it "
                f"pictures would change every prompt that uses it. Make one up, e.g. “my-{word}”."
            )
        return word

    def read_pictures(self, pictures) -> list[Image.Image]:
        """Files (paths, API file dicts), PIL images or gallery items -> RGB squares at the model's size."""
        if pictures is None or isinstance(pictures, str | bytes | dict | Image.Image):
            pictures = [] if pictures is None else [pictures]
        pictures = list(pictures)
        low, high = self.cfg.min_pictures, self.cfg.max_pictures
        if not low <= len(pictures) <= high:
            raise ValueError(f"give {low}-{high} pictures of the new thing; got {len(pictures)}")
        side, out = self.diffusion.native_size, []
        for k, item in enumerate(pictures, 1):
            if isinstance(item, tuple | list):  # a gallery item: (image or path, caption)
                item = item[0] if item else None
            if isinstance(item, dict):
                item = item.get("path")
            label = f"picture {k}" + (f" ({Path(item).name})" if isinstance(item, str | Path) else "")
            if isinstance(item, str | Path) and Path(item).is_file():
                size = Path(item).stat().st_size
                if size > self.cfg.max_picture_mb * 1e6:
                    raise ValueError(
                        f"{label} is {size / 1e6:.0f} MB; the limit is {self.cfg.max_picture_mb:g} MB"
                    )
            if item is None:
                raise ValueError(f"{label} is empty")
            try:
                out.append(load_image(item, 16, self.cfg.max_picture_pixels, side))
            except ValueError as err:
                raise ValueError(f"{label}: {err}") from None
        return out

    def prepare(self, word, pictures, params=None) -> tuple[PictureSet, PictureTuneParams]:
        params = self.parse_params(params)
        word = self.check_word(word)
        images = self.read_pictures(pictures)
        digest = hashlib.sha256(b"".join(img.tobytes() for img in images)).hexdigest()
        return PictureSet(word, images, digest), params

    def estimate_s(self, params: PictureTuneParams) -> float | None:
        """Seconds for the run on this machine, from the last run at this batch size (None: none yet)."""
        per_step = self._seconds_per_step.get(params.batch_size)
        return None if per_step is None else per_step * params.steps

    # -- training ----------------------------------------------------------------------------------------
    def tune(
        self, word, pictures, name: str = "", params=None, stop: StopFlag | None = None
    ) -> Iterator[PictureSet | FitProgress | Preview | PictureTuneResult]:
        """Check the data, train and save an adapter: yields the data, progress after every step, previews
        every ``preview_every`` steps, then the result. ``stop`` ends training after the current step; the
        best state so far is saved."""
        data, params = self.prepare(word, pictures, params)
        name = self.shelf.name_for(name, data.word)
        if not self._run_lock.acquire(blocking=False):
            raise ValueError("another picture fine-tune is running; try again when it ends")
        try:
            yield data
            for event in self._train(data, params, name, stop):
                yield event
                # Between steps, off the compute thread: a picture being drawn takes the thread step after
                # step instead of alternating with training (a 20-step image would wait for 20 steps).
                waited = pause_while(lambda: self.image.busy, stop)
                if isinstance(event, FitProgress):  # the loop's speed counts training time only
                    event.paused_s += waited
        finally:
            self._run_lock.release()

    def _trainable_unet(self):
        """A fresh fp32 copy of the served UNet (the served one is prepacked for inference and may be bf16)."""
        from diffusers import UNet2DConditionModel

        from aigc_demo.device import pick_device

        unet = UNet2DConditionModel.from_pretrained(
            self.diffusion.model_id, subfolder="unet", torch_dtype=torch.float32
        )
        return unet.to(pick_device(prefer_half_on_cpu=False).device).requires_grad_(False)

    @on_worker
    def _train(self, data: PictureSet, params: PictureTuneParams, name: str, stop: StopFlag | None):
        from diffusers import DDPMScheduler, StableDiffusionPipeline
        from peft import LoraConfig

        t0 = time.perf_counter()
        sd = self.diffusion.sd
        unet = self._trainable_unet()
        device = unet.device
        # alpha = rank: scale 1, so any LoRA loader reads the weights the same way
        unet.add_adapter(
            LoraConfig(
                r=params.rank,
                lora_alpha=params.rank,
                init_lora_weights="gaussian",
                target_modules=list(ATTENTION),
            )
        )
        trainable = [p for p in unet.parameters() if p.requires_grad]
        generator = torch.Generator().manual_seed(params.seed)
        latents = self._latents(data.pictures).to(device)
        with torch.no_grad():
            states = sd.encode_prompt(data.word, device, 1, False)[0].float()
        schedule = DDPMScheduler.from_config(sd.scheduler.config)
        weights = _loss_weights(schedule)
        prediction = schedule.config.get("prediction_type", "epsilon")

        def loss_of(rows: list[int]):
            x0 = latents[rows]
            n = len(rows)
            t = torch.randint(0, schedule.config.num_train_timesteps, (n,), generator=generator)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            return _denoising_loss(unet, schedule, x0, noise, t, states, weights, prediction), n, n

        probe_t = torch.tensor(PROBE_TIMESTEPS).repeat_interleave(len(latents))
        probe_x0 = latents.repeat(len(PROBE_TIMESTEPS), 1, 1, 1)
        probe_noise = torch.randn(probe_x0.shape, generator=torch.Generator().manual_seed(params.seed + 1))

        def probe_loss() -> float:
            unet.eval()
            try:
                return float(
                    _denoising_loss(
                        unet, schedule, probe_x0, probe_noise.to(device), probe_t, states, weights, prediction
                    )
                )
            finally:
                unet.train()

        plan = _batches(len(latents), params.batch_size, params.steps, params.seed)
        view = StableDiffusionPipeline(**{**sd.components, "unet": unet})
        drawer = DiffusionGenerator(view, self.diffusion.model_id, "preview")
        settings = FitSettings(
            epochs=1,
            learning_rate=params.learning_rate,
            evaluations_per_epoch=max(1, params.steps // 10),
            patience=params.steps + 1,  # no early stop: a few pictures hold nothing out to stop on
            micro_batch=params.batch_size,
        )
        progress = None
        unet.train()
        for progress in fit(trainable, lambda epoch: plan, loss_of, probe_loss, settings, stop):
            yield progress
            every = params.preview_every
            if every and progress.step % every == 0 and progress.step < progress.total_steps:
                yield Preview(progress.step, self._draw(drawer, data.word, params.seed))
        preview = Preview(progress.step, self._draw(drawer, data.word, params.seed))
        yield preview
        if progress.step > 0:
            steps_s = progress.elapsed_s - progress.evaluation_s
            self._seconds_per_step[params.batch_size] = steps_s / progress.step
        adapter = None
        if progress.best_step > 0:  # else the best state is the untrained one: nothing worth keeping
            adapter = self._save(unet, name, data, params, progress, preview)
        yield PictureTuneResult(adapter, progress, preview, time.perf_counter() - t0)

    @torch.no_grad()
    def _latents(self, pictures: list[Image.Image]) -> torch.Tensor:
        """Each picture and its mirror image through the autoencoder (the base model learned both ways)."""
        vae = self.diffusion.sd.vae
        x = (
            torch.from_numpy(np.stack([np.asarray(p) for p in pictures])).permute(0, 3, 1, 2).float() / 127.5
            - 1
        )
        x = torch.cat([x, x.flip(-1)])
        mean = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean
        return mean.float() * vae.config.scaling_factor

    def _draw(self, drawer: DiffusionGenerator, word: str, seed: int) -> list[Image.Image]:
        params, _ = self.image.check(
            {"prompt": word, "num_inference_steps": PREVIEW_STEPS, "seed": seed, "batch_size": PREVIEW_SEEDS}
        )
        drawn = None
        for drawn in drawer.generate(params, Interrupt(), None):
            pass
        return drawn.images

    def _save(self, unet, name, data: PictureSet, params, progress: FitProgress, preview: Preview) -> Adapter:
        folder = self.shelf.new_folder(name)
        partial = folder.with_name(f".partial-{name}")  # hidden: never a valid adapter name
        shutil.rmtree(partial, ignore_errors=True)
        try:
            self._write(unet, name, data, params, progress, preview, partial)
            partial.rename(folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        removed = self.shelf.prune(keep=name)
        with self._serving_lock:  # a served copy of an adapter by this name (since pruned) is stale
            for gone in (name, *removed):
                self._serving.pop(gone, None)
        return self.shelf.get(name)

    def _write(self, unet, name, data: PictureSet, params, progress: FitProgress, preview: Preview, partial):
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        from aigc_demo.training.common import machine_class

        partial.mkdir(parents=True)
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(partial, unet_lora_layers=layers, safe_serialization=True)
        fingerprints = self._fingerprints(data.pictures)
        if fingerprints is not None:
            save_file(fingerprints, str(partial / FINGERPRINT_FILE))
        _grid(preview.images).save(partial / "preview.png")
        probe = progress.held_out_curve
        record = {
            "name": name,
            "kind": "pictures",
            "base_model": self.base_model,
            "word": data.word,
            "pictures": len(data.pictures),
            "data_sha256": data.sha256,
            "settings": {**asdict(params), "target_modules": list(ATTENTION), "lora_alpha": params.rank},
            "steps": progress.step,
            "finish": progress.finish,
            "best_step": progress.best_step,
            "fit_loss_before": round(probe[0][1], 5),
            "fit_loss_after": round(progress.best_held_out, 5),
            "train_seconds": round(progress.elapsed_s, 1),
            "pictures_per_s": round(progress.tokens_per_s, 2),
            "train_curve": progress.train_curve,
            "fit_curve": probe,
            "machine": machine_class(),
            "date": datetime.date.today().isoformat(),
        }
        (partial / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        (partial / CARD_FILE).write_text(picture_adapter_card(record), encoding="utf-8")

    # -- likeness ------------------------------------------------------------------------------------------
    def _fingerprints(self, pictures: list[Image.Image]) -> dict[str, torch.Tensor] | None:
        """Scorer embeddings and perceptual hashes of the training pictures (None without the scorer)."""
        from aigc_demo.provenance.copies import embed_pictures, perceptual_hash

        if self.image.scorer is None:
            return None
        hashes = np.stack([perceptual_hash(p) for p in pictures]).view(np.int64)
        return {
            "embeddings": embed_pictures(self.image.scorer.model, pictures).contiguous(),
            "hashes": torch.from_numpy(hashes.copy()),
        }

    def likeness(self, images: Sequence[Image.Image], name: str) -> list[Likeness | None]:
        """For each image, its nearest training picture of adapter ``name`` in meaning and in pixels."""
        from safetensors.torch import load_file

        from aigc_demo.provenance.copies import embed_pictures, hamming, perceptual_hash

        path = self.shelf.get(name).folder / FINGERPRINT_FILE
        if self.image.scorer is None or not path.is_file():
            return [None] * len(images)
        prints = load_file(str(path))
        hashes = prints["hashes"].numpy().view(np.uint64)
        similarity = embed_pictures(self.image.scorer.model, list(images)) @ prints["embeddings"].T
        index = self.image.copy_index
        out = []
        for img, row in zip(images, similarity, strict=True):
            alike, bits = round(float(row.max()), 4), int(hamming(hashes, perceptual_hash(img)).min())
            copy = None if index is None else bits <= index.pixel_bits and alike >= index.embedding
            out.append(Likeness(alike, bits, copy))
        return out

    # -- using an adapter ----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.shelf.names()

    def generator(self, name: str) -> DiffusionGenerator:
        """The diffusion model with adapter ``name`` fused in, built on first use; the last few stay resident."""
        adapter = self.shelf.get(name)
        if adapter.record.get("base_model") != self.base_model:
            raise ValueError(
                f"picture adapter {adapter.name!r} was trained on {adapter.record.get('base_model')}, not on "
                f"the model served now ({self.base_model})"
            )
        with self._serving_lock:
            if adapter.name in self._serving:
                self._serving.move_to_end(adapter.name)
                return self._serving[adapter.name]
            built = self.worker.run(self._fused, adapter)
            self._serving[adapter.name] = built
            while len(self._serving) > self.cfg.resident_adapters:
                self._serving.popitem(last=False)
            return built

    def _fused(self, adapter: Adapter) -> DiffusionGenerator:
        from diffusers import StableDiffusionPipeline, UNet2DConditionModel

        from aigc_demo.pipelines.cpu_linear import prepack_linears

        served = self.diffusion
        unet = UNet2DConditionModel.from_pretrained(
            served.model_id, subfolder="unet", torch_dtype=served.dtype
        )
        unet.load_lora_adapter(adapter.folder, weight_name=LORA_FILE, prefix="unet", adapter_name="tuned")
        unet.fuse_lora()
        unet.unload_lora()  # the fused weights stay; the LoRA layers go
        unet = unet.to(served.device).eval()
        prepack_linears(unet)  # CPU only, as the served UNet
        view = StableDiffusionPipeline(**{**served.sd.components, "unet": unet})
        return DiffusionGenerator(view, served.model_id)

    def compare(self, name: str, prompts: Sequence[str] | None = None, seed: int = 0) -> PictureComparison:
        """The base and the tuned model drawing the same prompts with the same seed (default: the word, and the
        word wearing a hat), each picture with its prompt match and its likeness to the training pictures."""
        adapter = self.shelf.get(name)
        word = adapter.record["word"]
        prompts = [p for p in (prompts or [word, f"{word} wearing a hat"]) if p and p.strip()]
        if not prompts:
            raise ValueError("no prompt to compare")
        if len(prompts) > 4:
            raise ValueError(f"compare at most 4 prompts at once; got {len(prompts)}")
        seed = validation.seed(seed)
        drawings: dict[str, list[Drawing]] = {"": [], adapter.name: []}
        for chosen in drawings:
            for prompt in prompts:
                made = self.image(
                    {"prompt": prompt, "seed": seed, "generator": "diffusion", "adapter": chosen}
                )
                image = made.images[0]
                drawings[chosen].append(Drawing(image, self.likeness([image.image], adapter.name)[0]))
        return PictureComparison(prompts, seed, drawings[""], drawings[adapter.name])


def _loss_weights(schedule) -> torch.Tensor:
    """min-SNR-gamma weights per timestep (Hang et al. 2023), in the form for the model's prediction type."""
    acp = schedule.alphas_cumprod
    snr = acp / (1 - acp)
    if schedule.config.get("prediction_type") == "v_prediction":
        return torch.clamp(snr, max=MIN_SNR) / (snr + 1)
    return torch.clamp(snr, max=MIN_SNR) / snr


def _denoising_loss(unet, schedule, x0, noise, t, states, weights, prediction: str) -> torch.Tensor:
    """The training objective of the base model: weighted MSE to the noise (or velocity) at timesteps ``t``."""
    xt = schedule.add_noise(x0, noise, t)
    target = schedule.get_velocity(x0, noise, t) if prediction == "v_prediction" else noise
    out = unet(xt, t.to(x0.device), encoder_hidden_states=states.expand(len(x0), -1, -1)).sample
    per_item = torch.nn.functional.mse_loss(out.float(), target, reduction="none").mean((1, 2, 3))
    return (per_item * weights[t].to(per_item.device)).mean()


def _batches(pictures: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of picture rows: passes over the pictures (and mirrors) in a fresh order each time."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += rng.permutation(pictures).tolist()
    return [order[k * batch_size : (k + 1) * batch_size] for k in range(steps)]


def _grid(images: list[Image.Image]) -> Image.Image:
    w, h = images[0].size
    grid = Image.new("RGB", (w * len(images), h), "white")
    for k, img in enumerate(images):
        grid.paste(img, (k * w, 0))
    return grid


def picture_adapter_card(record: dict) -> str:
    """The model card of a picture adapter: what it learned (a hash of the pictures), how, and the time."""
    s = record["settings"]
    return f"""---
base_model: {record["base_model"]}
library_name: diffusers
tags: [lora, text-to-image, aigc-studio]
instance_prompt: {record["word"]}
---
# {record["name"]}

A LoRA adapter for `{record["base_model"]}` made in AIGC Studio's Tune tab: it draws “{record["word"]}”.

| | |
|---|---|
| training data | {record["pictures"]} pictures (SHA-256 of their pixels `{record["data_sha256"][:16]}…`), each captioned “{record["word"]}”, and their mirror images |
| settings | rank {s["rank"]}, alpha {s["lora_alpha"]}, on the UNet's {", ".join(s["target_modules"])}; {record["steps"]} steps of {s["batch_size"]}, learning rate {s["learning_rate"]:g}, seed {s["seed"]}; v-prediction, min-SNR-{MIN_SNR:g} |
| run | {record["finish"]}, best at step {record["best_step"]}, {record["train_seconds"]} s on a {record["machine"]}, {record["date"]} |
| denoising loss on the pictures (fixed noise) | {record["fit_loss_before"]} before, {record["fit_loss_after"]} after |

Use: `pipe.load_lora_weights(folder)` on the base pipeline (diffusers), then prompt with “{record["word"]}”.
`preview.png` shows what it draws; `fingerprints.safetensors` holds the pictures' scorer embeddings and
perceptual hashes for the likeness check. The pictures themselves are not kept.
"""
