"""A story plan: a title and scenes (narration + what the picture shows), written by the language model under a
JSON schema (constrained decoding, so the plan is valid by construction) or edited by hand in the Story tab.

``plan_schema`` is what the model's sampler is held to (one sentence per narration, plain English pictures);
``Plan``'s checks are what every plan must pass, whether written by the model, edited in the table or loaded
from a project file (a person may write more than the model is allowed to).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from aigc_demo import validation
from aigc_demo.speech import has_han

MIN_SCENES, MAX_SCENES = 3, 8
MAX_TITLE = 60
MAX_NARRATION = 160  # characters a person may type; the model is held to one sentence (plan_schema)
MAX_PICTURE = 60
# The picture line is what grounding matches against English corpus captions, so it is held to plain
# lower-case English words whatever the idea's language.
PICTURE_PATTERN = r"^[a-z][a-z ]{2,40}$"


def narration_pattern(limit: int) -> str:
    """One line of prose: no JSON brackets or quotes (a small model that wants to end the object early would
    otherwise write ``]}`` into the sentence), no control characters, ``limit`` characters at most."""
    prose = r'<>\[\]{}"\\\x00-\x1f'
    # The first character is not punctuation either: a sentence starts with a word.
    return rf"^[^ ,.;:!?，。'()0-9{prose}][^{prose}]{{7,{limit - 1}}}$"


SYSTEM_PROMPT = (
    "You plan short picture-book stories. Each scene has one narration sentence in the language of the "
    "idea and a picture: two to five plain English words naming the one thing the picture shows."
)
# One worked example (in the idea's language) steers a small model far better than instructions alone.
EXAMPLE_IDEA = {"en": "a fish who wants to fly", "zh": "一条想飞的小鱼"}
EXAMPLE_PLAN = {
    "en": {
        "title": "The Fish Who Wanted to Fly",
        "scenes": [
            {"narration": "A little fish looked up at the birds every day.", "picture": "tropical fish"},
            {"narration": "One morning a kind bird offered to carry him.", "picture": "bird"},
            {"narration": "Together they flew over the blue sea.", "picture": "water wave"},
            {"narration": "Back home, the fish told everyone about the sky.", "picture": "smiling face"},
        ],
    },
    "zh": {
        "title": "想飞的小鱼",
        "scenes": [
            {"narration": "一条小鱼每天都抬头看天上的鸟。", "picture": "tropical fish"},
            {"narration": "一天早上，一只好心的鸟说要带它飞。", "picture": "bird"},
            {"narration": "它们一起飞过了蓝色的大海。", "picture": "water wave"},
            {"narration": "回到家，小鱼告诉大家天空的样子。", "picture": "smiling face"},
        ],
    },
}


def language_of(text: str) -> str:
    """ "zh" when the text has CJK characters, else "en": the narration follows the idea's language."""
    return "zh" if has_han(text or "") else "en"


def plan_schema(scenes: int, language: str = "en") -> dict:
    """The JSON schema of a plan with exactly ``scenes`` scenes: what the sampler is held to."""
    # About one spoken sentence (5-8 s): a small model rambles when allowed more.
    narration = 40 if language == "zh" else 120
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 40},
            "scenes": {
                "type": "array",
                "minItems": scenes,
                "maxItems": scenes,
                "items": {
                    "type": "object",
                    "properties": {
                        "narration": {"type": "string", "pattern": narration_pattern(narration)},
                        "picture": {"type": "string", "pattern": PICTURE_PATTERN},
                    },
                    "required": ["narration", "picture"],
                },
            },
        },
        "required": ["title", "scenes"],
    }


def plan_messages(idea: str, scenes: int) -> tuple[str, list[dict], str]:
    """(system prompt, few-shot history, user message) for planning ``idea`` in ``scenes`` scenes."""
    lang = language_of(idea)
    history = [
        {"role": "user", "content": f"Idea: {EXAMPLE_IDEA[lang]}\nScenes: 4"},
        {"role": "assistant", "content": json.dumps(EXAMPLE_PLAN[lang], ensure_ascii=False)},
    ]
    return SYSTEM_PROMPT, history, f"Idea: {idea}\nScenes: {scenes}"


@dataclass(frozen=True)
class Scene:
    narration: str
    picture: str  # what the picture shows, in plain words
    prompt: str = ""  # what the image model draws; "" = ground ``picture`` (or use it as is for hub models)
    seed: int = -1  # -1 = the story's seed (the same starting noise in every panel)

    def row(self) -> list:
        return [self.narration, self.picture, self.prompt, self.seed]


ROW_FIELDS = ("narration", "picture", "prompt", "seed")


