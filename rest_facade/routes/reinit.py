"""``GET /api/v2/workspaceagents/me/reinit`` <-> ``agentplane.me.v1.MeService/WatchReinit``.

Server-Sent Events as Coder's ``httpapi.ServerSentEventSender`` writes them:
``event: ping`` keep-alives (the first at once) and ``event: data`` with an
``agentsdk.ReinitializationEvent`` (``{workspace_id, reason, owner_id}``).
``wait=true`` opts into the durable check. Errors before the stream starts
(a bad token) are ordinary JSON answers; the stream ends when the client
goes away (the core call is cancelled with it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from agentplane.me.v1 import me_pb2
from flask import Blueprint, Response, request

from rest_facade import core
from rest_facade.coderjson import dumps
from rest_facade.errors import error_response, from_rpc_error
from rest_facade.parse import session_token
from rest_facade.streams import stream_slots

bp = Blueprint("reinit", __name__)

_TRUE = ("1", "t", "true", "y", "yes", "on")
_FALSE = ("", "0", "f", "false", "n", "no", "off")


def sse_frame(message: me_pb2.WatchReinitResponse) -> str:
    if message.HasField("reinit"):
        event = message.reinit
        data = {
            "workspace_id": event.workspace_id,
            "reason": event.reason,
            "owner_id": event.owner_id,
        }
        return f"event: data\ndata: {dumps(data)}\n\n"
    return "event: ping\n\n"


@bp.get("/workspaceagents/me/reinit")
def get_reinit() -> Response:
    raw = request.args.get("wait", "").strip().lower()
    if raw not in _TRUE + _FALSE:
        return error_response(
            400,
            "Invalid query parameters.",
            validations=[("wait", f'Query param "wait" must be a valid boolean: {raw!r}')],
        )
    return stream_slots().streamed(lambda _release: _reinit_stream(raw in _TRUE))


def _reinit_stream(wait: bool) -> Response:
    client = core()
    # No deadline: the stream lives as long as the agent keeps it open.
    call = client.stream(
        client.me.WatchReinit, me_pb2.WatchReinitRequest(wait=wait), token=session_token()
    )
    try:
        # The first message (a ping) arrives once the core has accepted the
        # caller, so auth errors are still JSON answers here.
        first = next(call)
    except grpc.RpcError:
        call.cancel()
        raise
    except StopIteration:
        return Response(status=200, content_type="text/event-stream")

    def events() -> Iterator[str]:
        try:
            yield sse_frame(first)
            for message in call:
                yield sse_frame(message)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                _status, body = from_rpc_error(err)
                yield f"event: error\ndata: {dumps(body)}\n\n"
        finally:
            call.cancel()

    # Coder also sends "Connection: keep-alive"; WSGI servers own that
    # hop-by-hop header, and HTTP/1.1 keeps the connection open anyway.
    headers: dict[str, Any] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    resp = Response(events(), status=200, content_type="text/event-stream", headers=headers)
    # A body nobody iterates (HEAD) never runs the generator's finally.
    resp.call_on_close(call.cancel)
    return resp
