"""Reading a request the way coderd does: where the session token comes
from, and JSON bodies with Coder's 400 on invalid JSON."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, request

from rest_facade.coderjson import without_lone_surrogates
from rest_facade.errors import error_response

INVALID_JSON = "Request body must be valid JSON."
SESSION_COOKIE = "coder_session_token"
SESSION_HEADER = "Coder-Session-Token"


def session_token() -> str | None:
    """Coder's precedence: cookie, query parameter, header, then Bearer."""
    token = request.cookies.get(SESSION_COOKIE) or request.args.get(SESSION_COOKIE)
    if token:
        return token
    token = request.headers.get(SESSION_HEADER)
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def wants_websocket() -> bool:
    """The client asked to upgrade to a WebSocket (the front keeps the
    Upgrade header out of werkzeug's sight and passes it on here)."""
    from rest_facade.serving.wsgi import UPGRADE_KEY

    return request.environ.get(UPGRADE_KEY) == "websocket"


def wants_event_stream() -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def read_json() -> Any:
    """The decoded body, or a 400 in Coder's envelope."""
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:
        abort(
            error_response(400, INVALID_JSON, detail=str(err)),
        )
    # Only an escape or an encoded surrogate can carry a lone surrogate.
    if b"\\u" in raw or b"\xed" in raw:
        body = without_lone_surrogates(body)
    return body


def go_json_kind(value: object) -> str:
    """The word Go's encoding/json uses for a JSON value in its "cannot
    unmarshal <kind> into ..." errors, which Coder passes on as `detail`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"
