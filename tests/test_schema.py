"""The one validation module and the parameter schema: one wording, one behaviour, for every caller."""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from aigc_demo import validation
from aigc_demo.schema import Config, Schema, param


@pytest.mark.parametrize(
    "value, expected", [(5, 5), (5.0, 5), ("5", 5), (" 5.0 ", 5), (np.int64(5), 5), ("-1", -1)]
)
def test_whole_numbers_in_any_plain_form(value, expected):
    assert validation.as_int("steps", value) == expected


@pytest.mark.parametrize("value", [5.5, "5.5", "abc", None, True, float("nan"), float("inf"), [5], "1e999"])
def test_not_whole_numbers_are_refused_with_the_name(value):
    with pytest.raises(ValueError, match="^steps must be a whole number"):
        validation.as_int("steps", value)


@pytest.mark.parametrize("value", ["abc", None, False, float("nan"), "inf", {}])
def test_not_numbers_are_refused_with_the_name(value):
    with pytest.raises(ValueError, match="^guidance must be a (finite )?number"):
        validation.as_float("guidance", value)


def test_ranges_say_what_is_allowed():
    assert validation.in_range("n", 3, 1, 5) == 3
    with pytest.raises(ValueError, match="n must be between 1 and 5, not 9"):
        validation.in_range("n", 9, 1, 5)
    with pytest.raises(ValueError, match="top_p must be above 0 and at most 1, not 0"):
        validation.in_range("top_p", 0, 0, 1, low_open=True)


def test_a_huge_bad_value_is_not_echoed_back():
    with pytest.raises(ValueError) as err:
        validation.as_int("seed", "9" * 100_000 + "x")
    assert len(str(err.value)) < 120


def test_text_is_cleaned_and_bounded():
    assert validation.text("prompt", " a\x00b\ud800c\n ", 100) == "abc"
    assert validation.text("prompt", None, 10) == ""
    with pytest.raises(ValueError, match="prompt is 11 characters; the limit is 10"):
        validation.text("prompt", "x" * 11, 10)
    with pytest.raises(ValueError, match="prompt must be text, not int"):
        validation.text("prompt", 5, 10)
    with pytest.raises(ValueError, match="prompt is empty, e.g. “a cat”"):
        validation.text("prompt", "  ", 10, required=True, example="a cat")


def test_random_seeds_are_fresh_even_when_every_rng_is_seeded_alike():
    drawn = []
    for _ in range(2):
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        drawn.append(validation.seed(-1))
    assert drawn[0] != drawn[1]
    assert validation.seed("7") == 7 and 0 <= validation.seed(None) <= validation.MAX_SEED
    assert validation.seed_setting("") == validation.seed_setting(None) == -1, "a cleared seed box is random"
    assert validation.seed(-1, reserve=validation.MAX_SEED) == 0  # room left for a batch's seed + i
    with pytest.raises(ValueError, match="seed must be between -1 and 4294967295"):
        validation.seed(2**40)


@dataclass(frozen=True)
class Request:
    prompt: str = param("", label="prompt", max_chars=Config("max_chars"), required=True)
    steps: int = param(20, label="steps", low=1, high=Config("max_steps"), step=1, default_from="steps")
    sampler: str = param("a", label="sampler", choices=("a", "b"))
    seed: int = param(-1, label="seed", seed=True)


@dataclass(frozen=True)
class Limits:
    max_chars: int = 10
    max_steps: int = 50
    steps: int = 30


def test_a_schema_resolves_limits_and_defaults_from_config():
    schema = Schema(Request, Limits())
    assert schema["steps"].high == 50 and schema.defaults()["steps"] == 30
    assert schema.parse(prompt="cat") == Request(prompt="cat", steps=30, sampler="a", seed=-1)
    assert schema.parse({"prompt": "cat", "steps": "7.0"}).steps == 7
    assert schema.parse(prompt="cat", seed=None).seed == -1
    assert Schema(Request, Limits(), defaults={"sampler": "b"}).parse(prompt="x").sampler == "b"
    assert Schema(Request, Limits(), choices={"sampler": ["c"]})["sampler"].choices == ("c",)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "x" * 11}, "limit is 10"),
        ({"prompt": "x", "steps": 51}, "steps must be between 1 and 50"),
        ({"prompt": "x", "sampler": "z"}, "sampler must be one of a, b"),
        ({"prompt": "x", "seed": -2}, "seed must be between -1"),
        ({"prompt": "x", "stepz": 5}, "unknown parameter"),
    ],
)
def test_a_schema_refuses_bad_values_with_one_wording(values, message):
    with pytest.raises(ValueError, match=message):
        Schema(Request, Limits()).parse(values)


def test_the_api_signature_has_a_default_for_all_but_the_main_input():
    head = [inspect.Parameter("prompt", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    params = Schema(Request, Limits()).signature(head)
    assert [p.name for p in params] == ["prompt", "steps", "sampler", "seed"]
    assert params[0].default is inspect.Parameter.empty
    assert [p.default for p in params[1:]] == [30, "a", -1]
    assert [p.annotation for p in params[1:]] == [int, str, int]


def test_file_arguments_are_paths_inside_the_given_folders(tmp_path):
    from aigc_demo import validation

    inside = tmp_path / "uploads" / "a.png"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    within = [tmp_path / "uploads"]
    assert validation.file_path("image", {"path": str(inside)}, within) == str(inside)
    assert validation.file_path("image", None, within) is None
    for outside in (str(tmp_path / "b.png"), str(tmp_path / "uploads" / ".." / "b.png"), "/etc/passwd"):
        with pytest.raises(ValueError, match="image must be a file sent with the request"):
            validation.file_path("image", outside, within)
    with pytest.raises(ValueError, match="image must be a file .*not list"):
        validation.file_path("image", [str(inside)], within)
    with pytest.raises(ValueError, match=r"images\[1\] must be a file sent"):
        validation.file_paths("images", [str(inside), "/etc/passwd"], within)
