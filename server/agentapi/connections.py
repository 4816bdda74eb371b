"""ReportConnection: the agent reports a connection to the workspace opening
or closing (SSH, VS Code, JetBrains, reconnecting PTY, port forwarding).

Serves ``coder.agent.v2.Agent/ReportConnection``: a CONNECT opens a
connection-log row, the DISCONNECT with the same connection id closes it
with the exit code and reason.
"""

from __future__ import annotations

import ipaddress

from coder.agent.v2 import agent_pb2
from google.protobuf import empty_pb2

from server.agentapi.gotext import enum_text, uuid_from_bytes
from server.clock import Clock
from server.errors import InvalidArgument
from server.prototime import from_timestamp
from server.storage import connectionlogs
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

_Conn = agent_pb2.Connection
ACTION = {_Conn.Action.CONNECT: "connected", _Conn.Action.DISCONNECT: "disconnected"}
# The legacy kind (API < 2.13).
TYPE = {
    _Conn.Type.SSH: "ssh",
    _Conn.Type.VSCODE: "vscode",
    _Conn.Type.JETBRAINS: "jetbrains",
    _Conn.Type.RECONNECTING_PTY: "reconnecting_pty",
}
# API 2.13 agents send the transport instead, and the client in app_name.
METHOD = {
    _Conn.Method.METHOD_SSH: "ssh",
    _Conn.Method.METHOD_RECONNECTING_PTY: "reconnecting_pty",
    _Conn.Method.METHOD_PORT_FORWARDING: "port_forwarding",
}


def _ip(raw: str) -> str | None:
    # Some older agents report "localhost"; anything unparsable is stored as
    # unknown rather than refused.
    if raw == "localhost":
        raw = "127.0.0.1"
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def report_connection(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.ReportConnectionRequest,
) -> empty_pb2.Empty:
    c = request.connection
    try:
        connection_id = uuid_from_bytes(c.id)
    except ValueError as err:
        raise InvalidArgument(f"connection id from bytes: {err}") from None
    if connection_id.int == 0:
        raise InvalidArgument("connection ID cannot be nil")
    action = ACTION.get(c.action)
    if action is None:
        raise InvalidArgument(
            f"unknown agent connection action {enum_text(_Conn.Action, c.action)}"
        )
    kind = METHOD.get(c.connection_method) or TYPE.get(c.type)
    if kind is None:
        raise InvalidArgument(f"unknown agent connection type {enum_text(_Conn.Type, c.type)}")
    # Go's zero Timestamp would be 1970; the server's now is the better guess.
    if c.HasField("timestamp") and (c.timestamp.seconds or c.timestamp.nanos):
        at = from_timestamp(c.timestamp, "connection.timestamp")
    else:
        at = clock.now()
    disconnected = action == "disconnected"
    row = {
        "connect_time": at,
        "workspace_id": caller.workspace.id,
        "workspace_owner_id": caller.workspace.owner_id,
        "workspace_name": caller.workspace.name,
        "agent_id": caller.agent.id,
        "agent_name": caller.agent.name,
        "type": kind,
        "app_name": c.app_name,
        "ip": _ip(c.ip),
        "code": c.status_code if disconnected else None,
        "disconnect_reason": (c.reason or None) if c.HasField("reason") else None,
        "connection_id": connection_id,
    }
    with db.engine.begin() as conn:
        connectionlogs.upsert_connection_log(conn, row=row, disconnected=disconnected)
    return empty_pb2.Empty()
