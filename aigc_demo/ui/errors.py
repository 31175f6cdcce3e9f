"""Bad input becomes a message in the page and the API client (gr.Error), never a traceback.

Pipelines raise short, specific ValueErrors; these decorators turn them into gr.Error at the UI edge.
"""

from __future__ import annotations

import functools

import gradio as gr


def user_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    return wrapper


def user_errors_stream(fn):
    """The same for a streaming handler: the wrapper must itself be a generator for Gradio to stream."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except ValueError as err:
            raise gr.Error(str(err)) from None

    return wrapper
