"""The middleware that answers what Gradio's queue answers badly (aigc_demo/ui/guard.py)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aigc_demo.ui.guard import BUSY, EMPTY_SESSION, RequestGuard


async def join(request):
    data = await request.json()
    if data.get("fn_index") == 99:  # stands for a full queue, as Gradio answers it
        return JSONResponse({"detail": "Queue is full. Max size is 16 and size is 16."}, status_code=503)
    return JSONResponse({"event_id": "e1", "echo": data})


@pytest.fixture()
def client():
    routes = [Route(p, join, methods=["POST"]) for p in ("/gradio_api/queue/join", "/gradio_api/call/chat")]
    return TestClient(Starlette(routes=routes, middleware=[Middleware(RequestGuard)]))


def test_an_empty_session_hash_is_refused_with_a_message(client):
    r = client.post("/gradio_api/queue/join", json={"fn_index": 1, "session_hash": "", "data": []})
    assert r.status_code == 422 and r.json()["detail"] == EMPTY_SESSION


def test_ordinary_requests_pass_through_with_their_body(client):
    body = {"fn_index": 1, "session_hash": "abc", "data": ["x" * 100_000]}
    r = client.post("/gradio_api/queue/join", json=body)
    assert r.status_code == 200 and r.json()["echo"] == body
    assert client.post("/gradio_api/call/chat", json={"data": ["hi"]}).json()["echo"] == {"data": ["hi"]}


def test_a_full_queue_answers_in_the_products_words(client):
    full = {"fn_index": 99, "session_hash": "abc", "data": []}
    api = {"x-gradio-user": "api"}  # gradio_client's mark
    r = client.post("/gradio_api/queue/join", json=full, headers=api)
    assert r.status_code == 503 and r.json()["detail"] == BUSY  # gradio_client raises QueueError on a 503
    r = client.post("/gradio_api/call/chat", json={"fn_index": 99, "data": []})
    assert r.status_code == 503 and r.json()["detail"] == BUSY
    assert "busy" in BUSY and "正忙" in BUSY


def test_the_page_is_told_busy_in_a_status_it_shows():
    """The page shows a 422's detail but replaces a 503's with a fixed English sentence."""
    routes = [Route("/gradio_api/queue/join", join, methods=["POST"])]
    page = TestClient(Starlette(routes=routes, middleware=[Middleware(RequestGuard)]))
    full = {"fn_index": 99, "session_hash": "abc", "data": []}
    r = page.post("/gradio_api/queue/join", json=full, headers={"x-gradio-user": "app"})  # the page's mark
    assert r.status_code == 422 and r.json()["detail"] == BUSY
    r = page.post("/gradio_api/queue/join", json={**full, "fn_index": 1}, headers={"x-gradio-user": "app"})
    assert r.status_code == 200
    r = page.post("/gradio_api/queue/join", json=full)  # unmarked (curl, other clients): the usual 503
    assert r.status_code == 503 and r.json()["detail"] == BUSY


def test_the_queue_polls_at_the_configured_interval():
    """calm_queue sets the intervals Gradio's queue loops actually read; a Gradio that renamed them fails here."""
    import inspect

    import gradio as gr
    from gradio.queueing import Queue

    from aigc_demo.ui.layout import calm_queue

    assert "self.sleep_when_free" in inspect.getsource(Queue.start_processing)
    assert "self.progress_update_sleep_when_free" in inspect.getsource(Queue.start_progress_updates)
    assert "self.ANAYLTICS_CACHE_FREQUENCY" in inspect.getsource(Queue.compute_analytics_summary)
    with gr.Blocks() as demo:
        gr.Textbox()
    demo.queue()
    calm_queue(demo, 0.005)
    assert demo._queue.sleep_when_free == 0.005
    assert demo._queue.progress_update_sleep_when_free == 0.05
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == 1000
    for bad, kept in ((0.0, 0.001), (5.0, 0.1), (float("nan"), 0.005), (float("inf"), 0.005)):
        calm_queue(demo, bad)  # 0 would spin the loop at 100% CPU
        assert demo._queue.sleep_when_free == kept


@pytest.fixture(scope="module")
def small_app():
    import gradio as gr

    def add(a: int, b: int = 2, c: int = 3) -> int:
        return a + b + c

    with gr.Blocks() as demo:
        gr.api(add, api_name="add")
    from starlette.middleware import Middleware as Mw

    demo.queue().launch(prevent_thread_lock=True, app_kwargs={"middleware": [Mw(RequestGuard)]})
    yield demo.local_url.rstrip("/")
    demo.close()


def rest(url: str, name: str, data: list):
    import httpx

    joined = httpx.post(f"{url}/gradio_api/call/{name}", json={"data": data}, timeout=30)
    if joined.status_code != 200:
        return joined.status_code, joined.json()["detail"]
    events = httpx.get(f"{url}/gradio_api/call/{name}/{joined.json()['event_id']}", timeout=30).text
    return 200, events


def test_a_rest_call_gets_the_defaults_gradio_client_would_send(small_app):
    assert rest(small_app, "add", [1]) == (200, "event: complete\ndata: [6]\n\n")
    assert rest(small_app, "add", [1, 10]) == (200, "event: complete\ndata: [14]\n\n")


def test_a_rest_call_missing_a_required_value_is_told_which(small_app):
    status, detail = rest(small_app, "add", [])
    assert status == 422 and "/add needs a value for a" in detail and "a, b, c" in detail
    assert rest(small_app, "add", [1, 1, 1]) == (200, "event: complete\ndata: [3]\n\n")
