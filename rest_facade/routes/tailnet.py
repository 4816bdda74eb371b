"""Tailnet coordination's doors onto ``coder.tailnet.v2.Tailnet``:

* ``GET /api/v2/derp-map`` — a WebSocket (no authentication, as in Coder):
  the DERP map as tailcfg JSON in a binary frame at once, then again only
  when it changes (``StreamDERPMaps``).
* ``GET /api/v2/workspaceagents/me/coordinate`` (agent token) and
  ``GET /api/v2/workspaceagents/{id}/coordinate`` without ``version`` or
  with ``version=1.0`` (user key): Coder's v1 JSON protocol over a
  WebSocket — the peer sends its ``tailnet.Node`` as JSON, and receives JSON
  arrays of its tunnel peers' nodes; bridged to ``Coordinate`` (the client
  opens its tunnel to the agent at once). Frames answer in the kind the
  client sends (text until it sends binary, as legacy agents do).
* ``{id}/coordinate?version=2.x`` (user key; client of that one agent) and
  ``GET /api/v2/tailnet`` (user key; user-scoped): dRPC over yamux over a
  binary WebSocket serving the Tailnet service only, with ``resume_token``.

Before any upgrade the caller is checked (401/404 in Coder's envelope; an
invalid or expired ``resume_token`` is 401 ``Invalid resume token`` with a
``resume_token`` validation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import grpc
from agentplane.me.v1 import me_pb2
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wa_pb2
from coder.tailnet.v2 import tailnet_pb2, tailnet_pb2_grpc
from flask import Blueprint, Response, request

from rest_facade import core
from rest_facade.coderjson import derp_map, dumps_bytes, node_from_json, node_json
from rest_facade.errors import error_response, from_rpc_error
from rest_facade.parse import session_token
from rest_facade.routes.rpc import negotiated, serve_drpc
from rest_facade.serving.exchange import Exchange, Handoff
from rest_facade.serving.websocket import (
    NORMAL,
    POLICY_VIOLATION,
    ConnectionClosed,
    WebSocket,
)
from rest_facade.streams import CoreStream, stream_slots
from rest_facade.wire.bridge import TAILNET_SERVICE, CoreBridge, call_metadata

bp = Blueprint("tailnet", __name__)

AGENT_ID_METADATA = "agent-id"
RESUME_TOKEN_METADATA = "resume-token"
TAILNET_BRIDGE = "drpc-tailnet-bridge"
INVALID_RESUME_TOKEN = "Invalid resume token"
Kind = tailnet_pb2.CoordinateResponse.PeerUpdate.Kind


def _tailnet_bridge(channel: grpc.aio.Channel) -> CoreBridge:
    return CoreBridge(channel, services=(TAILNET_SERVICE,))


# -- /derp-map ------------------------------------------------------------------


@bp.get("/derp-map")
def derp_map_stream() -> Response:
    async def run(exchange: Exchange) -> None:
        client = exchange.core
        stub = client.stub(tailnet_pb2_grpc.TailnetStub)
        stream = CoreStream(
            client.stream(stub.StreamDERPMaps, tailnet_pb2.StreamDERPMapsRequest(), token=None)
        )
        try:
            try:
                await stream.peek(client.timeout)
            except grpc.RpcError as err:
                await exchange.respond_rpc_error(err)
                return
            except TimeoutError:
                await exchange.respond_error(408, "Timed out waiting for the DERP map.")
                return
            ws = await exchange.websocket(one_way=True)
            ws.on_close(stream.cancel)
            try:
                while (message := await stream.next()) is not None and not ws.closed:
                    await ws.send_bytes(dumps_bytes(derp_map(message)))
            except grpc.RpcError as err:
                await ws.close(1011, err.details() or "")
            finally:
                await ws.aclose()
        finally:
            await stream.close()

    return Handoff(run, on_done=stream_slots().acquire())


# -- the v1 JSON protocol ---------------------------------------------------------


def _check_resume_token(token: str | None, metadata: tuple[tuple[str, str], ...]) -> None:
    """Asks the core to refresh the resume token: the caller's key and the
    token are checked before the upgrade (raises the RpcError)."""
    client = core()
    stub = client.stub(tailnet_pb2_grpc.TailnetStub)
    stub.RefreshResumeToken(
        tailnet_pb2.RefreshResumeTokenRequest(),
        metadata=call_metadata(token=token, api_version=None, extra=metadata),
        timeout=client.timeout,
    )


def _resume_refused(err: grpc.RpcError) -> Response | None:
    if err.code() != grpc.StatusCode.UNAUTHENTICATED:
        return None
    _status, body = from_rpc_error(err)
    if "resume" not in body.get("message", "").lower():
        return None
    return error_response(
        401,
        INVALID_RESUME_TOKEN,
        validations=[("resume_token", body.get("detail") or body["message"])],
    )


async def _serve_v1(
    exchange: Exchange, token: str | None, metadata: tuple, agent_id: uuid.UUID | None
) -> None:
    """The v1 JSON protocol on one WebSocket, bridged to a Coordinate stream."""
    client = exchange.core
    stub = client.stub(tailnet_pb2_grpc.TailnetStub)
    call = stub.Coordinate(metadata=call_metadata(token=token, api_version=None, extra=metadata))
    ws = await exchange.websocket()
    binary = [False]
    graceful = [False]
    try:
        if agent_id is not None:
            await call.write(
                tailnet_pb2.CoordinateRequest(
                    add_tunnel=tailnet_pb2.CoordinateRequest.Tunnel(id=agent_id.bytes)
                )
            )
        upstream = asyncio.ensure_future(_v1_nodes_in(ws, call, binary, graceful))
        downstream = asyncio.ensure_future(_v1_nodes_out(ws, call, binary))
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for task in (upstream, downstream):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if graceful[0]:
            # A peer that closed normally left; one that vanished is lost.
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                await call.write(
                    tailnet_pb2.CoordinateRequest(
                        disconnect=tailnet_pb2.CoordinateRequest.Disconnect()
                    )
                )
                await call.done_writing()
                with contextlib.suppress(asyncio.TimeoutError):
                    async with asyncio.timeout(2):
                        while await call.read() is not grpc.aio.EOF:
                            pass
    finally:
        call.cancel()
        await ws.aclose()


async def _v1_nodes_in(ws: WebSocket, call: Any, binary: list[bool], graceful: list[bool]) -> None:
    """The peer's nodes: concatenated JSON values in text or binary frames."""
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        try:
            message = await ws.receive()
        except ConnectionClosed as closed:
            graceful[0] = closed.code == NORMAL
            return
        if isinstance(message, bytes):
            binary[0] = True
            message = message.decode("utf-8", "replace")
        buffer += message
        while buffer.strip():
            text = buffer.lstrip()
            try:
                value, end = decoder.raw_decode(text)
            except ValueError:
                if len(text) > 4 << 20:
                    await ws.close(POLICY_VIOLATION, "invalid node JSON")
                    return
                break  # the rest of the value is in a later frame
            buffer = text[end:]
            try:
                node = node_from_json(value)
            except ValueError as err:
                await ws.close(POLICY_VIOLATION, str(err))
                return
            await call.write(
                tailnet_pb2.CoordinateRequest(
                    update_self=tailnet_pb2.CoordinateRequest.UpdateSelf(node=node)
                )
            )


