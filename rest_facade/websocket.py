"""Serving a WebSocket from a plain Flask view (the view decides whether to
upgrade, so one route can answer JSON, SSE or WebSocket). Works under
gunicorn's gthread worker and werkzeug, as flask-sock does."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from flask import Response, request
from simple_websocket import ConnectionClosed, Server

# Coder's httpapi.Heartbeat pings every 15 s.
PING_INTERVAL_SECONDS = 15
# Coder's read limit for WebSocket messages.
MAX_MESSAGE_BYTES = 4 << 20


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
    with contextlib.suppress(ConnectionClosed):
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
