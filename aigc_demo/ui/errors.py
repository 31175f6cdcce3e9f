"""Bad input becomes a message in the page and the API client (gr.Error), never a traceback.

Pipelines raise short, specific ValueErrors; these decorators turn them into gr.Error at the UI edge. A user's
mistake is not the server's: it is logged as one line, not a traceback, so the log stays readable under a
stream of bad requests and real failures stand out.
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

log = logging.getLogger("aigc_demo.requests")

# The longest message a client gets back: checks quote at most a short prefix of a bad value
# (validation.quoted), and this bounds anything else a library put in its message.
MAX_MESSAGE = 500


def refused(message, where: str = "") -> gr.Error:
    """The gr.Error for a request refused with ``message`` (text, or a page string from ``strings.t``),
    logged as one line."""
    if isinstance(message, str) and len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    log.info("refused%s: %s", f" {where}" if where else "", str(message)[:200])
    return gr.Error(message, print_exception=False)


def user_errors(fn):
    """For handlers and API endpoints, plain or async; generators use ``user_errors_stream``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def wrapper_async(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except ValueError as err:
                raise refused(str(err), fn.__name__) from None

        return wrapper_async

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise refused(str(err), fn.__name__) from None

    return wrapper


def user_errors_stream(fn):
    """The same for a streaming handler: the wrapper must itself be a generator for Gradio to stream."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except ValueError as err:
            raise refused(str(err), fn.__name__) from None

    return wrapper
