"""What Gradio's queue answers badly, answered at the door (an ASGI middleware around the whole app).

- A request to join the queue with an empty ``session_hash`` made Gradio 6.31 fail with HTTP 500 (a KeyError
  inside its queue, with a traceback in the log): it gets a 422 that says what to send.
- A full queue answers with Gradio's own "Queue is full. Max size is 16 ..." (HTTP 503); callers get the
  product's "busy, try again" in English and Chinese instead. The page replaces a 503's text with its own fixed
  English sentence but shows a 422's, so the page's own requests (marked ``x-gradio-user: app``) get a 422;
  everyone else keeps the 503 (gradio_client, which marks its requests ``api``, raises its QueueError on it).
- A plain REST call (``POST /call/<name>``) with fewer values than the endpoint takes failed inside Gradio,
  with a traceback in the log and a message listing internal object addresses. gradio_client fills in the
  endpoint's defaults itself; here they are filled in the same way, and a call that leaves out a value without
  a default gets a 422 that names the parameters.
"""

from __future__ import annotations

import json
import threading

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
        if not more and "/call/" in scope["path"]:
            try:
                filled = _with_defaults(body, scope)
            except ValueError as err:
                await _answer(send, 422, str(err))
                return
            if filled is not body:
                body, scope = filled, _with_length(scope, len(filled))
        busy_status = 422 if _from_page(scope) else 503
        await self.app(scope, _replaying(body, more, receive), _busy_worded(send, busy_status))


class _Endpoints:
    """Each named endpoint's parameters, as its API page lists them: read once per Blocks, the first REST call
    (a development reload that changes an endpoint needs a restart for this to see it)."""

    _lock = threading.Lock()
    _by_blocks: dict[int, dict[str, list[dict]]] = {}

    @classmethod
    def parameters(cls, scope, api_name: str) -> list[dict] | None:
        get_blocks = getattr(scope.get("app"), "get_blocks", None)
        if get_blocks is None:
            return None
        blocks = get_blocks()
        with cls._lock:
            if id(blocks) not in cls._by_blocks:
                named = blocks.get_api_info().get("named_endpoints", {})
                cls._by_blocks[id(blocks)] = {k.lstrip("/"): v["parameters"] for k, v in named.items()}
            return cls._by_blocks[id(blocks)].get(api_name)


def _with_defaults(body: bytes, scope) -> bytes:
    """A REST call's values with the endpoint's defaults after those sent, as gradio_client fills them."""
    try:
        call = json.loads(body)
    except ValueError:
        return body
    api_name = scope["path"].split("/call/", 1)[1].strip("/")
    if not isinstance(call, dict) or not isinstance(call.get("data"), list):
        return body
    parameters = _Endpoints.parameters(scope, api_name)
    if parameters is None:
        return body
    sent, names = call["data"], [p["parameter_name"] for p in parameters]
    if len(sent) >= len(parameters):  # nothing to fill (Gradio itself checks a call that sends more)
        return body
    missing = [p["parameter_name"] for p in parameters[len(sent) :] if not p["parameter_has_default"]]
    if missing:
        raise ValueError(
            f"/{api_name} needs a value for {', '.join(missing)}: data lists values in the order "
            f"{', '.join(names)}, and only those after the last one without a default may be left out"
        )
    call["data"] = sent + [p["parameter_default"] for p in parameters[len(sent) :]]
    return json.dumps(call).encode()


def _with_length(scope, length: int):
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


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
