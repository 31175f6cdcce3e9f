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

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from PIL import Image

from aigc_demo import validation
from aigc_demo.compute import StopFlag
from aigc_demo.config import StoryConfig, model_name
from aigc_demo.content_filter import check_text
from aigc_demo.film import MOTIONS as FILM_MOTIONS
from aigc_demo.film import SHOT_SECONDS, FilmSpec, Shot, render_film
from aigc_demo.pipelines.grounding import STYLE_LABELS, Grounding, Suggestion, minilm_encoder, styled
from aigc_demo.pipelines.image import ImagePipeline, ImageProgress, generator_param
from aigc_demo.pipelines.story_files import comic_page, read_project, write_project
from aigc_demo.pipelines.story_plan import (
    MAX_SCENES,
    MIN_SCENES,
    Plan,
    language_of,
    plan_messages,
    plan_schema,
)
from aigc_demo.pipelines.text import GenerationParams, TextPipeline
from aigc_demo.provenance.content_credentials import sign_if_enabled
from aigc_demo.provenance.image_watermark import FrameMarker
from aigc_demo.provenance.parameters import new_watermark, save_png
from aigc_demo.schema import Config, Schema, param
from aigc_demo.speech import MAX_RATE, MIN_RATE, check_request

log = logging.getLogger(__name__)

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
    # Put before every scene's subject: a recurring character (hub models; the emoji model knows subjects)
    character: str = param("", label="story_character", max_chars=60)
    generator: str = generator_param()
    num_inference_steps: int = param(20, label="image_steps", low=1, high=Config("max_steps"), step=1)
    upscale: bool = param(True, label="story_upscale")
    voice: str = param("auto", label="story_voice", max_chars=64)  # "auto" = by the narration's language
    speech_rate: float = param(1.0, label="story_speech_rate", low=MIN_RATE, high=MAX_RATE, step=0.1)
    # 0 = as long as the narration (at least StoryConfig.min_scene_seconds); a shot lasts at most SHOT_SECONDS
    scene_seconds: float = param(0.0, label="story_scene_seconds", low=0.0, high=SHOT_SECONDS[1], step=0.5)
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
    prompts: list[str]  # what each panel was drawn from
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
        self._panels_cache: OrderedDict[tuple, Image.Image] = OrderedDict()  # what made it -> the panel
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
        check_text(p.idea, "idea")
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
        plan = Plan.from_json(last.text).with_finished_sentences()
        check_scenes(plan, "plan the model wrote")
        t1 = time.perf_counter()
        suggestions = self.suggest(plan)
        now = time.perf_counter()
        yield PlanUpdate(last.text, plan, suggestions, seed, now - t0, now - t1)

    def suggest(self, plan: Plan, k: int = 3) -> list[list[Suggestion]]:
        """Drawable subjects for each scene's picture (nothing to suggest for hub models)."""
        if self.grounding is None:
            return [[] for _ in plan.scenes]
        return self.image.worker.run(self.grounding.suggest, [s.picture or s.prompt for s in plan.scenes], k)

    def subjects(self, plan: Plan) -> list[str]:
        """What each scene shows: its prompt, or its picture grounded to the nearest subject the model knows."""
        subjects = [s.prompt or s.picture for s in plan.scenes]
        ungrounded = [i for i, s in enumerate(plan.scenes) if not s.prompt]
        if self.grounding is not None and ungrounded:
            found = self.image.worker.run(self.grounding.suggest, [subjects[i] for i in ungrounded], 1)
            for i, best in zip(ungrounded, found, strict=True):
                subjects[i] = best[0].name
        return subjects

    @staticmethod
    def prompt(subject: str, p: FilmParams) -> str:
        """A scene's prompt: the story's character, the subject, the story's style."""
        return styled(f"{p.character} {subject}".strip(), p.style)

    def load_project(self, source) -> tuple[Plan, FilmParams]:
        """A project file's plan and film settings, both checked (a hand-edited file is named, not trusted)."""
        plan, film = read_project(source)
        known = {k: v for k, v in film.items() if k in FilmParams.__dataclass_fields__}
        return plan, self.film_schema.parse(known)

    # -- 3-5. draw, voice, film ---------------------------------------------------------------------------
    def check(self, plan, params: FilmParams | dict) -> tuple[Plan, FilmParams]:
        """A checked plan and film settings with the seed fixed; ValueError names what is wrong."""
        if not isinstance(plan, Plan):
            plan = Plan.from_json(plan) if isinstance(plan, str) else Plan.from_dict(plan)
        p = self.film_schema.parse(params)
        check_scenes(plan, "storyboard")
        check_text(p.character, "character")
        if self.speech is not None:  # an unknown voice is named before anything is drawn
            check_request("voice check", p.voice, p.speech_rate, self.speech)
        return plan, replace(p, seed=validation.seed(p.seed))

    def render(
        self, plan, params: FilmParams | dict, folder: Path, stop: StopFlag | None = None
    ) -> Iterator[StoryProgress | StoryResult]:
        """Draw, voice and film ``plan``; progress per stage, then one StoryResult (also when stopped)."""
        plan, p = self.check(plan, params)
        stop = stop or threading.Event()
        folder.mkdir(parents=True, exist_ok=True)
        warnings: list[str] = []
        times: dict[str, float] = {}
        t0 = time.perf_counter()

        # 3. Draw: one panel per scene (cached by what made it), enlarged by the upscaler.
        subjects = self.subjects(plan)
        prompts = [self.prompt(subject, p) for subject in subjects]
        seeds = [scene.seed if scene.seed != -1 else p.seed for scene in plan.scenes]
        panels = yield from self._panels(list(zip(prompts, seeds)), p, stop)
        if len(panels) < len(plan.scenes):
            warnings.append(f"Stopped while drawing: {len(panels)} of {len(plan.scenes)} panels.")
        times["draw"] = time.perf_counter() - t0
        shown = self._enlarged(panels, p, warnings)
        times["upscale"] = time.perf_counter() - t0 - times["draw"]

        # 4. Voice: narration per drawn scene; a line that cannot be spoken leaves its shot silent.
        t1 = time.perf_counter()
        lines = []
        for line in self._voice(plan, len(panels), p, stop, warnings):
            lines.append(line)
            yield self._progress("voice", len(lines), len(panels), t1, panels)
        times["voice"] = time.perf_counter() - t1

        # 5. Film: shots, latent transitions, subtitles, sound (nothing to film once stopped). Every frame and
        # the comic page carry one watermark id, which their signed settings record.
        marker, story = new_watermark({"title": plan.title, **asdict(p), "models": self._models(p)})
        film = None
        if shown and not stop.is_set():
            t2 = time.perf_counter()
            shots = self._shots(plan, shown, lines, p, warnings)
            transitions = [
                [] if stop.is_set() else self._enlarged(self.image.latent_path(a, b, p.transition_frames), p)
                for a, b in zip(panels, panels[1:])
            ]
            times["transitions"] = time.perf_counter() - t2
            t3 = time.perf_counter()
            film = yield from self._film(shots, transitions, folder, stop, t3, panels, marker)
            times["encode"] = time.perf_counter() - t3
        # The project records what was drawn, so it reproduces the film without the grounding index.
        drawn = replace(plan, scenes=tuple(replace(s, prompt=x) for s, x in zip(plan.scenes, subjects)))
        comic = comic_page(plan, shown, folder / "comic.png", mark=marker) if shown else None
        project = write_project(folder / "story.json", drawn, asdict(p), self._models(p))
        self._sign(
            folder,
            story,
            p,
            list(zip(prompts, seeds)),
            shown,
            [comic, *((film.mp4, film.gif) if film else ())],
        )
        times["total"] = time.perf_counter() - t0
        log.info("story: %d scenes, %s", len(panels), {k: round(v, 2) for k, v in times.items()})
        yield StoryResult(
            plan, p, panels, prompts,
            film.mp4 if film else None, film.gif if film else None, film.frames_zip if film else None,
            comic, project, film.seconds if film else 0.0, film.audio_seconds if film else None,
            times, warnings, stop.is_set(),
        )  # fmt: skip

    def _enlarged(self, images: list[Image.Image], p: FilmParams, warnings: list | None = None):
        if not (p.upscale and images):
            return images
        images, warning = self.image.upscaled_or_warning(images)
        if warning and warnings is not None:
            warnings.append(warning)
        return images

    def _voice(self, plan: Plan, n: int, p: FilmParams, stop: StopFlag, warnings: list[str]) -> Iterator:
        """Each of the first ``n`` scenes' narration, spoken (None where it could not be)."""
        if self.speech is None:
            warnings.append("No speech engine is available: the film is silent (AIGC_STORY_SPEECH).")
            return
        for i, scene in enumerate(plan.scenes[:n]):
            if stop.is_set():
                return
            try:
                yield self._line(scene.narration, p)
            except (ValueError, RuntimeError) as err:  # one unspeakable line must not cost the film
                warnings.append(f"Scene {i + 1} is silent: {err}")
                yield None

    def _shots(self, plan: Plan, shown, lines, p: FilmParams, warnings: list[str]) -> list[Shot]:
        """A shot per panel: as long as its narration (or the set duration), within what a shot may last."""
        shots = []
        low, high = SHOT_SECONDS
        rate = self.cfg.sample_rate
        for i, panel in enumerate(shown):
            speech = lines[i] if i < len(lines) else None
            audio = None if speech is None else speech.resampled(rate).samples
            narrated = self.cfg.min_scene_seconds if speech is None else speech.seconds + 0.5
            seconds = min(max(p.scene_seconds or max(self.cfg.min_scene_seconds, narrated), low), high)
            if speech is not None and speech.seconds > seconds:
                warnings.append(
                    f"Scene {i + 1}: the narration ({speech.seconds:.1f} s) is cut to {seconds:.1f} s."
                )
                audio = audio[: int(seconds * rate)]
            shots.append(Shot(panel, seconds, plan.scenes[i].narration, audio, MOTIONS[i % len(MOTIONS)]))
        return shots

    def _film(self, shots, transitions, folder: Path, stop: StopFlag, t0: float, panels, mark: FrameMarker):
        """Encode on a thread of its own while this stream reports the frames. A client that goes away stops
        it: its heavy-job slot is free then, and the encoder must not keep a core."""
        spec = FilmSpec(size=self.cfg.video_size, fps=self.cfg.fps, sample_rate=self.cfg.sample_rate)
        frames = {"done": 0, "total": 1}
        abandoned = threading.Event()
        outcome: dict = {}

        def encode() -> None:
            try:
                outcome["film"] = render_film(
                    shots, transitions, folder, spec, stop=lambda: stop.is_set() or abandoned.is_set(),
                    progress=lambda done, total: frames.update(done=done, total=total), mark=mark,
                )  # fmt: skip
            except BaseException as err:  # re-raised below, in the caller's thread
                outcome["error"] = err

        worker = threading.Thread(target=encode, name="story-film", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.25)
                yield self._progress("film", frames["done"], frames["total"], t0, panels)
        finally:
            if worker.is_alive():
                abandoned.set()
                worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["film"]

    def _progress(self, stage: str, done: int, total: int, t0: float, panels) -> StoryProgress:
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (total - done) if done else None
        return StoryProgress(stage, done, total, elapsed, eta, list(panels))

    def _panels(self, wanted: list[tuple[str, int]], p: FilmParams, stop: StopFlag):
        """The panel of each (prompt, seed): from the cache, the rest drawn in one batch (about twice as fast
        per image as one at a time on 2 cores). Stopped, only the panels that exist before the first missing
        one are kept, so the film never skips a scene."""
        keys = [(prompt, seed, p.generator, p.num_inference_steps) for prompt, seed in wanted]
        with self._cache_lock:
            found = {k: self._panels_cache[k] for k in keys if k in self._panels_cache}
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing and not stop.is_set():
            request = {"num_inference_steps": p.num_inference_steps, "generator": p.generator, "prompt": "-"}
            for event in self.image.draw_panels(request, [k[:2] for k in missing], stop):
                if isinstance(event, ImageProgress):
                    shown = [found[k] for k in keys if k in found]
                    yield StoryProgress("draw", event.step, event.total, event.elapsed_s, event.eta_s, shown)
                elif not event.interrupted:
                    found.update(zip(missing, event.images))
                    with self._cache_lock:
                        for k, image in zip(missing, event.images):
                            self._panels_cache[k] = image
                        while len(self._panels_cache) > self.cfg.cache_items:
                            self._panels_cache.popitem(last=False)
        panels = []
        for k in keys:
            if k not in found:
                break
            panels.append(found[k])
        return panels

    def _line(self, text: str, p: FilmParams):
        text, voice, rate = check_request(text, p.voice, p.speech_rate, self.speech)
        key = (text, voice, rate)
        with self._cache_lock:
            if key in self._lines:
                return self._lines[key]
        speech = self.speech.speak(text, voice, rate)
        with self._cache_lock:
            self._lines[key] = speech
            while len(self._lines) > self.cfg.cache_items:
                self._lines.popitem(last=False)
        return speech

    def _sign(
        self, folder: Path, story: dict, p: FilmParams, made: list, pictures: list, outputs: list
    ) -> None:
        """Content Credentials: each picture signed with what drew it; the comic and the film signed with
        the story's settings and the pictures as their ingredients."""
        models = self._models(p)
        ingredients = [
            save_png(img, {"prompt": prompt, "seed": seed, "generator": p.generator, "model": models["image"]},
                     folder / f"panel-{i + 1}")
            for i, (img, (prompt, seed)) in enumerate(zip(pictures, made))
        ]  # fmt: skip
        for path in outputs:
            if path is not None:
                sign_if_enabled(path, story, ingredients)

    def _models(self, p: FilmParams) -> dict:
        return {
            "text": model_name(self.text.model_id),
            "image": model_name(self.image.generators[p.generator].model_id),
            "speech": getattr(self.speech, "name", None),
        }


def check_scenes(plan: Plan, what: str) -> None:
    """The content filter on the title and each scene's words (one text per scene, so one bad scene is not
    diluted by the others)."""
    check_text(plan.title, what)
    for i, scene in enumerate(plan.scenes, 1):
        check_text(
            " ".join(filter(None, (scene.narration, scene.picture, scene.prompt))), f"{what} (scene {i})"
        )


# The Ken Burns moves in turn, so consecutive shots do not repeat one.
MOTIONS = tuple(m for m in FILM_MOTIONS if m != "still")
