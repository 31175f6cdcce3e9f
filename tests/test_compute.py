"""The compute thread: every model call runs on one long-lived thread, results and errors come back."""

from __future__ import annotations

import contextvars
import threading

import pytest

from aigc_demo.compute import ComputeThread, on_worker


@pytest.fixture()
def compute():
    return ComputeThread(name="test-compute")


def test_run_returns_results_from_one_thread(compute):
    idents = {compute.run(threading.get_ident) for _ in range(5)}
    assert len(idents) == 1 and threading.get_ident() not in idents


def test_run_raises_the_callers_error(compute):
    with pytest.raises(ValueError, match="bad input"):
        compute.run(lambda: (_ for _ in ()).throw(ValueError("bad input")))


def test_run_sees_the_callers_context_variables(compute):
    request = contextvars.ContextVar("request", default=None)
    request.set("session-1")
    assert compute.run(request.get) == "session-1"


def test_iterate_runs_each_step_on_the_compute_thread_and_closes(compute):
    seen, closed = [], []

    def steps():
        try:
            for i in range(10):
                seen.append(threading.get_ident())
                yield i
        finally:
            closed.append(True)

    stream = compute.iterate(steps())
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # what Gradio does when the client goes away
    assert closed == [True] and len(set(seen)) == 1 and seen[0] != threading.get_ident()


def test_nested_submission_does_not_deadlock(compute):
    """A job that itself waits on a submitted job (the text warm-up does) gets a helper thread."""
    assert compute.run(lambda: compute.submit(lambda: 42).result(timeout=5)) == 42


def test_a_pipeline_method_runs_on_its_pipelines_worker(compute):
    class Pipeline:
        worker = compute

        @on_worker
        def count(self, n):
            for i in range(n):
                yield i, threading.get_ident()

        @on_worker
        def where(self):
            return threading.get_ident()

    pipe = Pipeline()
    counted = list(pipe.count(3))
    assert [i for i, _ in counted] == [0, 1, 2]
    assert {ident for _, ident in counted} == {pipe.where()} != {threading.get_ident()}


def test_named_threads_are_distinct_and_reused():
    from aigc_demo.compute import LLAMA_CPP, SHARED, compute_thread

    assert compute_thread() is compute_thread(SHARED)
    shared, llama = (
        compute_thread(SHARED).run(threading.get_ident),
        compute_thread(LLAMA_CPP).run(threading.get_ident),
    )
    assert shared != llama and compute_thread(LLAMA_CPP).run(threading.get_ident) == llama


@pytest.mark.parametrize(
    ("code", "env", "want"),
    [
        ("import aigc_demo", {}, "ACTIVE 300000"),  # libgomp not loaded yet: the defaults apply
        ("import aigc_demo", {"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE 300000"),  # the user's choice stands
        ("import torch, aigc_demo", {}, "None None"),  # too late to matter: left alone
    ],
)
def test_openmp_spin_defaults_are_set_before_torch_loads(code, env, want):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    show = "; import os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    done = subprocess.run(
        [sys.executable, "-c", code + show], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == want
