"""The compute thread: every model call runs on one long-lived thread, results and errors come back."""

from __future__ import annotations

import contextvars
import itertools
import threading

import pytest

from aigc_demo.compute import LIGHT, LLAMA_CPP, SHARED, ComputeThread, compute_thread, on_worker


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


def test_iterate_runs_ahead_of_a_slow_consumer_and_raises_its_errors(compute):
    """The compute thread does not wait while the consumer hands an item on (Gradio, the network)."""
    import time

    produced = []

    def steps():
        for i in range(5):
            produced.append(i)
            yield i
        raise ValueError("step 5 failed")

    stream = compute.iterate(steps(), ahead=True)
    assert next(stream) == 0
    time.sleep(0.2)  # the consumer busy elsewhere
    assert produced == [0, 1, 2, 3, 4]
    assert list(itertools.islice(stream, 4)) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="step 5 failed"):
        next(stream)


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


def test_two_compute_threads_take_turns_and_neither_waits_for_the_other_to_finish():
    """A long stream of jobs on one thread (an image's steps) lets the other thread's jobs (a chat's token
    slices) in between, first come first served, and two jobs never hold the cores at once."""
    import time

    image, text = ComputeThread("test-image"), ComputeThread("test-text")
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def step(who: str) -> None:
        start = time.perf_counter()
        time.sleep(0.02)
        with lock:
            spans.append((who, start, time.perf_counter()))

    image_steps = [image.submit(step, "image") for _ in range(20)]
    time.sleep(0.05)  # the image is under way when the chat arrives
    text_steps = [text.submit(step, "text") for _ in range(3)]
    for future in image_steps + text_steps:
        future.result(timeout=10)
    spans.sort(key=lambda s: s[1])
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert start >= end, "two compute jobs ran at once"
    order = [who for who, _, _ in spans]
    last_text = max(i for i, who in enumerate(order) if who == "text")
    assert last_text < 12, f"the chat waited for the image to finish: {order}"


def hold_the_worker(worker: ComputeThread) -> threading.Event:
    """A running job that lasts until the returned event is set."""
    started, gate = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(5)

    worker.submit(hold)
    assert started.wait(5)
    return gate


def test_a_waiting_job_runs_inside_a_job_that_lets_it_through():
    """A fine-tune waiting for a reply on its own thread runs the reply's queued slices inside its job, in
    their order, ahead of other jobs; the slices' callers get their results as usual."""
    worker, order = ComputeThread("test-run-waiting"), []

    def reply_slice(i: int) -> int:
        order.append(f"slice {i}")
        return i

    def image_step() -> None:
        order.append("image step")

    def training_job() -> None:
        while worker.run_waiting(reply_slice):
            pass
        order.append("training resumes")

    gate = hold_the_worker(worker)
    training = worker.submit(training_job)
    image = worker.submit(image_step)
    slices = [worker.submit(reply_slice, i) for i in range(2)]
    gate.set()
    training.result(5), image.result(5)
    assert [f.result(5) for f in slices] == [0, 1]
    assert order == ["slice 0", "slice 1", "training resumes", "image step"]


def test_a_light_job_waits_neither_for_the_running_job_nor_for_the_turns():
    """A slider's picture is drawn while an image's step holds its worker and the cores."""
    worker = ComputeThread("test-heavy")

    class Pipeline:
        def __init__(self):
            self.worker = worker

        @on_worker(light=True)
        def where(self):
            return threading.current_thread().name

        @on_worker
        def nested(self):
            return self.where()

    gate = hold_the_worker(worker)  # the running job, in its turn
    try:
        assert Pipeline().where() == LIGHT
        assert not gate.is_set()
    finally:
        gate.set()
    assert Pipeline().nested() == "test-heavy", "called from its worker, a light method runs right there"


def test_the_light_thread_computes_alone_and_leaves_the_others_their_thread_count():
    import torch

    from aigc_demo.compute import _one_torch_thread

    assert compute_thread(LIGHT).run(torch.get_num_threads) == 1
    heavy = ComputeThread("test-heavy-count")
    before = heavy.run(torch.get_num_threads)
    light = ComputeThread("test-light", takes_turns=False)
    light.run(_one_torch_thread)
    assert light.run(torch.get_num_threads) == 1
    assert heavy.run(torch.get_num_threads) == before
    assert ComputeThread("test-started-after").run(torch.get_num_threads) == before


def test_a_fine_tune_waiting_for_a_reply_lets_the_reply_have_the_cores():
    """A fine-tune's step waits (``pause_while``) while a reply is written on the other compute thread: the
    reply's slices must get their turn during that wait, not queue behind it for TURN_WAIT_S each."""
    import time

    from aigc_demo.compute import TURN_WAIT_S
    from aigc_demo.training.fine_tune import pause_while

    trainer, chat = ComputeThread("test-trainer"), ComputeThread("test-chat")
    replying = threading.Event()
    replying.set()
    paused = trainer.submit(pause_while, replying.is_set, None)
    time.sleep(0.1)  # the trainer's job holds its turn and waits for the reply to end
    start = time.perf_counter()
    for _ in range(3):  # three slices of a reply, one after another as a generation requeues them
        chat.run(time.sleep, 0.01)
    waited = time.perf_counter() - start
    replying.clear()
    paused.result(timeout=15)
    assert waited < TURN_WAIT_S / 2, f"three 10 ms slices took {waited:.1f} s while the fine-tune waited"


def test_a_next_job_goes_before_the_queued_ones_after_the_running_one(compute):
    """A reply's first slice goes ahead of the slices of replies already streaming; new replies start in the
    order they came."""
    order: list[str] = []
    gate = hold_the_worker(compute)
    queued = [compute.submit(order.append, f"slice {i}") for i in range(2)]
    firsts = [compute.submit_next(order.append, f"first slice {i}") for i in range(3)]
    gate.set()
    for future in (*queued, *firsts):
        future.result(5)
    assert order == ["first slice 0", "first slice 1", "first slice 2", "slice 0", "slice 1"]
    later = compute.submit_next(order.append, "first slice 3")  # the queue drained: counted afresh
    later.result(5)
    assert order[-1] == "first slice 3"


def test_a_light_job_never_waits_for_another_compute_thread():
    """A GAN draw on the light thread scores its picture with a model of the shared thread, while an image on
    the shared thread waits for its prompt check on the light thread: what a light job calls runs right there,
    or each would wait for the other forever."""
    heavy = ComputeThread("test-heavy-cross")

    class Pipeline:
        worker = heavy

        @on_worker(light=True)
        def draw(self):
            return self.score()

        @on_worker
        def score(self):
            return threading.current_thread().name

        @on_worker
        def steps(self):
            yield threading.current_thread().name

    gate = hold_the_worker(heavy)  # the shared thread is busy (and could be waiting for the light one)
    try:
        assert Pipeline().draw() == LIGHT
        assert compute_thread(LIGHT).run(lambda: list(Pipeline().steps())) == [LIGHT]
    finally:
        gate.set()
