"""One set of input checks for every pipeline and the UI, with one wording of messages.

Each check returns the clean value or raises a short ``ValueError`` that names the input and says what is
wrong; the UI turns it into ``gr.Error`` (``aigc_demo/ui/errors.py``). Values come from the page, from API
clients and from files made by strangers, so messages quote at most ``MAX_QUOTED`` characters of what was
sent.
"""

from __future__ import annotations

import math
import numbers
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

MAX_SEED = 2**32 - 1
MAX_QUOTED = 60  # characters of a bad value repeated in a message
MAX_TEXT = 10_000  # characters of a text parameter that names no limit of its own


def quoted(value) -> str:
    """``repr(value)``, cut to MAX_QUOTED characters: a 100k-character input is not echoed back."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


def as_int(name: str, value) -> int:
    """A whole number from an int, an integral float (5.0) or a string ("5", "5.0")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise ValueError(f"{name} must be a whole number, not {quoted(value)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    text = value.strip() if isinstance(value, str) else None
    if text is not None:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        number = float(text if text is not None else value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a whole number, not {quoted(value)}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{name} must be a whole number, not {quoted(value)}")
    return int(number)


def as_bool(name: str, value) -> bool:
    """A yes/no from a bool, 0/1 or a string ("true", "false", "yes", "no", "1", "0")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise ValueError(f"{name} must be true or false, not {quoted(value)}")


_BOOL_WORDS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}


def as_float(name: str, value) -> float:
    """A finite number from an int, a float or a string."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise ValueError(f"{name} must be a number, not {quoted(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a number, not {quoted(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {quoted(value)}")
    return number


def in_range(name: str, value, low=None, high=None, low_open: bool = False):
    """``value`` if ``low <= value <= high`` (``low < value`` with ``low_open``); either bound may be None."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        if low is None:
            raise ValueError(f"{name} must be at most {high}, not {value}")
        if high is None:
            raise ValueError(f"{name} must be {'above' if low_open else 'at least'} {low}, not {value}")
        if low_open:
            raise ValueError(f"{name} must be above {low} and at most {high}, not {value}")
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


def seed_setting(value) -> int:
    """A seed as asked: -1 (also None or "", a cleared box) means random; else a seed in [0, MAX_SEED]."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return -1
    return in_range("seed", as_int("seed", value), -1, MAX_SEED)


def seed(value, reserve: int = 0) -> int:
    """A seed in [0, MAX_SEED - reserve]; -1, None or "" draw a fresh one from the OS.

    Fresh per request and independent of every RNG that model code seeds (``torch.manual_seed`` and
    ``random.seed`` do not touch ``secrets``), so two "random" requests never share a seed by construction.
    ``reserve`` leaves room for the seeds ``seed + 1 ... seed + reserve`` of a batch.
    """
    number = seed_setting(value)
    if number == -1:
        return secrets.randbelow(MAX_SEED + 1 - reserve)
    return number


def text(name: str, value, limit: int, required: bool = False, example: str = "") -> str:
    """Clean text: None is empty; non-text and oversize input are refused; control characters, unpaired
    surrogates (invalid Unicode from some clients, which crash UTF-8 encoders) and private-use characters are
    dropped; newlines and tabs stay; surrounding white space is stripped."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value):,} characters; the limit is {limit:,}")
    value = "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs", "Co"))
    value = value.strip()
    if required and not value:
        hint = f", e.g. “{example}”" if example else ""
        raise ValueError(f"{name} is empty{hint}")
    return value


def choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; not {quoted(value)}")
    return value


def numbers_list(name: str, values, limit: int, low: float, high: float) -> list[float]:
    """A list of at most ``limit`` finite numbers, each in [low, high]."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of numbers, e.g. [0.5, -1.0]")
    items = list(values)
    if len(items) > limit:
        raise ValueError(f"{name} has {len(items)} numbers; the limit is {limit}")
    return [in_range(f"{name}[{i}]", as_float(f"{name}[{i}]", v), low, high) for i, v in enumerate(items)]


def file_path(name: str, value, within: Sequence[Path] = ()) -> str | None:
    """The path of a file argument: a FileData dict (``gradio_client.handle_file``), a path string, or None
    for no file. Anything else is refused by name, so no file reader is handed a number or a list. With
    ``within``, the file must lie in one of those folders: a client names files it sent, not the server's."""
    if isinstance(value, dict):
        value = value.get("path")
    if value is None or isinstance(value, str) and not value.strip():
        return None
    if not isinstance(value, str):
        raise ValueError(
            f"{name} must be a file (gradio_client: handle_file(path)), not {type(value).__name__}"
        )
    if within and not any(Path(value).resolve().is_relative_to(root.resolve()) for root in within):
        raise ValueError(f"{name} must be a file sent with the request (gradio_client: handle_file(path))")
    return value


def file_paths(name: str, values, within: Sequence[Path] = ()) -> list[str]:
    """The paths of a list of file arguments (see ``file_path``); None is an empty list."""
    if values is None:
        return []
    if not isinstance(values, list | tuple):
        raise ValueError(f"{name} must be a list of files, not {type(values).__name__}")
    paths = (file_path(f"{name}[{i}]", v, within) for i, v in enumerate(values))
    return [path for path in paths if path is not None]
