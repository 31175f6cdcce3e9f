"""Story plans: the schema the sampler is held to, the checks on edited tables and project files, grounding."""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from aigc_demo.config import TextConfig
from aigc_demo.models import DEFAULT_TEXT_ENCODER
from aigc_demo.pipelines.grounding import Grounding, minilm_encoder
from aigc_demo.pipelines.story_files import read_project, write_project
from aigc_demo.pipelines.story_plan import Plan, finished_sentence, language_of, plan_messages, plan_schema
from aigc_demo.pipelines.text import GenerationParams, TextPipeline

ROWS = [
    ["A cat hates the rain.", "cat face", "", -1],
    ["It finds an umbrella.", "umbrella", "closed umbrella", 7],
    ["Now it dances in puddles.", "water wave", "", ""],
]


@pytest.mark.parametrize(
    ("cut", "ended"),
    [
        ("A snowman looks at the sun.", "A snowman looks at the sun."),
        ("He met many people wearing shorts this summer,", "He met many people wearing shorts this summer."),
        (
            "He looked at his reflection in the mirror. He dreamed that he could see it again, but to do so,",
            "He looked at his reflection in the mirror.",
        ),
        ("He ran. Then he saw a", "He ran. Then he saw a."),  # the whole sentence is too short to stand alone
        ('She said "hello"', 'She said "hello"'),
        ("一只小猫每天都看着窗外的雨，", "一只小猫每天都看着窗外的雨。"),
        ("", ""),
    ],
)
def test_a_narration_cut_mid_sentence_is_ended(cut, ended):
    assert finished_sentence(cut) == ended
    if cut:
        plan = Plan.from_rows("t", [[cut, "cat", "", -1]] * 3).with_finished_sentences()
        assert [s.narration for s in plan.scenes] == [ended] * 3


def test_a_table_becomes_a_checked_plan():
    plan = Plan.from_rows("Rainy cat", ROWS + [["", "", "", -1]])  # an emptied row is dropped
    assert [s.seed for s in plan.scenes] == [-1, 7, -1]
    assert plan.scenes[1].prompt == "closed umbrella"
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert Plan.from_rows("Rainy cat", {"data": ROWS}) == plan  # gradio's dict form


@pytest.mark.parametrize(
    ("title", "rows", "message"),
    [
        ("t", ROWS[:2], "3 to 8 scenes"),
        ("t", ROWS * 3, "3 to 8 scenes"),
        ("t", [["", "umbrella", "", -1], *ROWS[1:]], "scene 1 narration"),
        ("t", [["Hello there.", "", "", -1], *ROWS[1:]], "scene 1: say what the picture shows"),
        ("t", [["Hello there.", "cat", "", "lots"], *ROWS[1:]], "scene 1: seed must be a whole number"),
        ("t", [*ROWS[:2], ["x" * 10_000, "cat", "", -1]], "scene 3 narration"),
        ("t" * 100, ROWS, "title"),
        ("t", "not a table", r"rows of \[narration"),
    ],
)
def test_bad_tables_name_the_problem(title, rows, message):
    with pytest.raises(ValueError, match=message):
        Plan.from_rows(title, rows)


def test_a_raw_newline_inside_a_string_is_kept_as_text():
    # llama.cpp's JSON grammar lets one through now and then; refusing the whole plan for it would be wrong.
    text = (
        '{"title": "Snow", "scenes": ['
        + ", ".join(['{"narration": "It melts.\nHow sad.", "picture": "snowman"}'] * 3)
        + "]}"
    )
    plan = Plan.from_json(text)
    assert plan.scenes[0].narration == "It melts.\nHow sad."


@pytest.mark.parametrize(
    ("narration", "allowed"),
    [
        ("A snowman looked up at the sun.", True),
        ("一条小鱼每天都抬头看天上的鸟。", True),
        ("]}] } You are given an idea", False),  # the model ending the object inside a sentence
        (", and then the sun came out", False),
        ("It melts.\nHow sad.", False),
        ("x" * 121, False),
    ],
)
def test_narration_is_held_to_one_line_of_prose(narration, allowed):
    pattern = plan_schema(4)["properties"]["scenes"]["items"]["properties"]["narration"]["pattern"]
    assert bool(re.match(pattern, narration)) is allowed


