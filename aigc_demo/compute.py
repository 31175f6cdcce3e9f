"""One long-lived thread for all model work.

PyTorch's CPU kernels use OpenMP, which keeps a team of worker threads per *calling* thread. Gradio runs
handlers on a pool of threads, so each thread that touched a model grew its own team; with more OpenMP threads
alive than cores, libgomp stops spin-waiting between parallel regions, and every small op then pays a thread
wake-up. On a 2-core EPYC with BF16 (2026-11-23) an image took about twice as long that way as on one thread,
and transformers decoded at 23 tokens/s against 37 (docs/performance.md). One thread keeps one team, hot.

Each pipeline owns the thread it runs on (``self.worker``; ``on_worker`` moves a method there), so no caller
can run a model on a thread of its own.

Streaming work runs one item per job (a denoising step, a slice of tokens), so several requests served at once
advance in turn, and short jobs slot in between the steps of long ones. Image requests served at once share
their UNet calls (``pipelines/step_batcher.py``).

llama.cpp gets a thread of its own (``compute_thread(LLAMA_CPP)``): ggml's AMX kernels load the tile configuration
once per thread and oneDNN's bf16 kernels release it after each call, so the two on one thread die with SIGILL
(``bench/llama_amx_threads.py`` reproduces it). Two threads make two OpenMP teams, more threads than cores;
``aigc_demo/__init__.py`` lets libgomp spin a little longer in that case, which keeps both fast. On CPUs
without AMX, sharing PyTorch's thread (one team) measured faster for one user at a time but served 16
concurrent users 1.7-2x slower (docs/serving.md), so llama.cpp keeps its own thread everywhere.

The compute threads take turns with the cores (``TURNS``): a job runs only while no job of the other thread
does. Two busy thread teams on 2 cores would each run at a fraction of their speed (llama.cpp given 4 threads on
2 cores decodes over 10x slower than with 2). Jobs are short (a slice of tokens, a denoising step, a
training step) and turns are first come, first served, so a chat that arrives during a long image starts at the
next step instead of after the image, and neither fights the other for the cores.

Light work (a latent slider's picture, one GAN draw: milliseconds someone is watching) runs on a third thread,
``LIGHT``, which takes no turns and computes with one OpenMP thread, itself (the count is per thread). It never
waits for a denoising step or a slice of tokens, and takes at most one core from them, for those milliseconds.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import inspect
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Protocol, TypeVar

T = TypeVar("T")

_DONE = object()
_FAILED = object()


class Turns:
    """A first-come, first-served lock (``threading.Lock`` lets a releasing thread take it straight back,
    which would starve the other compute thread). Strictly in order: a job that jumped the line here could
    keep the other thread waiting for as long as such jobs keep coming."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._holder: int | None = None  # the thread whose turn it is

    def acquire(self, timeout: float) -> bool:
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            got = self._changed.wait_for(lambda: self._holder is None and self._waiting[0] is ticket, timeout)
            self._waiting.remove(ticket)
            if got:
                self._holder = threading.get_ident()
            else:
                self._changed.notify_all()  # the next in line may be free to go now
            return got

    def release(self) -> None:
        """End this thread's turn (nothing if it is not this thread's: a job that ran without one)."""
        with self._changed:
            if self._holder == threading.get_ident():
                self._holder = None
                self._changed.notify_all()

    @contextlib.contextmanager
    def stepped_aside(self) -> Iterator[None]:
        """Give up this thread's turn for the block, then queue for it again: for a job that waits on work of
        the other compute thread (a fine-tune waiting for a reply to end), which would otherwise wait for it."""
        with self._changed:
            held = self._holder == threading.get_ident()
        if held:
            self.release()
        try:
            yield
        finally:
            if held:
                self.acquire(TURN_WAIT_S)


TURNS = Turns()
# A job that waits longer than this for its turn runs anyway, alongside: nothing deadlocks if a job ever waits
# on the other compute thread, and a very long job (a film render) only delays the other thread this much.
TURN_WAIT_S = 5.0


