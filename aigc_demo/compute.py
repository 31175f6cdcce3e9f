"""One long-lived thread for all model work.

PyTorch's CPU kernels use OpenMP, which keeps a team of worker threads per *calling* thread. Gradio runs
handlers on a pool of threads, so each thread that touched a model grew its own team; with more OpenMP threads
alive than cores, libgomp stops spin-waiting between parallel regions, and every small op then pays a thread
wake-up. On a 2-core EPYC with BF16 (2026-11-23) an image took about twice as long that way as on one thread,
and transformers decoded at 23 tokens/s against 37 (docs/performance.md). One thread keeps one team, hot.

Each pipeline owns the thread it runs on (``self.worker``; ``on_worker`` moves a method there), so no caller
can run a model on a thread of its own.

The app's heavy events already run one at a time (Gradio's ``heavy`` concurrency group), so this costs no
parallelism. Streaming work runs one item per job, so short jobs can slot in between the steps of a long one.

llama.cpp gets a thread of its own (``compute_thread(LLAMA_CPP)``): ggml's AMX kernels load the tile configuration
once per thread and oneDNN's bf16 kernels release it after each call, so the two on one thread die with SIGILL
(``bench/llama_amx_threads.py`` reproduces it). Two threads make two OpenMP teams, more threads than cores;
``aigc_demo/__init__.py`` lets libgomp spin a little longer in that case, which keeps both fast.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")

_DONE = object()


class ComputeThread:
    def __init__(self, name: str = "aigc-compute"):
        self._ident: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=self._remember)

    def _remember(self) -> None:
        self._ident = threading.get_ident()

    def on_thread(self) -> bool:
        return threading.get_ident() == self._ident

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """Queue ``fn``; from the compute thread itself (a nested call) it gets a helper thread instead,
        since waiting on the one thread from that thread would deadlock."""
        if self.on_thread():
            future: Future[T] = Future()

            def helper() -> None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as err:
                        future.set_exception(err)

            threading.Thread(target=helper, name="aigc-compute-nested", daemon=True).start()
            return future
        return self._pool.submit(fn, *args, **kwargs)

    def requeue(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """Queue ``fn`` behind the jobs already waiting, even from the compute thread: how a long job
        (a text generation) continues in slices without starving short ones."""
        return self._pool.submit(fn, *args, **kwargs)

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call ``fn`` on the compute thread and return its result (or raise its exception).

        It runs in the caller's context, so context variables (Gradio's request-local state) still apply."""
        if self.on_thread():
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return self._pool.submit(context.run, fn, *args, **kwargs).result()

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Advance an iterator on the compute thread, one item per job; closing this closes it there too."""
        if self.on_thread():
            yield from items
            return
        it = self.run(iter, items)
        try:
            while (item := self.run(next, it, _DONE)) is not _DONE:
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                self.run(close)


SHARED = "aigc-compute"
LLAMA_CPP = "aigc-llama.cpp"

_threads: dict[str, ComputeThread] = {}
_lock = threading.Lock()


def compute_thread(name: str = SHARED) -> ComputeThread:
    """The process's compute thread of that name (started on first use): SHARED for PyTorch models."""
    with _lock:
        if name not in _threads:
            _threads[name] = ComputeThread(name)
        return _threads[name]


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading.Event, the UI's per-session stop flag. Long jobs check it
    between steps and end early, keeping what they made."""

    def is_set(self) -> bool: ...


def on_worker(method):
    """Decorator for pipeline methods: the call runs on ``self.worker`` (plain methods and generators alike),
    so which thread a model runs on is decided by its pipeline alone, whoever calls it."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, *args, **kwargs):
            yield from self.worker.iterate(method(self, *args, **kwargs))

        return stream

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self.worker.run(method, self, *args, **kwargs)

    return call
