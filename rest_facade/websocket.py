"""Serving a WebSocket from a plain Flask view (the view decides whether to
upgrade, so one route can answer JSON, SSE or WebSocket). Works under
gunicorn's gthread worker and werkzeug, as flask-sock does."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from flask import Response, request
from simple_websocket import ConnectionClosed, Server
from wsproto.utilities import LocalProtocolError

# Coder's httpapi.Heartbeat pings every 15 s.
PING_INTERVAL_SECONDS = 15
# Coder's read limit for WebSocket messages.
MAX_MESSAGE_BYTES = 4 << 20
# Coder gives a frame 10 s to be written. Here the 10 s bound a write making
# no progress at all (a client that stopped reading): a slow client still
# receives a large frame, a stuck one is dropped instead of holding a thread
# (and a core stream) forever.
WRITE_TIMEOUT_SECONDS = 10.0


def wants_websocket() -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


def _wait(sock: socket.socket, events: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), events)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000)))


class FrameSocket:
    """The hijacked socket as the WebSocket library sees it. Its background
    thread (pings, pongs, close replies) and the request's thread (frames)
    both write to it: each write here goes out whole and one at a time, so
    frames never interleave, and fails with TimeoutError when the client
    takes nothing for ``write_timeout`` seconds."""

    def __init__(self, sock: socket.socket, write_timeout: float) -> None:
        self._sock = sock
        self._write_timeout = write_timeout
        self._lock = threading.Lock()
        sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        with self._lock:
            while view:
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    sent = 0
                if sent:
                    view = view[sent:]
                elif not _wait(self._sock, select.POLLOUT, self._write_timeout):
                    raise TimeoutError(f"the client took nothing for {self._write_timeout:g} s")

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self._sock.recv(size)
            except BlockingIOError:
                _wait(self._sock, select.POLLIN, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def serve_websocket(
    handler: Callable[[Server], None], *, on_done: Callable[[], None] | None = None
) -> Response:
    """Upgrades the current request and runs handler(ws) until it returns;
    then on_done() (the server never closes a hijacked response, so this is
    where a stream slot must be given back)."""
    environ = dict(request.environ)
    raw: socket.socket | None = None
    for key in ("werkzeug.socket", "gunicorn.socket"):
        if key in environ:
            raw = environ[key]
            environ[key] = FrameSocket(environ[key], WRITE_TIMEOUT_SECONDS)
    try:
        ws = Server(
            environ, ping_interval=PING_INTERVAL_SECONDS, max_message_size=MAX_MESSAGE_BYTES
        )
        # A socket error (a stuck client, a reset) ends the stream.
        with contextlib.suppress(ConnectionClosed, OSError, LocalProtocolError):
            handler(ws)
        with contextlib.suppress(Exception):
            ws.close()
    finally:
        if raw is not None:
            # Back to how the server handed it over, for whatever it does next.
            with contextlib.suppress(OSError):
                raw.setblocking(True)
        if on_done is not None:
            on_done()

    class WebSocketResponse(Response):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            # The connection was hijacked; tell the server not to answer.
            if ws.mode == "gunicorn":
                raise StopIteration()
            if ws.mode == "werkzeug":
                return super().__call__(*args, **kwargs)
            return []

    return WebSocketResponse()


def send_text(ws: Any, text: str) -> None:
    """Sends one text frame; if it cannot be written (the client stopped
    reading, or went away), the connection is dropped and ConnectionClosed
    raised."""
    if not ws.connected:
        raise ConnectionClosed(ws.close_reason, ws.close_message)
    try:
        ws.send(text)
    except (OSError, LocalProtocolError):
        # A part of the frame may be out: nothing more can be sent on it.
        ws.connected = False
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionClosed(1011, "Unable to send newest message") from None
