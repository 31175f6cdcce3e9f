"""What Gradio's queue answers badly, answered at the door (an ASGI middleware around the whole app).

- A request to join the queue with an empty ``session_hash`` made Gradio 6.31 fail with HTTP 500 (a KeyError
  inside its queue, with a traceback in the log): it gets a 422 that says what to send.
- A full queue answers with Gradio's own "Queue is full. Max size is 16 ..." (HTTP 503); callers get the
  product's "busy, try again" in English and Chinese instead. The page replaces a 503's text with its own fixed
  English sentence but shows a 422's, so the page's own requests (marked ``x-gradio-user: app``) get a 422;
  everyone else keeps the 503 (gradio_client, which marks its requests ``api``, raises its QueueError on it).
"""

from __future__ import annotations

import json

# The requests that put an event in the queue: the page and gradio_client, and plain REST.
JOIN_PATHS = ("/queue/join", "/call/")
BUSY = (
    "AIGC Studio is busy: every place in the queue is taken. Please try again in a minute. "
    "AIGC Studio 正忙：队列已满，请稍后再试。"
)
EMPTY_SESSION = "session_hash must be a non-empty string (any id you choose; reuse it to stop your own job)"
# Bodies larger than this are passed on unread (Gradio applies its own limits).
MAX_CHECKED_BODY = 4 * 1024 * 1024


class RequestGuard:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not _joins(scope["path"]):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more and len(body) <= MAX_CHECKED_BODY:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not more and _empty_session_hash(body):
            await _answer(send, 422, EMPTY_SESSION)
            return
        busy_status = 422 if _from_page(scope) else 503
        await self.app(scope, _replaying(body, more, receive), _busy_worded(send, busy_status))


def _joins(path: str) -> bool:
    return any(part in path for part in JOIN_PATHS)


def _from_page(scope) -> bool:
    """The page's own join: Gradio's front end marks its events ``x-gradio-user: app``."""
    page = (b"x-gradio-user", b"app") in [(k.lower(), v) for k, v in scope.get("headers", [])]
    return scope["path"].endswith("/queue/join") and page


def _empty_session_hash(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("session_hash", None) == ""


def _replaying(body: bytes, more: bool, receive):
    """The request's body again for the app, then whatever is still to come."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _busy_worded(send, status: int):
    """``send`` with a 503 (queue full) answer replaced by BUSY with ``status``."""
    held: dict | None = None

    async def wrapped(message):
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] == 503:
            held = message
            return
        if held is not None and message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await _answer(send, status, BUSY, held)
            return
        await send(message)

    return wrapped


async def _answer(send, status: int, detail: str, start: dict | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    replaced = (b"content-length", b"content-type", b"content-encoding")
    headers = [(k, v) for k, v in (start or {}).get("headers", []) if k.lower() not in replaced]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
