"""``GET /api/v2/workspaceagents/me/rpc``: Coder's own agent wire — a binary
WebSocket carrying a yamux session (agentplane is the yamux server) whose
streams carry dRPC calls of ``coder.agent.v2.Agent`` and
``coder.tailnet.v2.Tailnet`` (rest_facade/wire). Every call is bridged to
the core's gRPC servicers with the agent's token and the negotiated API
version, so behaviour, errors and limits are those of the gRPC door.

As coderd: the agent token is checked first (401), then ``version``
(default ``2.0``; a version this server cannot serve is 400 ``Unknown or
unsupported API version`` with a ``version`` validation), then the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from agentplane.me.v1 import me_pb2
from flask import Blueprint, Response, request

from rest_facade import core
from rest_facade.errors import error_response
from rest_facade.parse import session_token
from rest_facade.serving.exchange import Exchange, Handoff
from rest_facade.streams import CoreStream, stream_slots
from rest_facade.wire.apiversion import UNSUPPORTED_MESSAGE, UnsupportedAPIVersion, negotiate
from rest_facade.wire.bridge import CoreBridge, call_metadata
from rest_facade.wire.drpc import serve_session
from rest_facade.wire.transport import WebSocketTransport

bp = Blueprint("rpc", __name__)

AGENT_BRIDGE = "drpc-agent-bridge"


def negotiated(default: str) -> str | Response:
    """The ``version`` query parameter negotiated as Coder does, or the 400."""
    try:
        return negotiate(request.args.get("version"), default=default)
    except UnsupportedAPIVersion as err:
        return error_response(400, UNSUPPORTED_MESSAGE, validations=[("version", str(err))])


async def serve_drpc(
    exchange: Exchange, bridge: CoreBridge, metadata: tuple, *, hold: CoreStream | None = None
) -> None:
    """Upgrades to a binary WebSocket and serves dRPC on it until either
    side ends the session (the WebSocket then closes with the session's
    GoAway: 1000 normal, 1002 protocol error, 1011 internal), or ``hold``
    (a core stream kept open beside the session) ends: the agent's token
    stopped working, or the core went away."""
    ws = await exchange.websocket()
    handlers = bridge.handlers(metadata)
    session = asyncio.ensure_future(serve_session(WebSocketTransport(ws), handlers))
    held = asyncio.ensure_future(_drain(hold)) if hold is not None else None
    try:
        waiting = {session} if held is None else {session, held}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (session, held):
            if task is not None and not task.done():
                # A cancelled session says goodbye with a normal GoAway.
                task.cancel()
        for task in (session, held):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await ws.aclose()


async def _drain(stream: CoreStream) -> None:
    with contextlib.suppress(grpc.RpcError):
        while await stream.next() is not None:
            pass


@bp.get("/workspaceagents/me/rpc")
def agent_rpc() -> Response:
    token = session_token()
    client = core()
    # coderd's middleware authenticates the agent before anything else.
    client.call(client.me.WhoAmI, me_pb2.WhoAmIRequest(), token=token)
    version = negotiated("2.0")
    if isinstance(version, Response):
        return version
    metadata = call_metadata(token=token, api_version=version)

    async def run(exchange: Exchange) -> None:
        core_client = exchange.core
        bridge = core_client.shared(AGENT_BRIDGE, CoreBridge)
        # The agent counts as connected while its session is open, as with
        # coderd's connection monitor.
        hold = CoreStream(
            core_client.stream(
                core_client.me.HoldConnection, me_pb2.HoldConnectionRequest(), token=token
            )
        )
        try:
            await serve_drpc(exchange, bridge, metadata, hold=hold)
        finally:
            await hold.close()

    return Handoff(run, on_done=stream_slots().acquire())
