"""Pty and ListPtySessions: reconnecting terminals on the agent, bridged from
a user's stream to an attachment on the agent's tunnel (REST
``GET /workspaceagents/{id}/pty`` comes with the facade's new front;
``GET {id}/pty-sessions`` is agentplane's, Coder #25058).

The open parameters are checked before the agent is asked, with Coder's
``Invalid query parameters.`` and one validation per bad field. Output is
passed on only as fast as the user's stream takes it (each chunk is
acknowledged to the agent after it was written), keystrokes only as fast as
the agent writes them: a user who stops reading stalls only this attachment.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

from server.errors import InvalidArgument
from server.tunnel.dialer import AgentDialer, Operation, What, check_frame, failure
from server.tunnel.tunnel import TunnelClosed

# Coder's query parser defaults.
DEFAULT_SIZE = 80
MAX_SIZE = 65535  # sizes are uint16 in Coder's init and requests
# Coder sends the init as JSON behind a 2-byte length: the whole of it fits
# in 64 KiB, so the command does too.
MAX_COMMAND_BYTES = 32 << 10
MAX_NAME_BYTES = 255
BACKEND_TYPES = ("", "auto", "buffered", "screen")
INVALID_QUERY = "Invalid query parameters."


def _text_ok(value: str, limit: int) -> bool:
    return "\x00" not in value and len(value.encode()) <= limit


def attach_request(open_: cpb.PtyOpen, client_ip: str) -> tpb.PtyAttach:
    """The attach request for the agent, or InvalidArgument naming every bad field."""
    bad: list[tuple[str, str]] = []
    reconnect = open_.reconnect
    if reconnect:
        try:
            reconnect = str(uuid.UUID(reconnect))
        except ValueError:
            bad.append(("reconnect", 'Query param "reconnect" must be a valid uuid'))
    else:
        reconnect = str(uuid.uuid4())
    for name in ("height", "width"):
        if getattr(open_, name) > MAX_SIZE:
            bad.append((name, f'Query param "{name}" must be a valid 16-bit unsigned integer'))
    if not _text_ok(open_.command, MAX_COMMAND_BYTES):
        bad.append(("command", f"Command must be text of at most {MAX_COMMAND_BYTES} bytes."))
    for name in ("container", "container_user"):
        if not _text_ok(getattr(open_, name), MAX_NAME_BYTES):
            bad.append((name, f"{name} must be text of at most {MAX_NAME_BYTES} bytes."))
    if open_.backend_type not in BACKEND_TYPES:
        bad.append(("backend_type", "Backend type must be one of: auto, buffered, screen."))
    if bad:
        raise InvalidArgument(INVALID_QUERY, validations=bad)
    return tpb.PtyAttach(
        reconnect_id=reconnect,
        height=open_.height or DEFAULT_SIZE,
        width=open_.width or DEFAULT_SIZE,
        command=open_.command,
        container=open_.container,
        container_user=open_.container_user,
        backend_type=open_.backend_type,
        client_ip=client_ip,
    )


def peer_ip(peer: str) -> str:
    """The address part of a gRPC peer ("ipv4:1.2.3.4:5", "ipv6:[::1]:5")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


async def _pump_input(requests: AsyncIterator[cpb.PtyRequest], handle: Any) -> None:
    """Keystrokes and sizes from the user to the agent, at the agent's pace."""
    try:
        async for request in requests:
            if request.data:
                await handle.write_input(request.data)
            if request.height or request.width:
                if not (0 < request.height <= MAX_SIZE and 0 < request.width <= MAX_SIZE):
                    handle.fail(
                        InvalidArgument(
                            f"Terminal size must be between 1 and {MAX_SIZE} rows and columns."
                        )
                    )
                    return
                handle.resize(request.height, request.width)
    except TunnelClosed:
        return


async def pty(
    dialer: AgentDialer, *, user: Any, requests: AsyncIterator[cpb.PtyRequest], peer: str
) -> AsyncIterator[cpb.PtyResponse]:
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        return
    if not first.HasField("open"):
        raise InvalidArgument("The first message of a terminal stream must open it.")
    attach = attach_request(first.open, peer_ip(peer))
    conn = dialer.dial(user=user, agent_id_text=first.open.agent_id)
    handle = conn.start(Operation.PTY, pty_attach=attach)
    pump: asyncio.Task[None] | None = None
    try:
        frame = await conn.first_answer(Operation.PTY, handle)
        if frame.WhichOneof("frame") == "done":
            return  # the command ended before anything could attach
        yield cpb.PtyResponse(session=frame.pty_attached.session)
        if first.data:
            await handle.write_input(first.data)
        pump = asyncio.create_task(_pump_input(requests, handle))
        while True:
            try:
                frame = check_frame(Operation.PTY, await handle.next())
            except TunnelClosed as err:
                raise failure(Operation.PTY, What.FAILED, str(err)) from None
            kind = frame.WhichOneof("frame")
            if kind == "pty_output":
                yield cpb.PtyResponse(output=frame.pty_output)
                # Written to the user's stream: the agent may send as much again.
                handle.acknowledge_output(len(frame.pty_output))
            elif kind == "done":
                return
    finally:
        handle.close()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump


async def list_pty_sessions(
    dialer: AgentDialer, *, user: Any, request: cpb.ListPtySessionsRequest
) -> cpb.ListPtySessionsResponse:
    conn = dialer.dial(user=user, agent_id_text=request.agent_id)
    answer = await conn.call(Operation.PTY_SESSIONS, list_pty_sessions=tpb.ListPtySessionsCall())
    return cpb.ListPtySessionsResponse(sessions=answer.pty_sessions.sessions)
