"""Stop buttons that ask the running job to finish, per browser session.

Gradio's ``cancels=`` kills the running event instead; in Gradio 6.31 the page then sometimes marks the
event's outputs with red "Error" badges and hides a streamed partial reply (reproduced with a ten-line app:
3 of 8 stops). A flag the job checks between steps lets it end normally and keep what it made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import gradio as gr

from aigc_demo.compute import StopFlag


class SettableStopFlag(StopFlag, Protocol):
    """What the pipelines read (``is_set``), plus what the Stop button does."""

    def set(self) -> None: ...


F = TypeVar("F", bound=SettableStopFlag)

_MAX_SESSIONS = 10_000  # sessions come and go; never grow without bound


class SessionStops(Generic[F]):
    """The stop flag of each session's current job: ``arm`` when a job starts, ``stop`` from the button."""

    def __init__(self, new_flag: Callable[[], F]):
        self._new_flag = new_flag
        self._flags: dict[str, F] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: gr.Request | None) -> str | None:
        # A call without a session (plain REST) gets a flag no one else can reach: a shared fallback key
        # would let one client's Stop end another's job.
        return getattr(request, "session_hash", None) or None

    def arm(self, request: gr.Request | None) -> F:
        """A fresh flag for the job starting now (an old Stop click does not stop a new job)."""
        flag = self._new_flag()
        key = self._key(request)
        if key is not None:
            with self._lock:
                if len(self._flags) > _MAX_SESSIONS:
                    self._flags.clear()
                self._flags[key] = flag
        return flag

    def stop(self, request: gr.Request | None) -> None:
        key = self._key(request)
        with self._lock:
            flag = self._flags.get(key) if key is not None else None
        if flag is not None:
            flag.set()
