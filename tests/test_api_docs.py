"""The README's API table says what the running app's API offers: every endpoint, argument and default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from gradio_client import Client

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\|\s*`(/\w+)`\s*\|([^|]*)\|")
ARG = re.compile(r"`(\w+)(?:=([^`]*))?`")


def readme_endpoints() -> dict[str, list[tuple[str, object]]]:
    """/name -> [(argument, default or ...)] from the table rows ``| `/name` | `a`, `b=1` | ... |``."""
    table = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            args = [
                (name, ast.literal_eval(default) if default else ...)
                for name, default in ARG.findall(match[2])
            ]
            table[match[1]] = args
    return table


def test_the_readme_has_an_api_table():
    assert len(readme_endpoints()) >= 10


@pytest.mark.slow
def test_readme_api_table_matches_view_api(app_url):
    listed = Client(app_url, verbose=False).view_api(print_info=False, return_format="dict")[
        "named_endpoints"
    ]
    documented = readme_endpoints()
    assert set(documented) == set(listed), "README API table and view_api() list different endpoints"
    for name, args in documented.items():
        actual = [
            (p["parameter_name"], p["parameter_default"] if p["parameter_has_default"] else ...)
            for p in listed[name]["parameters"]
        ]
        assert args == actual, f"{name}: README {args} but the app takes {actual}"
