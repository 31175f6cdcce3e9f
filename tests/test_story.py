"""The Story chain on tiny random models with the real speech engine (eSpeak NG) and the real encoder (ffmpeg)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import zipfile

import imageio_ffmpeg
import pytest
from PIL import Image

from aigc_demo.config import ProvenanceConfig, StoryConfig, TextConfig
from aigc_demo.models import EmojiUpscaler, save_fp16
from aigc_demo.pipelines.image import ImagePipeline
from aigc_demo.pipelines.story import StoryPipeline, StoryProgress, StoryResult
from aigc_demo.pipelines.story_plan import Plan
from aigc_demo.pipelines.text import TextPipeline
from aigc_demo.pipelines.verify import VerifyPipeline
from aigc_demo.provenance.content_credentials import content_credentials
from aigc_demo.speech import build_speech

ROWS = [
    ["A cat hates the rain.", "cat face", "", -1],
    ["It finds an umbrella.", "umbrella", "", 7],
    ["Now it dances in the puddles.", "water wave", "", -1],
]


@pytest.fixture(scope="module")
def story(tiny_llama_dir, tiny_image_config, tmp_path_factory):
    upscaler = tmp_path_factory.mktemp("upscaler")
    save_fp16(EmojiUpscaler(width=8, blocks=1, tail_width=4), upscaler)
    image = ImagePipeline.from_config(tiny_image_config(upscaler=str(upscaler)))
    text = TextPipeline.from_config(
        TextConfig(model=str(tiny_llama_dir), engine="transformers", context_length=256)
    )
    cfg = StoryConfig(video_size=256, fps=8, min_scene_seconds=1.0)
    return StoryPipeline(text, image, build_speech("espeak-ng"), None, cfg)


def render(story, plan, params, folder, stop=None) -> tuple[list[StoryProgress], StoryResult]:
    events = list(story.render(plan, params, folder, stop))
    return events[:-1], events[-1]


def stream_seconds(path) -> dict[str, float]:
    """Duration of each stream of a media file, as ffmpeg decodes it."""
    out = {}
    for kind, flag in (("video", "-an"), ("audio", "-vn")):
        proc = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "info", flag, "-i", str(path), "-f", "null", "-"],
            capture_output=True,
            text=True,
        )
        times = re.findall(r"time=(\d+):(\d+):([\d.]+)", proc.stderr)
        if times and ("Audio:" in proc.stderr if kind == "audio" else "Video:" in proc.stderr):
            h, m, s = times[-1]
            out[kind] = int(h) * 3600 + int(m) * 60 + float(s)
    return out


def test_a_plan_becomes_a_narrated_film(story, tmp_path):
    plan = Plan.from_rows("Rainy cat", ROWS)
    progress, result = render(
        story, plan, {"seed": 11, "num_inference_steps": 2, "transition_frames": 2}, tmp_path
    )
    stages = [e.stage for e in progress]
    # The three panels are drawn in one batch: progress per denoising step, then per narration line.
    assert stages[:5] == ["draw"] * 2 + ["voice"] * 3 and set(stages[5:]) <= {"film"}
    assert not result.warnings and not result.stopped
    assert len(result.panels) == 3 and result.params.seed == 11
    # Scene 2 has its own seed; scenes 1 and 3 share the story's starting noise.
    seeds = [json.loads(result.project.read_text())["plan"]["scenes"][i]["seed"] for i in range(3)]
    assert seeds == [-1, 7, -1]
    streams = stream_seconds(result.mp4)
    assert abs(streams["video"] - streams["audio"]) <= 1 / 8 + 0.05, streams
    assert streams["video"] == pytest.approx(result.seconds, abs=0.2)
    assert result.seconds >= 3 * 1.0  # every scene lasts at least as long as its narration
    with Image.open(result.comic) as comic, Image.open(result.gif) as gif:
        assert comic.width >= 2 * 256 and gif.n_frames > 3
    assert zipfile.ZipFile(result.frames_zip).namelist()
    # Signed: the film, its GIF and the comic list the three pictures as ingredients.
    for path in (result.mp4, result.gif, result.comic):
        verdict = content_credentials().verify(path)
        assert verdict.state == "valid" and len(verdict.ingredients) == 3, (path, verdict.message)
        assert verdict.generation["title"] == "Rainy cat" and verdict.generation["seed"] == 11
    # Every frame of the film and its GIF carry the watermark id their credentials record.
    for path in (result.mp4, result.gif):
        mark = VerifyPipeline.from_config(ProvenanceConfig()).inspect(path).watermark
        assert mark.found and f"{mark.watermark_id:06x}" == verdict.generation["watermark_id"], path


def test_a_rerender_reuses_panels_and_a_project_reproduces_the_film(story, tmp_path):
    params = {"seed": 5, "num_inference_steps": 2, "transition_frames": 0, "upscale": False}
    _, first = render(story, Plan.from_rows("Rainy cat", ROWS), params, tmp_path / "a")
    plan, film = story.load_project(first.project)
    _, again = render(story, plan, film, tmp_path / "b")
    assert again.stage_seconds["draw"] < first.stage_seconds["draw"] or first.stage_seconds["draw"] < 0.05
    for a, b in zip(first.panels, again.panels, strict=True):
        assert a.tobytes() == b.tobytes()


def test_stop_keeps_what_exists(story, tmp_path):
    stop = threading.Event()
    stop.set()
    progress, result = render(
        story, Plan.from_rows("Rainy cat", ROWS), {"seed": 1, "num_inference_steps": 2}, tmp_path, stop
    )
    assert result.stopped and result.mp4 is None and result.project.is_file()
    assert any("Stopped while drawing" in w for w in result.warnings)


def test_without_a_speech_engine_the_film_is_silent_with_a_warning(story, tmp_path):
    silent = StoryPipeline(story.text, story.image, None, None, story.cfg)
    _, result = render(
        silent, Plan.from_rows("Rainy cat", ROWS), {"seed": 2, "num_inference_steps": 2}, tmp_path
    )
    assert result.audio_seconds is None and "audio" not in stream_seconds(result.mp4)
    assert any("silent" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("plan", "params", "message"),
    [
        ({"title": "t", "scenes": []}, {}, "3 to 8 scenes"),
        ("{not json", {}, "not valid JSON"),
        (None, {"voice": "klingon"}, "voice 'klingon' does not exist"),
        (None, {"style": "cubism"}, "style"),
        (None, {"num_inference_steps": 10_000}, "num_inference_steps"),
        (None, {"scene_seconds": -1}, "scene_seconds"),
    ],
)
def test_bad_requests_name_the_problem(story, tmp_path, plan, params, message):
    plan = plan if plan is not None else Plan.from_rows("Rainy cat", ROWS)
    with pytest.raises(ValueError, match=message):
        render(story, plan, params, tmp_path)


def test_chinese_narration_gets_the_mandarin_voice(story):
    assert story.speech.default_voice("一只怕雨的猫") == "cmn"


def test_a_stable_diffusion_folder_draws_descriptions_as_written(story):
    """Grounding is for the project's own models; a pipeline with its own text encoder gets the words."""
    hub_like = StoryPipeline.from_config(StoryConfig(speech="none"), story.text, story.image)
    assert hub_like.grounding is None and hub_like.speech is None
    plan = Plan.from_rows("Rainy cat", ROWS)
    assert hub_like.subjects(plan) == ["cat face", "umbrella", "water wave"]
    params = hub_like.film_schema.parse(style="openmoji", character="a tabby cat with")
    assert hub_like.prompt("umbrella", params) == "a tabby cat with umbrella, in OpenMoji style"


