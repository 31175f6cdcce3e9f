"""Story: one idea -> a planned storyboard -> drawn panels -> narration -> a film (text, images, sound, video).

The chain the product's source texts define as video generation, with every stage visible and editable:

1. **Plan** (language model): a title and scenes, JSON under a schema by constrained decoding
   (``story_plan.py``).
2. **Ground** (MiniLM): each scene's picture mapped to subjects the project's image model knows
   (``grounding.py``); off for hub models.
3. **Draw** (image pipeline): one panel per scene, the story's seed in every panel unless a scene has its own,
   enlarged 4x by the upscaler.
4. **Voice** (``aigc_demo/speech.py``): narration per scene; a scene lasts as long as its narration.
5. **Film** (``aigc_demo/film.py``): slow pans and zooms, transitions through the autoencoder's latent space,
   burned-in subtitles, MP4 with sound, GIF, frames ZIP; plus a comic page and a project file that loads back.

Drawn panels and spoken lines are cached by what made them, so re-rendering after an edit only redoes what
changed. Every stage checks the stop flag and keeps what exists.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from PIL import Image

from aigc_demo import validation
from aigc_demo.compute import StopFlag
from aigc_demo.config import StoryConfig
from aigc_demo.pipelines.grounding import STYLE_LABELS, Grounding, Suggestion, minilm_encoder
from aigc_demo.pipelines.image import ImageParams, ImagePipeline, generator_param
from aigc_demo.pipelines.story_plan import (
    MAX_SCENES,
    MIN_SCENES,
    Plan,
    language_of,
    plan_messages,
    plan_schema,
)
from aigc_demo.pipelines.text import GenerationParams, TextPipeline
from aigc_demo.schema import Config, Schema, param
from aigc_demo.speech import check_request

log = logging.getLogger(__name__)

PROJECT_FORMAT, PROJECT_VERSION = "aigc-studio-story", 1
STYLES = tuple(STYLE_LABELS)


@dataclass(frozen=True)
class PlanParams:
    """What the language model is asked: an idea and a number of scenes."""

    idea: str = param(
        "", label="story_idea", max_chars=Config("max_idea_chars"), required=True, lines=2,
        example="a cat who is afraid of rain finds an umbrella",
    )  # fmt: skip
    scenes: int = param(4, label="story_scenes", low=MIN_SCENES, high=MAX_SCENES, step=1)
    temperature: float = param(0.7, label="temperature", low=0.0, high=1.5, step=0.05)
    seed: int = param(-1, label="seed", seed=True)


@dataclass(frozen=True)
class FilmParams:
    """How a plan becomes a film: the story-level style, seed policy, drawing, voice and timing."""

    style: str = param(
        "twemoji", label="story_style", choices=STYLES, choice_labels={k: f"style_{k}" for k in STYLES}
    )
    seed: int = param(-1, label="seed", seed=True)  # every panel's starting noise, unless a scene has its own
    generator: str = generator_param()
    num_inference_steps: int = param(20, label="image_steps", low=1, high=Config("max_steps"), step=1)
    upscale: bool = param(True, label="story_upscale")
    voice: str = param("auto", label="story_voice", max_chars=64)  # "auto" = by the narration's language
    speech_rate: float = param(1.0, label="story_speech_rate", low=0.5, high=2.0, step=0.1)
    # 0 = as long as the narration (at least StoryConfig.min_scene_seconds)
    scene_seconds: float = param(0.0, label="story_scene_seconds", low=0.0, high=20.0, step=0.5)
    transition_frames: int = param(6, label="story_transition_frames", low=0, high=16, step=1)


@dataclass(frozen=True, eq=False)
class PlanUpdate:
    text: str  # the JSON so far, as the model writes it
    plan: Plan | None = None  # the checked plan, with grounded prompts, on the last update
    suggestions: list[list[Suggestion]] = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0  # writing and grounding
    grounding_seconds: float = 0.0


@dataclass(frozen=True, eq=False)
class StoryProgress:
    stage: str  # "draw" | "voice" | "film"
    done: int
    total: int
    elapsed_s: float
    eta_s: float | None
    panels: list[Image.Image]


@dataclass(frozen=True, eq=False)
class StoryResult:
    plan: Plan
    params: FilmParams  # with the seed used
    panels: list[Image.Image]  # as drawn (before upscaling)
    mp4: Path | None
    gif: Path | None
    frames_zip: Path | None
    comic: Path | None
    project: Path
    seconds: float  # film length
    audio_seconds: float | None
    stage_seconds: dict[str, float]
    warnings: list[str]
    stopped: bool


class StoryPipeline:
    """The chain over the resident text and image pipelines, a speech engine and a grounding index."""

    def __init__(
        self,
        text: TextPipeline,
        image: ImagePipeline,
        speech=None,
        grounding: Grounding | None = None,
        cfg: StoryConfig | None = None,
    ) -> None:
        self.text, self.image, self.speech, self.grounding = text, image, speech, grounding
        self.cfg = cfg or StoryConfig()
        self.plan_schema: Schema[PlanParams] = Schema(PlanParams, self.cfg)
        self.film_schema: Schema[FilmParams] = Schema(
            FilmParams, image.cfg, defaults={"generator": image.default_generator}
        )
        self._panels: OrderedDict[tuple, Image.Image] = OrderedDict()  # what made it -> the panel
        self._lines: OrderedDict[tuple, object] = OrderedDict()  # (text, voice, rate) -> Speech
        self._cache_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: StoryConfig, text: TextPipeline, image: ImagePipeline) -> StoryPipeline:
        from aigc_demo.speech import build_speech

        grounding = None
        # The project's own models know only the corpus's subjects; a Stable Diffusion folder or hub id (it
        # ships its own text encoder) knows the world and draws the description as written.
        model = None if image.diffusion is None else Path(image.diffusion.model_id)
        own_model = model is None or (model.is_dir() and not (model / "text_encoder").is_dir())
        if cfg.vocabulary and own_model and Path(cfg.vocabulary).is_file():
            encoder = image.worker.run(minilm_encoder, image.cfg.text_encoder)
            grounding = image.worker.run(Grounding.from_index, cfg.vocabulary, encoder)
        return cls(text, image, build_speech(cfg.speech), grounding, cfg)

    def warm_up(self) -> None:
        if self.speech is not None:
            self.speech.speak("Ready.")

    # -- 1-2. plan and ground ---------------------------------------------------------------------------
    def plan(self, params: PlanParams | dict, stop: StopFlag | None = None) -> Iterator[PlanUpdate]:
        """Stream the model's plan as it is written; the last update carries the checked, grounded plan."""
        p = self.plan_schema.parse(params)
        seed = validation.seed(p.seed)
        system, history, message = plan_messages(p.idea, p.scenes)
        gen = GenerationParams(
            max_new_tokens=self.cfg.max_plan_tokens,
            temperature=p.temperature,
            seed=seed,
            repetition_penalty=1.1,
        )
        t0 = time.perf_counter()
        schema = plan_schema(p.scenes, language_of(p.idea))
        last = None
        for last in self.text.chat(message, history, system, gen, stop, json_schema=schema):
            yield PlanUpdate(last.text, seed=seed, seconds=time.perf_counter() - t0)
        if last is None or last.stats.finish_reason != "stop":
            reason = "stopped" if last is not None and last.stats.finish_reason == "stopped" else "cut short"
            raise ValueError(f"the plan was {reason} before it was complete; plan again (or fewer scenes)")
        plan = Plan.from_json(last.text)
        t1 = time.perf_counter()
        suggestions = self.suggest(plan)
        now = time.perf_counter()
        yield PlanUpdate(last.text, plan, suggestions, seed, now - t0, now - t1)

    def suggest(self, plan: Plan, k: int = 3) -> list[list[Suggestion]]:
        """Drawable subjects for each scene's picture (nothing to suggest for hub models)."""
        if self.grounding is None:
            return [[] for _ in plan.scenes]
        return self.image.worker.run(self.grounding.suggest, [s.picture or s.prompt for s in plan.scenes], k)

    def prompts(self, plan: Plan, style: str) -> list[str]:
        """What the image model draws for each scene: its prompt (or its picture grounded to the nearest
        subject), in the story's style."""
        subjects = [s.prompt or s.picture for s in plan.scenes]
        if self.grounding is not None:
            ungrounded = [i for i, s in enumerate(plan.scenes) if not s.prompt]
            for i, best in zip(
                ungrounded, self.suggest_texts([subjects[i] for i in ungrounded]), strict=True
            ):
                subjects[i] = best
        label = STYLE_LABELS.get(style, style)
        return [f"{s}, in {label} style" for s in subjects]

    def suggest_texts(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        return [s[0].name for s in self.image.worker.run(self.grounding.suggest, texts, 1)]

    # -- 3-5. draw, voice, film ---------------------------------------------------------------------------
    def check(self, plan, params: FilmParams | dict) -> tuple[Plan, FilmParams]:
        """A checked plan and film settings with the seed fixed; ValueError names what is wrong."""
        if not isinstance(plan, Plan):
            plan = Plan.from_json(plan) if isinstance(plan, str) else Plan.from_dict(plan)
        p = self.film_schema.parse(params)
        if self.speech is not None:  # an unknown voice is named before anything is drawn
            check_request("voice check", p.voice, p.speech_rate, self.speech)
        return plan, replace(p, seed=validation.seed(p.seed))

    def render(
        self, plan, params: FilmParams | dict, folder: Path, stop: StopFlag | None = None
    ) -> Iterator[StoryProgress | StoryResult]:
        """Draw, voice and film ``plan``; progress per stage, then one StoryResult (also when stopped)."""
        from aigc_demo.film import FilmSpec, Shot, render_film

        plan, p = self.check(plan, params)
        stop = stop or threading.Event()
        folder.mkdir(parents=True, exist_ok=True)
        warnings: list[str] = []
        times: dict[str, float] = {}
        t0 = time.perf_counter()

        # 3. Draw: one panel per scene (cached by what made it).
        prompts = self.prompts(plan, p.style)
        panels: list[Image.Image] = []
        for i, (scene, prompt) in enumerate(zip(plan.scenes, prompts, strict=True)):
            if stop.is_set():
                break
            panels.append(self._panel(prompt, scene.seed if scene.seed != -1 else p.seed, p, stop))
            yield self._progress("draw", i + 1, len(plan.scenes), t0, panels)
        times["draw"] = time.perf_counter() - t0
        if len(panels) < len(plan.scenes):
            warnings.append(f"Stopped while drawing: {len(panels)} of {len(plan.scenes)} panels.")
        shown = self.image.upscale(panels) if (p.upscale and panels) else panels
        times["upscale"] = time.perf_counter() - t0 - times["draw"]

        # 4. Voice: narration per drawn scene.
        t1 = time.perf_counter()
        lines = []
        if self.speech is None:
            warnings.append("No speech engine is available: the film is silent (AIGC_STORY_SPEECH).")
        else:
            for i, scene in enumerate(plan.scenes[: len(panels)]):
                if stop.is_set():
                    break
                lines.append(self._line(scene.narration, p))
                yield self._progress("voice", i + 1, len(panels), t1, panels)
        times["voice"] = time.perf_counter() - t1

        # 5. Film: shots, latent transitions, subtitles, sound.
        t2 = time.perf_counter()
        spec = FilmSpec(size=self.cfg.video_size, fps=self.cfg.fps, sample_rate=self.cfg.sample_rate)
        shots = []
        for i, panel in enumerate(shown):
            speech = lines[i] if i < len(lines) else None
            audio = None if speech is None else _resampled(speech, spec.sample_rate)
            seconds = p.scene_seconds or max(
                self.cfg.min_scene_seconds, (speech.seconds if speech else 0) + 0.5
            )
            if speech is not None and p.scene_seconds and speech.seconds > p.scene_seconds:
                warnings.append(
                    f"Scene {i + 1}: the narration ({speech.seconds:.1f} s) is cut to {seconds:.1f} s."
                )
                audio = audio[: int(seconds * spec.sample_rate)]
            motion = MOTIONS[i % len(MOTIONS)]
            shots.append(Shot(panel, seconds, plan.scenes[i].narration, audio, motion))
        transitions = []
        for a, b in zip(panels, panels[1:]):
            frames = self.image.latent_path(a, b, p.transition_frames) if not stop.is_set() else []
            transitions.append(self.image.upscale(frames) if (p.upscale and frames) else frames)
        times["transitions"] = time.perf_counter() - t2
        film = None
        if shots:
            t3 = time.perf_counter()
            frames = {"done": 0, "total": 1}
            outcome: dict = {}

            def encode() -> None:  # on its own thread, so this stream can report its frames meanwhile
                try:
                    outcome["film"] = render_film(
                        shots, transitions, folder, spec, stop=stop.is_set,
                        progress=lambda done, total: frames.update(done=done, total=total),
                    )  # fmt: skip
                except BaseException as err:  # re-raised below, in the caller's thread
                    outcome["error"] = err

            worker = threading.Thread(target=encode, name="story-film", daemon=True)
            worker.start()
            while worker.is_alive():
                worker.join(0.25)
                yield self._progress("film", frames["done"], frames["total"], t3, panels)
            if "error" in outcome:
                raise outcome["error"]
            film = outcome["film"]
            times["encode"] = time.perf_counter() - t3
        comic = comic_page(plan, shown, folder / "comic.png") if shown else None
        project = write_project(folder / "story.json", plan, p, self._models(p))
        times["total"] = time.perf_counter() - t0
        log.info("story: %d scenes, %s", len(panels), {k: round(v, 2) for k, v in times.items()})
        yield StoryResult(
            plan, p, panels,
            film.mp4 if film else None, film.gif if film else None, film.frames_zip if film else None,
            comic, project, film.seconds if film else 0.0, film.audio_seconds if film else None,
            times, warnings, stop.is_set(),
        )  # fmt: skip

    def _progress(self, stage: str, done: int, total: int, t0: float, panels) -> StoryProgress:
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (total - done) if done else None
        return StoryProgress(stage, done, total, elapsed, eta, list(panels))

    def _panel(self, prompt: str, seed: int, p: FilmParams, stop: StopFlag) -> Image.Image:
        key = (prompt, seed, p.generator, p.num_inference_steps)
        with self._cache_lock:
            if key in self._panels:
                self._panels.move_to_end(key)
                return self._panels[key]
        request = ImageParams(
            prompt=prompt, seed=seed, num_inference_steps=p.num_inference_steps, generator=p.generator
        )
        result = self.image(request, stop)  # the story's stop flag interrupts the drawing between steps
        panel = result.images[0].image
        if not result.interrupted:
            with self._cache_lock:
                self._panels[key] = panel
                while len(self._panels) > self.cfg.cache_items:
                    self._panels.popitem(last=False)
        return panel

    def _line(self, text: str, p: FilmParams):
        voice = self.speech.default_voice(text) if p.voice in ("", "auto") else p.voice
        key = (text, voice, p.speech_rate)
        with self._cache_lock:
            if key in self._lines:
                return self._lines[key]
        speech = self.speech.speak(text, voice, p.speech_rate)
        with self._cache_lock:
            self._lines[key] = speech
            while len(self._lines) > self.cfg.cache_items:
                self._lines.popitem(last=False)
        return speech

    def _models(self, p: FilmParams) -> dict:
        return {
            "text": self.text.model_id,
            "image": self.image.generators[p.generator].model_id,
            "speech": getattr(self.speech, "name", None),
        }


MOTIONS = ("zoom_in", "pan_right", "zoom_out", "pan_left")


def _resampled(speech, rate: int):
    """The narration at the film's sample rate (linear interpolation: speech, not music)."""
    import numpy as np

    samples = np.asarray(speech.samples, dtype=np.float32)
    if speech.sample_rate == rate or len(samples) == 0:
        return samples
    n = int(round(len(samples) * rate / speech.sample_rate))
    return np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples).astype(np.float32)


