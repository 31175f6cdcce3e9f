"""The README's commands are the ones CI runs and the Spaces header matches the pinned gradio."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip()[2:] for line in readme.splitlines() if line.strip().startswith("$ ")]
    assert len(commands) == 2, "README gives exactly two commands: start and test"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_spaces_sdk_version_is_the_pinned_gradio():
    readme = (ROOT / "README.md").read_text()
    pinned = next(
        line.split("==")[1]
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.startswith("gradio==")
    )
    assert f"sdk_version: {pinned}" in readme