def test_narration_longer_than_its_shot_is_cut_and_the_film_still_made(story, tmp_path):
    params = {"seed": 4, "num_inference_steps": 2, "transition_frames": 0, "scene_seconds": 0.2}
    _, result = render(story, Plan.from_rows("Rainy cat", ROWS), params, tmp_path)
    assert result.mp4 is not None and result.seconds == pytest.approx(3 * 0.5 + 2 * 0.75, abs=0.3)
    assert sum("is cut to 0.5 s" in w for w in result.warnings) == 3


def test_a_line_the_engine_cannot_speak_leaves_its_shot_silent(story, tmp_path):
    from aigc_demo.speech import EspeakEngine

    failing = EspeakEngine()
    failing.timeout = 1e-4  # every call times out: a real engine failure
    broken = StoryPipeline(story.text, story.image, failing, None, story.cfg)
    _, result = render(
        broken, Plan.from_rows("Rainy cat", ROWS), {"seed": 6, "num_inference_steps": 2}, tmp_path
    )
    assert result.mp4 is not None and sum("is silent" in w for w in result.warnings) == 3


def test_hostile_plans_and_projects_get_messages(story, tmp_path):
    with pytest.raises(ValueError, match="nested too deeply"):
        Plan.from_json("[" * 200_000)
    with pytest.raises(ValueError, match="over 1000 kB"):
        Plan.from_json(" " * 2_000_000)
    with pytest.raises(ValueError, match="3 to 8 scenes; this one has 100000"):
        Plan.from_dict({"title": "t", "scenes": [{}] * 100_000})
    _, result = render(
        story, Plan.from_rows("Rainy cat", ROWS), {"seed": 5, "num_inference_steps": 2}, tmp_path
    )
    data = json.loads(result.project.read_text())
    assert [s["prompt"] for s in data["plan"]["scenes"]] == ["cat face", "umbrella", "water wave"]
    data["film"]["seed"] = "abc"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="seed must be a whole number"):
        story.load_project(broken)
    with pytest.raises(ValueError, match="not found"):
        story.load_project(tmp_path)  # a directory
