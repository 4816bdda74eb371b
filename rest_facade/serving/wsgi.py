"""Running the Flask app for one whole request on a worker thread.

The front hands a request over only once it has read all of it, so a worker
thread never waits on a client: it runs the view and produces the answer.
Small answers (nearly all) come back whole in one hand-off to the event
loop; a large or streamed body is passed on in chunks of at least
``STREAM_CHUNK_BYTES``, and the thread waits for the connection to take them
(bounded by the front's write timeout), so a slow reader of a large answer
costs a thread for at most that long between chunks.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

# The environ key a Flask view's Handoff response fills with the coroutine
# function that takes the connection over (see exchange.py).
HANDOFF_KEY = "agentplane.handoff"
# The Upgrade a client asked for ("websocket", "derp", ...). Kept out of the
# HTTP_UPGRADE key: werkzeug's router refuses a WebSocket handshake on any
# rule not marked for WebSockets with an HTML 400, and here the view decides.
UPGRADE_KEY = "agentplane.upgrade"
# The request's id (logs on both sides; the core gets it as x-request-id).
REQUEST_ID_KEY = "agentplane.request_id"
STREAM_CHUNK_BYTES = 64 << 10

Header = tuple[bytes, bytes]
# Headers the front owns (framing, connection management).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te"}
)


@dataclasses.dataclass
class Request:
    """One request as the front read it: head and whole body."""

    method: str
    target: bytes
    http_version: str
    headers: list[Header]
    body: bytes
    client: tuple[str, int]
    server: tuple[str, int]

    @property
    def path_bytes(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def query_bytes(self) -> bytes:
        return self.target.partition(b"?")[2]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def has_credentials(self) -> bool:
        """Carries something that may be a session token (logs only)."""
        return (
            any(
                self.header(name) is not None
                for name in (b"coder-session-token", b"authorization", b"cookie")
            )
            or b"coder_session_token=" in self.query_bytes
        )

    @property
    def upgrade(self) -> str:
        """The protocol asked for with ``Connection: upgrade``, lowercased."""
        connection = (self.header(b"connection") or b"").lower()
        if b"upgrade" not in connection:
            return ""
        return (self.header(b"upgrade") or b"").decode("latin-1").strip().lower()


def environ_for(request: Request) -> dict[str, Any]:
    """PEP 3333 environ for the request (the body already de-chunked)."""
    path = unquote_to_bytes(request.path_bytes).decode("latin-1")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": request.query_bytes.decode("latin-1"),
        "SERVER_NAME": request.server[0],
        "SERVER_PORT": str(request.server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "REMOTE_ADDR": request.client[0],
        "REMOTE_PORT": str(request.client[1]),
        "REQUEST_URI": request.target.decode("latin-1"),
        "RAW_URI": request.target.decode("latin-1"),
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        UPGRADE_KEY: request.upgrade,
    }
    for raw_name, raw_value in request.headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("content-length", "transfer-encoding", "upgrade"):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            joiner = "; " if name == "cookie" else ", "
            environ[key] = environ[key] + joiner + value
        else:
            environ[key] = value
    return environ


@dataclasses.dataclass
class Answer:
    """What the app produced: a whole answer, the head of a streamed one
    (``more`` set; the rest went through the sink), or a hand-off."""

    status: int = 500
    headers: list[Header] = dataclasses.field(default_factory=list)
    body: bytes = b""
    more: bool = False
    close: bool = False
    handoff: Any = None


class _StartResponse:
    def __init__(self) -> None:
        self.status = 500
        self.headers: list[Header] = []
        self.close = False
        self.called = False

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.called:
            raise exc_info[1].with_traceback(exc_info[2])
        self.called = True
        self.status = int(status.split(" ", 1)[0])
        kept: list[Header] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in _HOP_BY_HOP:
                if lowered == "connection" and "close" in value.lower():
                    self.close = True
                continue
            kept.append((lowered.encode("latin-1"), value.encode("latin-1")))
        self.headers = kept
        return self._write

    def _write(self, data: bytes) -> None:
        raise RuntimeError("the WSGI write() callable is not supported; return an iterable")


def run_app(
    app: Callable[..., Iterable[bytes]],
    environ: dict[str, Any],
    sink: Callable[[Answer | bytes | None], None],
) -> Answer:
    """Runs the app on the calling (worker) thread. Returns the whole answer,
    or, once the body outgrows STREAM_CHUNK_BYTES, passes the head and then
    each chunk to ``sink`` (None at the end) and returns the head marked
    ``more``. ``sink`` blocks until the connection took the data and raises
    if the client is gone, which ends the app's iteration."""
    from rest_facade.core import REQUEST_ID

    REQUEST_ID.set(environ.get(REQUEST_ID_KEY, ""))
    start = _StartResponse()
    result = app(environ, start)
    try:
        handoff = environ.get(HANDOFF_KEY)
        if handoff is not None:
            return Answer(status=start.status, headers=start.headers, handoff=handoff)
        head = Answer(status=start.status, headers=start.headers, close=start.close)
        buffered: list[bytes] = []
        size = 0
        streaming = False
        for chunk in result:
            if not chunk:
                continue
            buffered.append(chunk)
            size += len(chunk)
            if size >= STREAM_CHUNK_BYTES:
                if not streaming:
                    head.more = streaming = True
                    sink(head)
                sink(b"".join(buffered))
                buffered, size = [], 0
        if not streaming:
            head.body = b"".join(buffered)
            return head
        if buffered:
            sink(b"".join(buffered))
        sink(None)
        return head
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