def test_the_schema_fixes_the_scene_count_and_keeps_pictures_in_plain_english():
    schema = plan_schema(5, "zh")
    scenes = schema["properties"]["scenes"]
    assert scenes["minItems"] == scenes["maxItems"] == 5
    assert scenes["items"]["properties"]["picture"]["pattern"].startswith("^[a-z]")
    assert language_of("一只猫") == "zh" and language_of("a cat") == "en"
    system, history, message = plan_messages("一只怕雨的猫", 5)
    assert "Scenes: 5" in message and json.loads(history[1]["content"])["scenes"]


@pytest.mark.parametrize("scenes", [3, 8])
def test_llama_cpp_compiles_the_plan_grammar(scenes):
    from llama_cpp import LlamaGrammar

    for language in ("en", "zh"):
        LlamaGrammar.from_json_schema(json.dumps(plan_schema(scenes, language)), verbose=False)


@pytest.fixture(scope="module")
def tiny_text(tiny_llama_dir):
    return TextPipeline.from_config(
        TextConfig(model=str(tiny_llama_dir), engine="transformers", context_length=256)
    )


SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 8},
        "scenes": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {"picture": {"type": "string", "pattern": "^[a-z][a-z ]{2,8}$"}},
                "required": ["picture"],
            },
        },
    },
    "required": ["title", "scenes"],
}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_random_model_still_writes_valid_json_under_the_schema(tiny_text, seed):
    """Constrained decoding on transformers: even random weights can only produce what the schema allows."""
    params = GenerationParams(max_new_tokens=180, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
    last = None
    for last in tiny_text.chat("plan", system_prompt="", params=params, json_schema=SMALL_SCHEMA):
        pass
    assert last.stats.finish_reason == "stop", last.text
    data = json.loads(last.text)
    assert len(data["scenes"]) == 2 and 1 <= len(data["title"]) <= 8
    assert all(s["picture"][0].isalpha() and s["picture"].islower() for s in data["scenes"])


def test_grounding_maps_descriptions_to_the_subjects_the_model_knows(tmp_path):
    index = tmp_path / "index.json"
    names = ["umbrella with rain drops", "cat face", "bread", "water wave", "held-out thing"]
    items = [{"name": n, "split": "heldout" if n.startswith("held") else "train"} for n in names]
    index.write_text(json.dumps({"items": items}))
    grounding = Grounding.from_index(index, minilm_encoder(DEFAULT_TEXT_ENCODER))
    assert "held-out thing" not in grounding.names  # only subjects the models trained on
    best = grounding.suggest(["an umbrella in the rain", "a loaf of bread"], k=2)
    assert best[0][0].name == "umbrella with rain drops" and best[1][0].name == "bread"
    assert best[0][0].similarity > best[0][1].similarity
    assert best[0][0].prompt("twemoji") == "umbrella with rain drops, in Twemoji style"


def test_a_project_file_round_trips_and_bad_ones_are_named(tmp_path):
    plan = Plan.from_rows("Rainy cat", ROWS)
    path = write_project(tmp_path / "story.json", plan, {"seed": 5}, {"text": "m"})
    loaded, film = read_project(path)
    assert loaded == plan and film["seed"] == 5
    data = json.loads(path.read_text())
    cases = {
        "other-version.json": ({**data, "version": 99}, "version 99"),
        "not-a-story.json": ({"hello": 1}, "not an AIGC Studio story project"),
        "no-film.json": ({**data, "film": None}, "no 'film' settings"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            read_project(tmp_path / name)
    (tmp_path / "broken.json").write_text(path.read_text()[:-20])
    with pytest.raises(ValueError, match="not valid JSON"):
        read_project(tmp_path / "broken.json")
    with zipfile.ZipFile(tmp_path / "frames.json", "w") as zf:
        zf.writestr("a.txt", "x")
    with pytest.raises(ValueError, match="ZIP"):
        read_project(tmp_path / "frames.json")
    with pytest.raises(ValueError, match="not found"):
        read_project(tmp_path / "missing.json")
