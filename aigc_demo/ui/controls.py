"""UI controls and API endpoints derived from a parameter schema (``aigc_demo/schema.py``).

Components bind to parameters by name: ``Controls`` maps each name to its component, a handler given the
controls as a set receives ``{component: value}`` and reads it back by name, and returns only the values that
change as ``{component: value}``. API endpoints get the schema's signature, with a real default for every
argument but the main inputs, so ``gradio_client`` can call them with a prompt alone.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gradio as gr

from aigc_demo.schema import Param, Schema
from aigc_demo.ui.strings import t
from aigc_demo.validation import MAX_SEED


def control(p: Param, **overrides) -> gr.components.Component:
    """The component a person uses to set ``p``: a slider for a bounded number with a step, a number box
    otherwise, a radio or dropdown for choices, a text box for text. ``overrides`` win (elem_id, a slider's
    range for this model...)."""
    s = p.spec
    kwargs: dict[str, Any] = {"label": t(s.label), "value": p.default}
    if s.info:
        kwargs["info"] = t(s.info)
    if p.choices is not None:
        labels = s.choice_labels or {}
        options = [(t(labels[c]) if c in labels else c, c) for c in p.choices]
        widget = gr.Radio if len(options) <= 3 else gr.Dropdown
        return widget(options, **{**kwargs, **overrides})
    if p.kind is bool:
        return gr.Checkbox(**{**kwargs, **overrides})
    if p.kind is str:
        return gr.Textbox(**{**kwargs, "lines": s.lines, "max_length": p.max_chars, **overrides})
    if s.seed:
        return gr.Number(**{**kwargs, "precision": 0, "minimum": -1, "maximum": MAX_SEED, **overrides})
    low = (
        p.low + s.step if s.low_open and p.low is not None and s.step else p.low
    )  # top_p > 0: start one step up
    kwargs.update(minimum=low, maximum=p.high)
    kwargs.update(overrides)
    if s.step is not None and kwargs["minimum"] is not None and kwargs["maximum"] is not None:
        return gr.Slider(**{"step": s.step, **kwargs})
    return gr.Number(**{"precision": 0 if p.kind is int else None, **kwargs})


class Controls(dict):
    """name -> component for the parameters of one schema shown in a tab."""

    @classmethod
    def build(cls, schema: Schema, names: Iterable[str], **overrides: Mapping[str, Any]) -> Controls:
        """Render ``names`` in order in the current Blocks context; ``overrides[name]`` goes to that control."""
        return cls({name: control(schema[name], **overrides.get(name, {})) for name in names})

    def read(self, data: Mapping) -> dict[str, Any]:
        """The values of these controls, by parameter name, from a handler's ``{component: value}`` input."""
        return {name: data[component] for name, component in self.items() if component in data}

    def write(self, values: Mapping[str, Any]) -> dict:
        """``{component: value}`` for the parameters in ``values`` that have a control here."""
        return {self[name]: value for name, value in values.items() if name in self}

    @property
    def components(self) -> set:
        return set(self.values())


def api(
    handler: Callable,
    *,
    api_name: str,
    schema: Schema | None = None,
    head: Sequence[inspect.Parameter] = (),
    skip: Sequence[str] = (),
    tail: Sequence[inspect.Parameter] = (),
    returns: Any = None,
    **event_kwargs,
):
    """Register ``handler(**arguments, request=...)`` as the endpoint ``/api_name`` with the signature
    ``head + schema + tail`` (real defaults, type hints for the API page); ``tail`` holds arguments added
    later, so positional callers keep working. Streams when ``handler`` is a generator."""
    parameters = schema.signature(head, skip) if schema is not None else list(head)
    parameters = [*parameters, *tail]
    # Positional-or-keyword: Gradio injects gr.Request only into such parameters.
    request = inspect.Parameter(
        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request
    )
    signature = inspect.Signature([*parameters, request], return_annotation=returns)

    def arguments(args, kwargs) -> dict:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    if inspect.isgeneratorfunction(handler):

        def endpoint(*args, **kwargs):
            yield from handler(**arguments(args, kwargs))

    else:

        def endpoint(*args, **kwargs):
            return handler(**arguments(args, kwargs))

    functools.update_wrapper(endpoint, handler, assigned=("__doc__", "__module__"), updated=())
    endpoint.__name__ = endpoint.__qualname__ = api_name
    endpoint.__signature__ = signature  # type: ignore[attr-defined]
    endpoint.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    endpoint.__annotations__["return"] = returns
    return gr.api(endpoint, api_name=api_name, **event_kwargs)


def arg(name: str, annotation, default=inspect.Parameter.empty) -> inspect.Parameter:
    """A main input of an API endpoint (no default unless given)."""
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
    )
