"""One typed description of each request's parameters, from which everything else is derived.

A request type is a frozen dataclass whose fields are declared with ``param(...)``: name, type and default
come from the field, range, choices, UI label and help from the ``Spec``. From it follow the input check
(``Schema.parse``), the UI control (``aigc_demo/ui/controls.py``), the API signature with real defaults
(``Schema.signature``) and the typed read-back of PNG metadata (``Schema.types``). Adding a parameter is one
field.

Limits that operators may change (``AIGC_IMAGE_MAX_STEPS``...) are named by their config key
(``high=Config("max_steps")``) and resolved when a pipeline binds the schema to its config; so are choices
only the loaded model knows (``Schema(..., choices={"scheduler": [...]})``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aigc_demo import validation

P = TypeVar("P")


@dataclass(frozen=True)
class Config:
    """A value read from the pipeline's config section when the schema is bound; ``-Config(key)`` is its
    negative (a symmetric range such as ``low=-Config("max_strength"), high=Config("max_strength")``)."""

    key: str
    sign: int = 1

    def __neg__(self) -> Config:
        return Config(self.key, -self.sign)


@dataclass(frozen=True)
class Spec:
    label: str  # UI string key (aigc_demo/ui/strings.py), shown in both languages
    info: str | None = None  # UI string key of a one-line help text
    low: float | int | Config | None = None
    high: float | int | Config | None = None
    low_open: bool = False  # low itself is not allowed (top_p > 0)
    step: float | None = None  # slider step; None = a number box
    choices: tuple[str, ...] | Config | None = None
    choice_labels: Mapping[str, str] | None = None  # choice -> UI string key
    max_chars: int | Config | None = None
    required: bool = False  # empty text is refused
    example: str = ""  # shown in the "is empty" message
    seed: bool = False  # -1 = a fresh random seed, drawn by the pipeline per request
    lines: int = 1  # text boxes
    default_from: str | None = None  # a config key that overrides the dataclass default


def param(default, **spec) -> Any:
    """A dataclass field with its Spec; use as ``steps: int = param(20, label=..., low=1, high=...)``."""
    return field(default=default, metadata={"spec": Spec(**spec)})


@dataclass(frozen=True)
class Param:
    """One parameter with every bound resolved: what the check, the control and the API use."""

    name: str
    kind: type
    default: Any
    spec: Spec
    low: float | int | None
    high: float | int | None
    choices: tuple[str, ...] | None
    max_chars: int | None

    def check(self, value):
        s = self.spec
        if s.seed:
            return validation.seed_setting(value)
        if self.choices is not None:
            return validation.choice(self.name, value, self.choices)
        if self.kind is bool:
            return validation.as_bool(self.name, value)
        if self.kind is str:
            return validation.text(
                self.name, value, self.max_chars or validation.MAX_TEXT, s.required, s.example
            )
        number = (validation.as_int if self.kind is int else validation.as_float)(self.name, value)
        return validation.in_range(self.name, number, self.low, self.high, s.low_open)


class Schema(Generic[P]):
    """The parameters of one request type, bound to a config section (limits) and the loaded model (choices)."""

    def __init__(
        self,
        params_type: type[P],
        cfg: object | None = None,
        choices: Mapping | None = None,
        defaults: Mapping | None = None,
    ):
        self.params_type = params_type
        choices, defaults = dict(choices or {}), dict(defaults or {})
        hints = dataclasses.fields(params_type)  # type: ignore[arg-type]
        resolved = []
        for f in hints:
            spec: Spec = f.metadata["spec"]
            kind = _kind(f.type)
            default = f.default
            if spec.default_from and cfg is not None:
                default = getattr(cfg, spec.default_from)
            default = defaults.get(f.name, default)
            options = choices.get(f.name, _resolve(spec.choices, cfg))
            resolved.append(
                Param(
                    name=f.name,
                    kind=kind,
                    default=default,
                    spec=spec,
                    low=_resolve(spec.low, cfg),
                    high=_resolve(spec.high, cfg),
                    choices=tuple(options) if options is not None else None,
                    max_chars=_resolve(spec.max_chars, cfg),
                )
            )
        self.params: tuple[Param, ...] = tuple(resolved)
        self._by_name = {p.name: p for p in self.params}

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def parse(self, values: Mapping[str, Any] | P | None = None, **more) -> P:
        """A checked request from loose values (UI, API, a file); missing values take their defaults."""
        if values is not None and not isinstance(values, Mapping):
            values = dataclasses.asdict(values)  # type: ignore[call-overload]
        given = {**(values or {}), **more}
        unknown = set(given) - set(self._by_name)
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        checked = {p.name: p.check(given.get(p.name, p.default)) for p in self.params}
        return self.params_type(**checked)

    def types(self) -> dict[str, type]:
        """name -> Python type, for reading parameters back from untrusted metadata."""
        return {p.name: p.kind for p in self.params}

    def signature(
        self, head: Sequence[inspect.Parameter] = (), skip: Sequence[str] = ()
    ) -> list[inspect.Parameter]:
        """Keyword parameters with real defaults, after ``head`` (the main inputs), for an API function."""
        tail = [
            inspect.Parameter(
                p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.kind
            )
            for p in self.params
            if p.name not in skip and p.name not in {h.name for h in head}
        ]
        return [*head, *tail]


def _kind(annotation) -> type:
    names = {"int": int, "float": float, "str": str, "bool": bool}
    if isinstance(annotation, str):  # from __future__ import annotations
        return names[annotation]
    return annotation


def _resolve(value, cfg):
    if isinstance(value, Config):
        if cfg is None:
            return None
        return value.sign * getattr(cfg, value.key)
    return value