class ComputeThread:
    """One thread that runs jobs in order, each in its turn (``TURNS``) unless ``takes_turns`` is off."""

    def __init__(self, name: str = "aigc-compute", takes_turns: bool = True):
        self._jobs: deque[tuple] = deque()
        self._first = 0  # jobs at the head of the queue that came by ``submit_next``, in arrival order
        self._queued = threading.Condition()
        self._takes_turns = takes_turns
        thread = threading.Thread(target=self._serve, name=name, daemon=True)
        thread.start()
        self._ident = thread.ident

    def _next_job(self) -> tuple:
        with self._queued:
            self._queued.wait_for(lambda: self._jobs)
            self._first = max(0, self._first - 1)
            return self._jobs.popleft()

    def _serve(self) -> None:
        _name_os_thread(threading.current_thread().name)
        while True:
            job = self._next_job()
            if not job[0].set_running_or_notify_cancel():
                continue
            got = self._takes_turns and TURNS.acquire(TURN_WAIT_S)
            try:
                _run_job(job)
            finally:
                if got:
                    TURNS.release()
            del job  # nothing of a finished job stays alive while the thread waits

    def run_waiting(self, like: Callable) -> bool:
        """From a job on this thread: run the first queued job of the same kind as ``like`` right here, in this
        job's turn (a fine-tune lets a reply's slices through between its passes); False if there is none."""
        assert self.on_thread(), "run_waiting is for a job of this thread"
        kind = _kind(like)
        with self._queued:
            index = next((i for i, job in enumerate(self._jobs) if _job_kind(job) == kind), None)
            if index is None:
                return False
            job = self._jobs[index]
            del self._jobs[index]
            if index < self._first:
                self._first -= 1
        if job[0].set_running_or_notify_cancel():
            _run_job(job)
        return True

    def _queue(self, fn: Callable[..., T], args, kwargs, front: bool = False) -> Future[T]:
        future: Future[T] = Future()
        with self._queued:
            job = (future, fn, args, kwargs)
            if front:  # behind the other jobs that came this way, ahead of the rest
                self._jobs.insert(self._first, job)
                self._first += 1
            else:
                self._jobs.append(job)
            self._queued.notify()
        return future

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
            return future  # runs in its caller's turn
        return self._queue(fn, args, kwargs)

    def submit_next(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """Queue ``fn`` ahead of the jobs waiting, after the running one and after earlier ``submit_next``
        jobs: a reply's first slice, which someone is waiting for, goes before the next slices of replies
        already streaming, and new replies start in the order they came. (From the compute thread itself, as
        ``submit``.)"""
        if self.on_thread():
            return self.submit(fn, *args, **kwargs)
        return self._queue(fn, args, kwargs, front=True)

    def requeue(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """Queue ``fn`` behind the jobs already waiting, even from the compute thread: how a long job
        (a text generation) continues in slices without starving short ones."""
        return self._queue(fn, args, kwargs)

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call ``fn`` on the compute thread and return its result (or raise its exception).

        It runs in the caller's context, so context variables (Gradio's request-local state) still apply.
        Called from the light thread, it runs right there: a light job never waits for another compute thread,
        which may itself be waiting for the light thread (an image's prompt check)."""
        if self.on_thread() or _on_light_thread():
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return self._queue(context.run, (fn, *args), kwargs).result()

    def iterate(self, items: Iterable[T], ahead: bool = False) -> Iterator[T]:
        """Advance an iterator on the compute thread, one item per job; closing this closes it there too.

        Each item is made when the consumer asks for it, unless ``ahead``: then each job queues the next
        behind the jobs waiting (requests served at once still advance in turn) and the consumer takes items
        as they come, so the compute thread never waits while the consumer hands one on (through Gradio's
        event loop and the network: on 2 cores that took longer than a denoising step). A stop then lands
        within one item of the last one the consumer saw."""
        if self.on_thread() or _on_light_thread():  # (from the light thread: see ``run``)
            yield from items
            return
        if not ahead:
            it = self.run(iter, items)
            try:
                while (item := self.run(next, it, _DONE)) is not _DONE:
                    yield item
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    self.run(close)
            return
        context = contextvars.copy_context()
        made: queue.SimpleQueue = queue.SimpleQueue()
        state = {"open": True}  # read and written on the compute thread only

        def advance(it) -> None:
            if not state["open"]:
                return  # closed by the consumer in the meantime
            try:
                item = next(it, _DONE)
            except BaseException as err:  # surfaced to the consumer, which re-raises it
                state["open"] = False
                made.put((_FAILED, err))
                return
            if item is _DONE:
                state["open"] = False
            else:
                self.requeue(context.run, advance, it)
            made.put((item, None))

        def finish(it) -> None:
            if state["open"]:
                state["open"] = False
                close = getattr(it, "close", None)
                if close is not None:
                    close()

        it = self.run(iter, items)
        self.requeue(context.run, advance, it)
        try:
            while True:
                item, err = made.get()
                if item is _FAILED:
                    raise err
                if item is _DONE:
                    return
                yield item
        finally:
            self.run(finish, it)


def _run_job(job: tuple) -> None:
    future, fn, args, kwargs = job
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as err:
        future.set_exception(err)


def _kind(fn: Callable) -> str:
    """What kind of job ``fn`` makes: its qualified name (every reply's slices are one kind)."""
    return getattr(fn, "__qualname__", type(fn).__qualname__)


def _job_kind(job: tuple) -> str:
    """A queued job's kind: that of what it calls (a job in a copied context calls its first argument)."""
    _, fn, args, _ = job
    inner = isinstance(getattr(fn, "__self__", None), contextvars.Context) and args
    return _kind(args[0] if inner else fn)


def _name_os_thread(name: str) -> None:
    """Give the calling thread its name in the OS (``top -H``, ``/proc/<pid>/task/*/comm``): the OpenMP
    workers it starts inherit it, so a thread listing shows which team spends the CPU."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME


SHARED = "aigc-compute"
LLAMA_CPP = "aigc-llama.cpp"
LIGHT = "aigc-light"

_threads: dict[str, ComputeThread] = {}
_lock = threading.Lock()


def compute_thread(name: str = SHARED) -> ComputeThread:
    """The process's compute thread of that name (started on first use): SHARED for PyTorch models."""
    with _lock:
        if name not in _threads:
            _threads[name] = ComputeThread(name, takes_turns=name != LIGHT)
            if name == LIGHT:
                _threads[name].submit(_one_torch_thread)
        return _threads[name]


def _on_light_thread() -> bool:
    light = _threads.get(LIGHT)
    return light is not None and light.on_thread()


def _one_torch_thread() -> None:
    """This thread's PyTorch work runs on this thread alone (OpenMP keeps the count per thread); the
    process-wide count new threads start from is put back from a thread of its own."""
    import torch

    count = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(count,), name="aigc-thread-count")
    restore.start()
    restore.join()


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading.Event, the UI's per-session stop flag. Long jobs check it
    between steps and end early, keeping what they made."""

    def is_set(self) -> bool: ...


def on_worker(method=None, *, light: bool = False, ahead: bool = False):
    """Decorator for pipeline methods: the call runs on ``self.worker`` (plain methods and generators alike),
    so which thread a model runs on is decided by its pipeline alone, whoever calls it. ``light=True`` (plain
    methods that take milliseconds while someone watches) runs it on the LIGHT thread instead, unless it is
    called from the worker itself. ``ahead=True`` (generators) makes items ahead of the consumer
    (``ComputeThread.iterate``)."""
    if method is None:
        return functools.partial(on_worker, light=light, ahead=ahead)
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self, *args, **kwargs):
            yield from self.worker.iterate(method(self, *args, **kwargs), ahead=ahead)

        return stream

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        worker = compute_thread(LIGHT) if light and not self.worker.on_thread() else self.worker
        return worker.run(method, self, *args, **kwargs)

    return call
