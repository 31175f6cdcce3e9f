"""The Story tab: an idea becomes a narrated film, every stage visible and editable. Layout and wiring only.

Plan (the language model writes an editable storyboard) → panels (one picture per scene, each with its own
seed when re-rolled) → film (narration, pans, latent-space transitions, subtitles). Downloads: the MP4, a GIF,
the frames, a comic page and the project file, which loads back into the tab and reproduces the film.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict

import gradio as gr
from gradio.data_classes import FileData

from aigc_demo import validation
from aigc_demo.outputs import fresh_output_dir
from aigc_demo.pipelines.story import PlanUpdate, StoryPipeline, StoryProgress
from aigc_demo.pipelines.story_plan import MAX_SCENES, ROW_FIELDS, Plan
from aigc_demo.registry import LoadFailure
from aigc_demo.ui.controls import Controls, api, arg
from aigc_demo.ui.errors import user_errors, user_errors_stream
from aigc_demo.ui.sessions import SessionStops
from aigc_demo.ui.shared import HEAVY, failure_notice, pixel_gallery
from aigc_demo.ui.strings import EN, t

log = logging.getLogger(__name__)

EXAMPLES = [
    "a cat who is afraid of rain finds an umbrella",
    "a robot learns to bake bread",
    "a snowman who wants to see the summer",
    "一只怕雨的小猫找到了一把伞",
]
STAGES = {"draw": "story_stage_draw", "voice": "story_stage_voice", "film": "story_stage_film"}


def suggestions_markdown(plan: Plan, suggestions) -> str:
    """Per scene: the subjects its picture grounds to, with their similarity (the first is used)."""
    if not any(suggestions):
        return ""
    lines = [f"{t('story_suggestions')}"]  # a str: the page translates the key inside it
    for i, (scene, options) in enumerate(zip(plan.scenes, suggestions, strict=True), 1):
        picks = " · ".join(f"`{s.name}` {s.similarity:.2f}" for s in options)
        lines.append(f"{i}. *{scene.picture}* → {picks}")
    return "\n".join(lines)


def result_info(result) -> str:
    times = " · ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items())
    sound = f"{result.audio_seconds:.1f} s narration" if result.audio_seconds else "silent"
    text = f"**{result.plan.title}** · {result.seconds:.1f} s film, {sound} · seed `{result.params.seed}`\n\n{times}"
    for w in result.warnings:
        text += f"\n\n⚠️ {w}"
    return text


class StoryTab:
    def __init__(self, pipe: StoryPipeline):
        self.pipe = pipe
        self._stops = SessionStops(threading.Event)
        self._build()
        self._wire()

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        pipe = self.pipe
        gr.Markdown(t("story_intro"))
        with gr.Row():
            with gr.Column(scale=1):
                self.plan_controls = Controls.build(
                    pipe.plan_schema,
                    ["idea", "scenes", "temperature", "seed"],
                    idea={"elem_id": "story-idea", "placeholder": EXAMPLES[0]},
                    seed={"label": t("story_plan_seed")},
                )
                with gr.Row():
                    self.plan_button = gr.Button(t("story_plan"), variant="primary", elem_id="story-plan")
                    self.stop_button = gr.Button(t("stop"), variant="stop", elem_id="story-stop")
                gr.Examples([[e] for e in EXAMPLES], [self.plan_controls["idea"]], label=t("examples"))
                self.title = gr.Textbox(label=t("story_title"), elem_id="story-title")
                self.table = gr.Dataframe(
                    # Plain headers: Gradio's Dataframe does not translate i18n keys in them.
                    headers=[EN[f"story_col_{f}"] for f in ROW_FIELDS],
                    datatype=["str", "str", "str", "number"],
                    column_count=len(ROW_FIELDS),
                    column_widths=["50%", "22%", "18%", "10%"],  # without widths the narration takes the row
                    max_height=420,
                    type="array",
                    wrap=True,
                    interactive=True,
                    label=t("story_table"),
                    elem_id="story-table",
                )
                self.suggestions = gr.Markdown(elem_id="story-suggestions")
                with gr.Row():
                    self.scene_number = gr.Number(
                        1, precision=0, minimum=1, maximum=MAX_SCENES, label=t("story_scene")
                    )
                    self.reroll = gr.Button(t("story_reroll"), size="sm", elem_id="story-reroll")
                    self.move_up = gr.Button(t("story_move_up"), size="sm")
                    self.move_down = gr.Button(t("story_move_down"), size="sm")
                    self.remove = gr.Button(t("story_remove"), size="sm")
                with gr.Accordion(t("story_film_settings"), open=False):
                    self.film_controls = Controls.build(
                        pipe.film_schema,
                        [
                            "style",
                            "seed",
                            "generator",
                            "num_inference_steps",
                            "upscale",
                            "voice",
                            "speech_rate",
                            "scene_seconds",
                            "transition_frames",
                        ],  # fmt: skip
                        seed={"label": t("story_picture_seed"), "elem_id": "story-seed"},
                        upscale={"interactive": pipe.image.upscaler is not None},
                        generator={"interactive": len(pipe.image.generators) > 1},
                        voice={"info": t("story_voice_info")},
                    )
                self.render_button = gr.Button(t("story_render"), variant="primary", elem_id="story-render")
                self.project_drop = gr.File(
                    label=t("story_load_project"),
                    file_types=[".json"],
                    type="filepath",
                    elem_id="story-project",
                )
            with gr.Column(scale=1):
                self.progress = gr.Markdown(elem_id="story-progress")
                self.panels = pixel_gallery(
                    label=t("story_panels"),
                    columns=4,
                    height=240,
                    allow_preview=False,
                    elem_id="story-panels",
                )
                self.video = gr.Video(
                    label=t("story_video"), elem_id="story-video", interactive=False, height=420
                )
                self.info = gr.Markdown(elem_id="story-info")
                self.files = gr.File(
                    label=t("story_downloads"),
                    file_count="multiple",
                    interactive=False,
                    elem_id="story-files",
                )

    def _wire(self) -> None:
        ui = {"api_visibility": "undocumented"}
        plan_in = {*self.plan_controls.components}
        gr.on(
            triggers=[self.plan_button.click, self.plan_controls["idea"].submit],
            fn=self.plan,
            inputs=plan_in,
            outputs=[self.progress, self.title, self.table, self.suggestions],
            concurrency_id=HEAVY,
            **ui,
        )
        self.stop_button.click(self.stop, None, None, queue=False, api_name="story_stop")
        render_in = {self.title, self.table, *self.film_controls.components}
        render_out = [
            self.progress,
            self.panels,
            self.video,
            self.info,
            self.files,
            self.film_controls["seed"],
        ]
        self.render_button.click(self.render, render_in, render_out, concurrency_id=HEAVY, **ui)
        self.reroll.click(
            self.new_seed, [self.table, self.scene_number], [self.table], queue=False, **ui
        ).then(self.render, render_in, render_out, concurrency_id=HEAVY, **ui)
        for button, step in ((self.move_up, -1), (self.move_down, 1)):
            button.click(
                lambda rows, n, step=step: self.move(rows, n, step),
                [self.table, self.scene_number],
                [self.table, self.scene_number],
                queue=False,
                **ui,
            )
        self.remove.click(self.drop, [self.table, self.scene_number], [self.table], queue=False, **ui)
        self.project_drop.upload(
            self.load_project,
            [self.project_drop],
            [self.title, self.table, *self.film_controls.values()],
            **ui,
        )

        api(
            self.api_plan,
            api_name="story_plan",
            schema=self.pipe.plan_schema,
            skip=("idea",),
            head=[arg("idea", str)],
            returns=dict,
            concurrency_id=HEAVY,
        )
        api(
            self.api_render,
            api_name="story_render",
            schema=self.pipe.film_schema,
            head=[arg("plan", dict | str)],
            returns=tuple[FileData, list[FileData], dict],
            concurrency_id=HEAVY,
        )

    # -- handlers -------------------------------------------------------------------------------------
    def stop(self, request: gr.Request = None) -> None:
        self._stops.stop(request)

    @user_errors_stream
    def plan(self, data: dict, request: gr.Request = None):
        stop = self._stops.arm(request)
        final = None
        for update in self.pipe.plan(self.plan_controls.read(data), stop):
            final = update
            if update.plan is None:
                yield {
                    self.progress: f"{t('story_planning')} · {update.seconds:.1f} s\n\n```json\n{update.text[-600:]}\n```"
                }
        yield self._plan_outputs(final)

    def _plan_outputs(self, update: PlanUpdate) -> dict:
        plan = update.plan
        return {
            self.progress: f"{t('story_planned')} · {update.seconds:.1f} s · seed `{update.seed}`",
            self.title: plan.title,
            self.table: plan.rows(),
            self.suggestions: suggestions_markdown(plan, update.suggestions),
        }

    @user_errors_stream
    def render(self, data: dict, request: gr.Request = None):
        stop = self._stops.arm(request)
        plan = Plan.from_rows(data[self.title], data[self.table])
        params = self.film_controls.read(data)
        folder = fresh_output_dir("story-")
        for event in self.pipe.render(plan, params, folder, stop):
            if isinstance(event, StoryProgress):
                eta = f" · ETA {event.eta_s:.1f} s" if event.eta_s is not None else ""
                line = f"{t(STAGES[event.stage])} {event.done}/{event.total} · {event.elapsed_s:.1f} s{eta}"
                yield {self.progress: line, self.panels: event.panels}
                continue
            yield {
                self.progress: t("story_stopped") if event.stopped else "",
                self.panels: event.panels,
                self.video: str(event.mp4) if event.mp4 else None,
                self.info: result_info(event),
                self.files: [
                    str(p) for p in (event.mp4, event.gif, event.frames_zip, event.comic, event.project) if p
                ],
                self.film_controls["seed"]: event.params.seed,
            }

    @staticmethod
    @user_errors
    def new_seed(rows, number):
        """A fresh seed for one scene: its panel is redrawn, the others keep theirs."""
        rows, i = _rows_and_index(rows, number)
        rows[i][3] = validation.seed(-1)
        return rows

    @staticmethod
    @user_errors
    def move(rows, number, step: int):
        rows, i = _rows_and_index(rows, number)
        j = min(max(i + step, 0), len(rows) - 1)
        rows[i], rows[j] = rows[j], rows[i]
        return rows, j + 1

    @staticmethod
    @user_errors
    def drop(rows, number):
        rows, i = _rows_and_index(rows, number)
        return rows[:i] + rows[i + 1 :]

    @user_errors
    def load_project(self, path):
        if not path:
            return {}
        plan, film = self.pipe.load_project(path)
        return {self.title: plan.title, self.table: plan.rows(), **self.film_controls.write(asdict(film))}

    # -- API --------------------------------------------------------------------------------------------
    @user_errors
    def api_plan(self, idea, request: gr.Request = None, **params):
        """A storyboard for ``idea``: title, scenes (narration, picture, prompt, seed) and grounding suggestions.
        Edit it and pass it to /story_render."""
        stop = self._stops.arm(request)
        final = None
        for final in self.pipe.plan({**params, "idea": idea}, stop):
            pass
        plan = final.plan
        return {
            **plan.to_dict(),
            "seed": final.seed,
            "seconds": round(final.seconds, 2),
            "grounding_seconds": round(final.grounding_seconds, 3),
            "suggestions": [[asdict(s) for s in options] for options in final.suggestions],
        }

    @user_errors
    def api_render(self, plan, request: gr.Request = None, **params):
        """The film of a plan (from /story_plan, edited or not, or a project file's "plan"): the MP4, the other
        files (GIF, frames ZIP, comic page, project JSON) and an info dict. /story_stop ends it early."""
        stop = self._stops.arm(request)
        result = None
        for result in self.pipe.render(plan, params, fresh_output_dir("story-"), stop):
            pass
        others = [p for p in (result.gif, result.frames_zip, result.comic, result.project) if p]
        info = {
            "title": result.plan.title,
            "seed": result.params.seed,
            "seconds": round(result.seconds, 2),
            "audio_seconds": None if result.audio_seconds is None else round(result.audio_seconds, 2),
            "stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
            "warnings": result.warnings,
            "stopped": result.stopped,
            "prompts": result.prompts,
        }
        mp4 = FileData(path=str(result.mp4)).model_dump() if result.mp4 else None
        return mp4, [FileData(path=str(p)).model_dump() for p in others], info


def _rows_and_index(rows, number) -> tuple[list[list], int]:
    rows = [list(r) for r in (rows or [])]
    i = validation.in_range("scene", validation.as_int("scene", number), 1, max(1, len(rows))) - 1
    if not rows:
        raise ValueError("there are no scenes yet: plan a story first")
    return rows, i


def build_story_tab(pipe: StoryPipeline | None, failure: LoadFailure | None) -> None:
    if pipe is None:
        failure_notice(failure)
        return
    StoryTab(pipe)
