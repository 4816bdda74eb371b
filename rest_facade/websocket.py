"""Serving a WebSocket from a plain Flask view (the view decides whether to
upgrade, so one route can answer JSON, SSE or WebSocket). Works under
gunicorn's gthread worker and werkzeug, as flask-sock does."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from flask import Response, request
from simple_websocket import ConnectionClosed, Server
from wsproto.events import TextMessage

# Coder's httpapi.Heartbeat pings every 15 s.
PING_INTERVAL_SECONDS = 15
# Coder's read limit for WebSocket messages.
MAX_MESSAGE_BYTES = 4 << 20
# Coder gives each frame 10 s to be written; a client that stops reading is
# then dropped instead of holding a thread (and a core stream) forever.
WRITE_TIMEOUT_SECONDS = 10.0


def wants_websocket() -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


def serve_websocket(handler: Callable[[Server], None]) -> Response:
    """Upgrades the current request and runs handler(ws) until it returns."""
    ws = Server(
        request.environ,
        ping_interval=PING_INTERVAL_SECONDS,
        max_message_size=MAX_MESSAGE_BYTES,
    )
    # Bounds every write. The library's reader only reads once the socket is
    # readable (it waits in select for the ping interval), so a quiet client
    # is not mistaken for a slow one.
    ws.sock.settimeout(WRITE_TIMEOUT_SECONDS)
    # A socket error (a write past its deadline, a reset) ends the stream.
    with contextlib.suppress(ConnectionClosed, OSError):
        handler(ws)
    with contextlib.suppress(Exception):
        ws.close()

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
    """Sends one text frame, whole, within WRITE_TIMEOUT_SECONDS; otherwise
    the connection is dropped and ConnectionClosed raised. (The library's
    own send() writes with a single send(), which under a timeout may write
    part of a frame.)"""
    if not ws.connected:
        raise ConnectionClosed(ws.close_reason, ws.close_message)
    data = ws.ws.send(TextMessage(data=text))
    try:
        ws.sock.sendall(data)
    except OSError:
        # A part of the frame may be out: nothing more can be sent on it.
        ws.connected = False
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionClosed(1011, "Unable to send newest message") from None
