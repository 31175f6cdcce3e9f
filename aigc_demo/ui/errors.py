"""Bad input becomes a message in the page and the API client (gr.Error), never a traceback.

Pipelines raise short, specific ValueErrors; these decorators turn them into gr.Error at the UI edge. A user's
mistake is not the server's: it is logged as one line, not a traceback, so the log stays readable under a
stream of bad requests and real failures stand out. A full disk (outputs are files) is the one server fault
with the same treatment: the visitor learns why nothing came back, the log gets one warning.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging

import gradio as gr

log = logging.getLogger("aigc_demo.requests")

# The longest message a client gets back: checks quote at most a short prefix of a bad value
# (validation.quoted), and this bounds anything else a library put in its message.
MAX_MESSAGE = 500
DISK_FULL = (
    "The server's disk is full, so the result could not be saved. Please try again later. "
    "服务器磁盘已满，结果无法保存，请稍后再试。"
)
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def refused(message, where: str = "") -> gr.Error:
    """The gr.Error for a request refused with ``message`` (text, or a page string from ``strings.t``),
    logged as one line."""
    if isinstance(message, str) and len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    log.info("refused%s: %s", f" {where}" if where else "", str(message)[:200])
    return gr.Error(message, print_exception=False)


@contextlib.contextmanager
def _as_messages(where: str):
    """A ValueError becomes its message; a full disk becomes ``DISK_FULL``; anything else stays a fault."""
    try:
        yield
    except ValueError as err:
        raise refused(str(err), where) from None
    except OSError as err:
        if err.errno not in _DISK_FULL_ERRNOS:
            raise
        logging.getLogger("aigc_demo.outputs").warning("disk full in %s: %s", where, err)
        raise gr.Error(DISK_FULL, print_exception=False) from None


def user_errors(fn):
    """For handlers and API endpoints, plain or async; generators use ``user_errors_stream``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def wrapper_async(*args, **kwargs):
            with _as_messages(fn.__name__):
                return await fn(*args, **kwargs)

        return wrapper_async

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _as_messages(fn.__name__):
            return fn(*args, **kwargs)

    return wrapper


def user_errors_stream(fn):
    """The same for a streaming handler: the wrapper must itself be a generator for Gradio to stream."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _as_messages(fn.__name__):
            yield from fn(*args, **kwargs)

    return wrapper
