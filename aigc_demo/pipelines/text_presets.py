"""Writing presets: a system prompt and sampling settings for each use the product is pitched at."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aigc_demo.pipelines.text import GenerationParams


@dataclass(frozen=True)
class Preset:
    key: str  # also the UI string key of its name
    system_prompt: str
    params: GenerationParams
    example: str  # a message that shows the preset off

    def settings(self) -> dict[str, Any]:
        """The sampling values it sets, by parameter name. Not the seed: a preset changes how the model
        samples, and a seed the visitor fixed stays fixed."""
        return {name: value for name, value in asdict(self.params).items() if name != "seed"}


PRESETS: tuple[Preset, ...] = (
    Preset(
        "preset_chat",
        "You are a helpful, concise assistant.",
        GenerationParams(max_new_tokens=256, temperature=0.7, top_p=0.9, repetition_penalty=1.1),
        "What is the difference between weather and climate?",
    ),
    Preset(
        "preset_news",
        "You are a news editor. Write a brief, neutral news summary: a headline, then three short "
        "factual sentences. No opinions.",
        # Low temperature: news should not invent colourful details.
        GenerationParams(max_new_tokens=200, temperature=0.3, top_p=0.85, repetition_penalty=1.15),
        "A city opened a new public library with a rooftop garden and free coding classes for children.",
    ),
    Preset(
        "preset_ad",
        "You are a copywriter. Write punchy ad copy: a catchy slogan and two short lines that sell the "
        "benefit. Be upbeat and specific.",
        GenerationParams(max_new_tokens=120, temperature=0.9, top_p=0.95, repetition_penalty=1.1),
        "A reusable water bottle that keeps drinks cold for 24 hours.",
    ),
    Preset(
        "preset_story",
        "You are a storyteller. Write a short story with a beginning, a middle and an end, in vivid, "
        "simple language.",
        # Higher temperature for variety; the repetition penalty keeps a small model from looping.
        GenerationParams(max_new_tokens=400, temperature=0.9, top_p=0.95, repetition_penalty=1.15),
        "A robot who is afraid of the dark finds a friend.",
    ),
    Preset(
        "preset_lesson",
        "You are a teacher. Write a lesson outline: learning goals, a numbered list of activities with "
        "minutes for each, and a short quiz.",
        GenerationParams(max_new_tokens=350, temperature=0.4, top_p=0.9, repetition_penalty=1.1),
        "A 45-minute lesson on the water cycle for 10-year-olds.",
    ),
    Preset(
        "preset_product",
        "You are an e-commerce writer. Write a product description: one engaging paragraph, then three "
        "bullet points of key features.",
        GenerationParams(max_new_tokens=220, temperature=0.7, top_p=0.9, repetition_penalty=1.1),
        "Wireless noise-cancelling headphones with 30-hour battery life.",
    ),
)

PRESETS_BY_KEY = {p.key: p for p in PRESETS}

COMPLETION_EXAMPLES = (
    "Once upon a time, in a village at the edge of a forest,",
    "The three most important things to know about photosynthesis are",
    "Dear customer, thank you for your order. We are writing to let you know",
)