async def _v1_nodes_out(ws: WebSocket, call: Any, binary: list[bool]) -> None:
    """The tunnel peers' nodes as JSON arrays (v1 has no word for a peer
    that left; the newer protocol's DISCONNECTED and LOST are not sent)."""
    try:
        while (response := await call.read()) is not grpc.aio.EOF:
            nodes = [node_json(u.node) for u in response.peer_updates if u.kind == Kind.NODE]
            if not nodes:
                continue
            payload = dumps_bytes(nodes) + b"\n"
            if binary[0]:
                await ws.send_bytes(payload)
            else:
                await ws.send_text(payload.decode())
    except grpc.RpcError as err:
        await ws.close(1011, err.details() or "coordination ended")


# -- routes -------------------------------------------------------------------------


@bp.get("/workspaceagents/me/coordinate")
def agent_coordinate() -> Response:
    token = session_token()
    client = core()
    client.call(client.me.WhoAmI, me_pb2.WhoAmIRequest(), token=token)

    async def run(exchange: Exchange) -> None:
        await _serve_v1(exchange, token, (), None)

    return Handoff(run, on_done=stream_slots().acquire())


@bp.get("/workspaceagents/<agent:agent_id>/coordinate")
def client_coordinate(agent_id: str) -> Response:
    token = session_token()
    client = core()
    # The agent must be one the caller may read: the same 404 as a missing one.
    client.call(
        client.workspace_agents.GetWorkspaceAgent,
        wa_pb2.GetWorkspaceAgentRequest(id=agent_id),
        token=token,
    )
    agent = uuid.UUID(agent_id)
    raw = request.args.get("version")
    extra: tuple[tuple[str, str], ...] = ((AGENT_ID_METADATA, str(agent)),)
    if raw in (None, "", "1.0"):

        async def run_v1(exchange: Exchange) -> None:
            await _serve_v1(exchange, token, extra, agent)

        return Handoff(run_v1, on_done=stream_slots().acquire())
    version = negotiated("1.0")
    if isinstance(version, Response):
        return version
    return _drpc_tailnet(token, version, extra)


@bp.get("/tailnet")
def user_tailnet() -> Response:
    token = session_token()
    client = core()
    # Users only (coderd's API key middleware): an agent's token is a 401.
    client.call(
        client.workspace_agents.GetConnectionInfo, wa_pb2.GetConnectionInfoRequest(), token=token
    )
    version = negotiated("2.0")
    if isinstance(version, Response):
        return version
    return _drpc_tailnet(token, version, ())


def _drpc_tailnet(token: str | None, version: str, extra: tuple[tuple[str, str], ...]) -> Response:
    resume = request.args.get("resume_token")
    if resume:
        extra = (*extra, (RESUME_TOKEN_METADATA, resume))
    try:
        _check_resume_token(token, extra)
    except grpc.RpcError as err:
        refused = _resume_refused(err)
        if refused is not None:
            return refused
        raise
    metadata = call_metadata(token=token, api_version=version, extra=extra)

    async def run(exchange: Exchange) -> None:
        bridge = exchange.core.shared(TAILNET_BRIDGE, _tailnet_bridge)
        await serve_drpc(exchange, bridge, metadata)

    return Handoff(run, on_done=stream_slots().acquire())