# -- files -------------------------------------------------------------------------------------------------
def comic_page(plan: Plan, panels: list[Image.Image], path: Path, columns: int = 2) -> Path:
    """The panels in a grid with each scene's narration under it, and the title on top: a printable page."""
    from PIL import ImageDraw

    from aigc_demo.film import subtitle_font, wrap_text

    side, pad, text_h = 256, 16, 72
    rows = -(-len(panels) // columns)
    title_h = 56
    page = Image.new(
        "RGB", (columns * (side + pad) + pad, title_h + rows * (side + text_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(page)
    draw.text((pad, 14), plan.title, fill="black", font=subtitle_font(28))
    font = subtitle_font(15)
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        x, y = pad + c * (side + pad), title_h + r * (side + text_h + pad)
        page.paste(panel.convert("RGB").resize((side, side), Image.Resampling.NEAREST), (x, y))
        draw.rectangle((x, y, x + side - 1, y + side - 1), outline=(40, 40, 40))
        lines = wrap_text(f"{i + 1}. {plan.scenes[i].narration}", font, side)[:3]
        draw.multiline_text((x, y + side + 6), "\n".join(lines), fill=(20, 20, 20), font=font, spacing=3)
    page.save(path)
    return path


def write_project(path: Path, plan: Plan, params: FilmParams, models: dict) -> Path:
    """Everything that made the film (plan, prompts, seeds, settings, models): loads back and reproduces it."""
    data = {
        "format": PROJECT_FORMAT,
        "version": PROJECT_VERSION,
        "plan": plan.to_dict(),
        "film": asdict(params),
        "models": models,
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


MAX_PROJECT_BYTES = 1_000_000


def read_project(source) -> tuple[Plan, dict]:
    """(plan, film settings) from a project file's path or text; ValueError names what is wrong."""
    if isinstance(source, (str, Path)) and not str(source).lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"project file {validation.quoted(str(source))} not found")
        if path.stat().st_size > MAX_PROJECT_BYTES:
            raise ValueError(
                f"the project file is over {MAX_PROJECT_BYTES // 1000} kB; a story project is a few kB"
            )
        if zipfile.is_zipfile(path):
            raise ValueError("that is a ZIP file; load the story's .json project file")
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        text = str(source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"the project file is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise ValueError("not an AIGC Studio story project (its 'format' field is missing or different)")
    if data.get("version") != PROJECT_VERSION:
        raise ValueError(
            f"story project version {validation.quoted(data.get('version'))}; this app reads version {PROJECT_VERSION}"
        )
    film = data.get("film")
    if not isinstance(film, dict):
        raise ValueError("the project file has no 'film' settings")
    known = {f for f in FilmParams.__dataclass_fields__}
    return Plan.from_dict(data.get("plan")), {k: v for k, v in film.items() if k in known}