@dataclass(frozen=True)
class Plan:
    title: str
    scenes: tuple[Scene, ...]

    # -- checks: every way into a plan goes through these -----------------------------------------
    def __post_init__(self) -> None:
        validation.text("title", self.title, MAX_TITLE)
        _check_count(len(self.scenes))

    @staticmethod
    def scene(i: int, narration, picture, prompt="", seed=-1) -> Scene:
        """One checked scene; ``i`` (from 1) names the row in messages."""
        where = f"scene {i}"
        narration = validation.text(f"{where} narration", narration, MAX_NARRATION, required=True)
        picture = validation.text(f"{where} picture", picture, MAX_PICTURE)
        prompt = validation.text(f"{where} prompt", prompt, MAX_PICTURE * 2)
        if not (picture or prompt):
            raise ValueError(f"{where}: say what the picture shows (picture or prompt)")
        try:
            seed = validation.seed_setting(seed)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        return Scene(narration, picture, prompt, seed)

    @classmethod
    def from_dict(cls, data) -> Plan:
        """A plan from the model's JSON or a project file: {"title", "scenes": [{"narration", "picture", ...}]}."""
        if not isinstance(data, dict) or not isinstance(data.get("scenes"), list):
            raise ValueError('a plan is {"title": ..., "scenes": [{"narration": ..., "picture": ...}, ...]}')
        _check_count(len(data["scenes"]))
        scenes = []
        for i, s in enumerate(data["scenes"], 1):
            if not isinstance(s, dict):
                raise ValueError(f"scene {i} must be an object with narration and picture")
            scenes.append(cls.scene(i, *(s.get(k, d) for k, d in zip(ROW_FIELDS, ("", "", "", -1)))))
        return cls(validation.text("title", data.get("title", ""), MAX_TITLE), tuple(scenes))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(load_json(text, "the plan"))

    @classmethod
    def from_rows(cls, title, rows) -> Plan:
        """A plan from the tab's editable table (rows of narration, picture, prompt, seed); empty rows are
        dropped, so deleting a row's text removes the scene."""
        rows = _table_rows(rows)
        kept = [r for r in rows if any(str(c).strip() for c in r[:3])]
        _check_count(len(kept))
        scenes = []
        for i, r in enumerate(kept, 1):
            cells = (list(r) + ["", "", "", -1])[:4]
            scenes.append(cls.scene(i, *cells))
        return cls(validation.text("title", title, MAX_TITLE), tuple(scenes))

    # -- views ----------------------------------------------------------------------------------------
    def rows(self) -> list[list]:
        return [s.row() for s in self.scenes]

    def to_dict(self) -> dict:
        return {"title": self.title, "scenes": [asdict(s) for s in self.scenes]}

    def with_scene(self, i: int, **changes) -> Plan:
        scenes = list(self.scenes)
        scenes[i] = replace(scenes[i], **changes)
        return replace(self, scenes=tuple(scenes))

    @property
    def language(self) -> str:
        return language_of(" ".join(s.narration for s in self.scenes))

    def with_finished_sentences(self) -> Plan:
        """The model's narrations with every sentence ended (``finished_sentence``)."""
        scenes = tuple(replace(s, narration=finished_sentence(s.narration)) for s in self.scenes)
        return replace(self, scenes=scenes)


SENTENCE_ENDS = ".!?。！？…"
KEPT_SENTENCES_MIN = 20  # characters: a shorter whole sentence says too little to stand alone


def finished_sentence(text: str) -> str:
    """A narration that the schema's length limit cut mid-sentence ("..., but to do so,"), ended where its last
    whole sentence ends, or at its last word with a full stop: read aloud, a trailing comma leaves the
    listener waiting for words that never come."""
    text = text.rstrip()
    if not text or text[-1] in SENTENCE_ENDS + "\"'”’)）":
        return text
    last_end = max(text.rfind(c) for c in SENTENCE_ENDS)
    if last_end + 1 >= KEPT_SENTENCES_MIN:
        return text[: last_end + 1]
    return text.rstrip(" ,;:-–—，、；：") + ("。" if has_han(text) else ".")


def _table_rows(rows) -> list[list]:
    """Rows from a gradio Dataframe value (a dict with "data", a pandas frame) or a plain list of lists."""
    if rows is None:
        return []
    if isinstance(rows, dict):
        rows = rows.get("data", [])
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # pandas, without importing it
        rows = rows.values.tolist()
    if not isinstance(rows, list | tuple) or not all(isinstance(r, list | tuple) for r in rows):
        raise ValueError("the plan table must be rows of [narration, picture, prompt, seed]")
    return [list(r) for r in rows]


def _check_count(n: int) -> None:
    if not MIN_SCENES <= n <= MAX_SCENES:
        raise ValueError(f"a story has {MIN_SCENES} to {MAX_SCENES} scenes; this one has {n}")


MAX_JSON_CHARS = 1_000_000  # a plan or project is a few kB


def load_json(text, what: str):
    """JSON from text, or a ValueError saying what is wrong with ``what`` (never a traceback)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be JSON text, not {validation.quoted(text)}")
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{what} is over {MAX_JSON_CHARS // 1000} kB; a story is a few kB")
    try:
        # strict=False: llama.cpp's JSON grammar lets a raw newline into a string now and then; the text
        # checks of every field drop control characters anyway.
        return json.loads(text, strict=False)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be a story") from None
