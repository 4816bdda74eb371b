"""Routes served through the agent's tunnel (AgentConnService):

* ``GET /workspaceagents/{id}/listening-ports`` <-> ListListeningPorts
* ``GET /workspaceagents/{id}/containers`` (``label=k=v``, repeatable) <-> ListContainers
* ``DELETE /workspaceagents/{id}/containers/devcontainers/{dc}`` (204) <-> DeleteDevcontainer
* ``POST …/containers/devcontainers/{dc}/recreate`` (202) <-> RecreateDevcontainer
* ``GET /workspaceagents/{id}/pty-sessions`` (agentplane's, Coder #25058) <-> ListPtySessions
* ``GET /workspaceagents/{id}/pty`` (WebSocket) <-> Pty
* ``GET /workspaceagents/{id}/containers/watch`` (WebSocket) <-> WatchContainers
* ``GET /workspaceagents/{id}/watch-metadata`` (SSE) and ``watch-metadata-ws``
  (WebSocket) <-> WatchWorkspaceAgentMetadata

Errors before a stream starts (auth, a missing agent, its state, the dial
error) are plain answers in Coder's envelope, before any upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import grpc
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from flask import Blueprint, Response, request

from rest_facade import core
from rest_facade.coderjson import dumps, respond, sorted_map, timestamp
from rest_facade.core import token_metadata
from rest_facade.errors import error_response, from_rpc_error
from rest_facade.parse import session_token
from rest_facade.serving.exchange import SSE_HEADERS, Exchange, Handoff
from rest_facade.serving.websocket import PING_INTERVAL_SECONDS, WebSocket
from rest_facade.streams import CoreStream, stream_slots, until_gone

bp = Blueprint("agentconn", __name__)

# The core waits 30 s for the agent; the facade waits a little longer so
# that the core's own answer (408, 500) is what the user gets.
TUNNEL_CALL_TIMEOUT = 40.0


def container_json(c: tpb.Container) -> dict[str, Any]:
    """codersdk.WorkspaceAgentContainer."""
    return {
        "created_at": timestamp(c, "created_at"),
        "id": c.id,
        "image": c.image,
        "labels": sorted_map(c.labels),
        "name": c.name,
        "ports": [
            {"host_ip": p.host_ip, "host_port": p.host_port, "network": p.network, "port": p.port}
            for p in c.ports
        ],
        "running": c.running,
        "status": c.status,
        "volumes": sorted_map(c.volumes),
    }


def devcontainer_json(d: tpb.Devcontainer) -> dict[str, Any]:
    """codersdk.WorkspaceAgentDevcontainer (omitempty fields left out when empty)."""
    body: dict[str, Any] = {
        "config_path": d.config_path,
        "dirty": d.dirty,
        "id": d.id,
        "name": d.name,
        "status": d.status,
        "subagent_id": d.subagent_id if d.HasField("subagent_id") else None,
        "workspace_folder": d.workspace_folder,
    }
    if d.HasField("container"):
        body["container"] = container_json(d.container)
    if d.HasField("agent"):
        body["agent"] = {"directory": d.agent.directory, "id": d.agent.id, "name": d.agent.name}
    if d.error:
        body["error"] = d.error
    return dict(sorted(body.items()))


def containers_json(listing: tpb.ContainerList) -> dict[str, Any]:
    """codersdk.WorkspaceAgentListContainersResponse."""
    return {
        "containers": [container_json(c) for c in listing.containers],
        "devcontainers": [devcontainer_json(d) for d in listing.devcontainers],
        "warnings": list(listing.warnings),
    }


@bp.get("/workspaceagents/<agent:agent_id>/listening-ports")
def listening_ports(agent_id: str) -> Any:
    resp = core().call(
        core().agent_conn.ListListeningPorts,
        cpb.ListListeningPortsRequest(agent_id=agent_id),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond(
        {
            "ports": [
                {"network": p.network, "port": p.port, "process_name": p.process_name}
                for p in resp.ports
            ]
        }
    )


@bp.get("/workspaceagents/<agent:agent_id>/containers")
def list_containers(agent_id: str) -> Any:
    labels: dict[str, str] = {}
    for label in request.args.getlist("label"):
        # Coder splits on every "=": exactly one is allowed.
        parts = label.split("=")
        if len(parts) != 2:
            return error_response(
                400, "Invalid label format", "Labels must be in the format key=value"
            )
        labels[parts[0]] = parts[1]
    resp = core().call(
        core().agent_conn.ListContainers,
        cpb.ListContainersRequest(agent_id=agent_id, labels=labels),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond(containers_json(resp.list))


@bp.delete("/workspaceagents/<agent:agent_id>/containers/devcontainers/<devcontainer>")
def delete_devcontainer(agent_id: str, devcontainer: str) -> Any:
    core().call(
        core().agent_conn.DeleteDevcontainer,
        cpb.DeleteDevcontainerRequest(agent_id=agent_id, devcontainer_id=devcontainer),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return Response(status=204)


@bp.post("/workspaceagents/<agent:agent_id>/containers/devcontainers/<devcontainer>/recreate")
def recreate_devcontainer(agent_id: str, devcontainer: str) -> Any:
    resp = core().call(
        core().agent_conn.RecreateDevcontainer,
        cpb.RecreateDevcontainerRequest(agent_id=agent_id, devcontainer_id=devcontainer),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond({"detail": resp.detail, "message": resp.message}, 202)


def pty_session_json(s: tpb.PtySession) -> dict[str, Any]:
    return {
        "attached_clients": s.attached_clients,
        "command": s.command,
        "container": s.container,
        "created_at": timestamp(s, "created_at"),
        "height": s.height,
        "id": s.id,
        "last_attached_at": timestamp(s, "last_attached_at"),
        "width": s.width,
    }


@bp.get("/workspaceagents/<agent:agent_id>/pty-sessions")
def pty_sessions(agent_id: str) -> Any:
    """agentplane's own (Coder #25058): the agent's running terminals."""
    resp = core().call(
        core().agent_conn.ListPtySessions,
        cpb.ListPtySessionsRequest(agent_id=agent_id),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond({"sessions": [pty_session_json(s) for s in resp.sessions]})


# -- the WebSocket and SSE doors --------------------------------------------------

_UINT16 = 65535
BACKEND_TYPES = ("", "screen", "buffered", "auto")


def _uint16(name: str, default: int, problems: list[tuple[str, str]]) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > _UINT16:
        problems.append((name, f'Query param "{name}" must be a valid 16-bit unsigned integer.'))
        return default
    return int(raw)


@bp.get("/workspaceagents/<agent:agent_id>/pty")
def pty(agent_id: str) -> Any:
    """Coder's reconnecting PTY over a WebSocket: the client sends JSON
    ``{"data", "height", "width"}`` objects (in text or binary messages, one
    or several per message), the server sends the terminal's output as
    binary messages; the same ``reconnect`` id re-attaches (the scrollback
    first); the shell exiting closes the socket (1000)."""
    problems: list[tuple[str, str]] = []
    reconnect = request.args.get("reconnect", "")
    try:
        uuid.UUID(reconnect)
    except ValueError:
        problems.append(
            ("reconnect", f'Query param "reconnect" must be a valid UUID: "{reconnect}"')
        )
    height = _uint16("height", 80, problems)
    width = _uint16("width", 80, problems)
    backend = request.args.get("backend_type", "")
    if backend not in BACKEND_TYPES:
        problems.append(
            ("backend_type", 'Query param "backend_type" must be one of: screen, buffered')
        )
    if problems:
        return error_response(400, "Invalid query parameters.", validations=problems)
    opening = cpb.PtyRequest(
        open=cpb.PtyOpen(
            agent_id=agent_id,
            reconnect=reconnect,
            height=height,
            width=width,
            command=request.args.get("command", ""),
            container=request.args.get("container", ""),
            container_user=request.args.get("container_user", ""),
            backend_type="" if backend == "screen" else backend,
        )
    )
    token = session_token()

    async def run(exchange: Exchange) -> None:
        client = exchange.core
        call = client.agent_conn.Pty(metadata=token_metadata(token))
        try:
            await call.write(opening)
            try:
                async with asyncio.timeout(TUNNEL_CALL_TIMEOUT):
                    first = await call.read()
            except grpc.RpcError as err:
                await exchange.respond_rpc_error(err)
                return
            except TimeoutError:
                await exchange.respond_error(408, "Timed out opening the terminal.")
                return
            if first is grpc.aio.EOF:
                await exchange.respond_error(500, "The agent ended the terminal at once.")
                return
            ws = await exchange.websocket()
            try:
                if first.output:
                    await ws.send_bytes(first.output)
                keys = asyncio.ensure_future(_pty_input(ws, call))
                try:
                    while (response := await call.read()) is not grpc.aio.EOF:
                        if response.output:
                            await ws.send_bytes(response.output)
                    # The shell exited.
                    await ws.close(1000, "")
                except grpc.RpcError as err:
                    await ws.close(1011, err.details() or "terminal ended")
                finally:
                    keys.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await keys
            finally:
                await ws.aclose()
        finally:
            # The session stays on the agent for a reconnect.
            call.cancel()

    return Handoff(run, on_done=stream_slots().acquire())


async def _pty_input(ws: WebSocket, call: Any) -> None:
    """The client's ReconnectingPTYRequest objects, as a JSON stream, into
    the Pty call; a closed socket ends the call (the session lives on)."""
    decoder = json.JSONDecoder()
    buffer = ""
    try:
        async for message in ws:
            buffer += message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            while buffer.strip():
                text = buffer.lstrip()
                try:
                    value, end = decoder.raw_decode(text)
                except ValueError:
                    break  # the rest of the object comes in a later message
                buffer = text[end:]
                if not isinstance(value, dict):
                    await ws.close(1003, "expected JSON objects")
                    return
                await call.write(_pty_request(value))
    finally:
        call.cancel()


def _pty_request(value: dict[str, Any]) -> cpb.PtyRequest:
    data = value.get("data")
    out = cpb.PtyRequest()
    if isinstance(data, str) and data:
        out.data = data.encode()
    height, width = value.get("height"), value.get("width")
    if (
        isinstance(height, int)
        and isinstance(width, int)
        and 0 < height <= _UINT16
        and 0 < width <= _UINT16
    ):
        out.height, out.width = height, width
    return out


@bp.get("/workspaceagents/<agent:agent_id>/containers/watch")
def watch_containers(agent_id: str) -> Any:
    """A WebSocket of text messages, each the whole
    ``WorkspaceAgentListContainersResponse``, on every change."""
    token = session_token()
    req = cpb.WatchContainersRequest(agent_id=agent_id)

    async def run(exchange: Exchange) -> None:
        client = exchange.core
        stream = CoreStream(client.stream(client.agent_conn.WatchContainers, req, token=token))
        try:
            if not await _opened(exchange, stream):
                return
            ws = await exchange.websocket(one_way=True)
            ws.on_close(stream.cancel)
            try:
                while (message := await stream.next()) is not None and not ws.closed:
                    await ws.send_text(dumps(containers_json(message.list)))
                await ws.close(1000, "")
            except grpc.RpcError as err:
                await ws.close(1011, err.details() or "")
            finally:
                await ws.aclose()
        finally:
            await stream.close()

    return Handoff(run, on_done=stream_slots().acquire())


async def _opened(exchange: Exchange, stream: CoreStream) -> bool:
    """Waits for the stream's first message; errors (auth, 404, the agent's
    state) are plain HTTP answers before any upgrade, as in Coder."""
    try:
        await stream.peek(TUNNEL_CALL_TIMEOUT)
    except grpc.RpcError as err:
        await exchange.respond_rpc_error(err)
        return False
    except TimeoutError:
        await exchange.respond_error(408, "Request timed out.")
        return False
    return True


def metadata_json(m: cpb.WorkspaceAgentMetadata) -> dict[str, Any]:
    """codersdk.WorkspaceAgentMetadata."""
    r, d = m.result, m.description
    return {
        "description": {
            "display_name": d.display_name,
            "interval": d.interval,
            "key": d.key,
            "script": d.script,
            "timeout": d.timeout,
        },
        "result": {
            "age": r.age,
            "collected_at": timestamp(r, "collected_at") or "0001-01-01T00:00:00Z",
            "error": r.error,
            "value": r.value,
        },
    }


def _watch_metadata(agent_id: str, *, websocket: bool) -> Any:
    token = session_token()
    req = cpb.WatchWorkspaceAgentMetadataRequest(agent_id=agent_id)

    async def run(exchange: Exchange) -> None:
        client = exchange.core
        stream = CoreStream(
            client.stream(client.agent_conn.WatchWorkspaceAgentMetadata, req, token=token)
        )
        try:
            if not await _opened(exchange, stream):
                return
            if websocket:
                await _metadata_websocket(exchange, stream)
            else:
                await _metadata_sse(exchange, stream)
        finally:
            await stream.close()

    return Handoff(run, on_done=stream_slots().acquire())


async def _metadata_websocket(exchange: Exchange, stream: CoreStream) -> None:
    # Coder's OneWayWebSocketEventSender: {"type": "data", "data": [...]}.
    ws = await exchange.websocket(one_way=True)
    ws.on_close(stream.cancel)
    try:
        while (message := await stream.next()) is not None and not ws.closed:
            event = {"data": [metadata_json(m) for m in message.metadata], "type": "data"}
            await ws.send_text(dumps(event))
    except grpc.RpcError as err:
        await ws.close(1011, err.details() or "")
    finally:
        await ws.aclose()


async def _metadata_sse(exchange: Exchange, stream: CoreStream) -> None:
    out = await exchange.stream(200, SSE_HEADERS)
    if exchange.request.method == "HEAD":
        await out.end()
        return

    async def events() -> None:
        while True:
            try:
                message = await stream.next(PING_INTERVAL_SECONDS)
            except TimeoutError:
                await out.send(b"event: ping\n\n")
                continue
            except grpc.RpcError as err:
                _status, body = from_rpc_error(err)
                await out.send(f"event: error\ndata: {dumps(body)}\n\n".encode())
                break
            if message is None:
                break
            data = dumps([metadata_json(m) for m in message.metadata])
            await out.send(f"event: data\ndata: {data}\n\n".encode())
        await out.end()

    await until_gone(exchange.wait_disconnected(), events())


@bp.get("/workspaceagents/<agent:agent_id>/watch-metadata")
def watch_metadata(agent_id: str) -> Any:
    """Server-Sent Events: the agent's whole metadata list on each change
    (at most once a second), keep-alive pings."""
    return _watch_metadata(agent_id, websocket=False)


@bp.get("/workspaceagents/<agent:agent_id>/watch-metadata-ws")
def watch_metadata_ws(agent_id: str) -> Any:
    """The same as a WebSocket of ``{"type": "data", "data": [...]}``."""
    return _watch_metadata(agent_id, websocket=True)
