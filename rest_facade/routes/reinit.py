"""``GET /api/v2/workspaceagents/me/reinit`` <-> ``agentplane.me.v1.MeService/WatchReinit``.

Server-Sent Events as Coder's ``httpapi.ServerSentEventSender`` writes them:
``event: ping`` keep-alives (the first at once) and ``event: data`` with an
``agentsdk.ReinitializationEvent`` (``{workspace_id, reason, owner_id}``).
``wait=true`` opts into the durable check. Errors before the stream starts
(a bad token) are ordinary JSON answers; the stream ends when the client
goes away (the core call is cancelled with it).
"""

from __future__ import annotations

import grpc
from agentplane.me.v1 import me_pb2
from flask import Blueprint, Response, request

from rest_facade.coderjson import dumps
from rest_facade.errors import error_response, from_rpc_error
from rest_facade.parse import session_token
from rest_facade.serving.exchange import SSE_HEADERS, Exchange, Handoff, Stream
from rest_facade.streams import CoreStream, stream_slots, until_gone

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
    request_pb = me_pb2.WatchReinitRequest(wait=raw in _TRUE)
    token = session_token()

    async def run(exchange: Exchange) -> None:
        core = exchange.core
        # No deadline: the stream lives as long as the agent keeps it open.
        stream = CoreStream(core.stream(core.me.WatchReinit, request_pb, token=token))
        try:
            # The first message (a ping) arrives once the core has accepted
            # the caller, so auth errors are still JSON answers here.
            try:
                first = await stream.peek(core.timeout)
            except TimeoutError:
                await exchange.respond_error(408, "Timed out waiting for the reinit stream.")
                return
            except grpc.RpcError as err:
                await exchange.respond_rpc_error(err)
                return
            out = await exchange.stream(200, SSE_HEADERS)
            if exchange.request.method == "HEAD" or first is None:
                await out.end()
                return
            await until_gone(exchange.wait_disconnected(), _events(stream, out))
        finally:
            await stream.close()

    return Handoff(run, on_done=stream_slots().acquire())


async def _events(stream: CoreStream, out: Stream) -> None:
    while True:
        try:
            message = await stream.next()
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                _status, body = from_rpc_error(err)
                await out.send(f"event: error\ndata: {dumps(body)}\n\n".encode())
            await out.end()
            return
        if message is None:
            await out.end()
            return
        await out.send(sse_frame(message).encode())
