"""ReportConnection: CONNECT opens a connection-log row, DISCONNECT closes
it; Coder's refusals."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.clock import as_utc
from server.storage.connectionlogs import ConnectionLog
from tests.conftest import token_md

C = agent_pb2.Connection


def report(channel, token: str, **kw):
    conn = C(**kw)
    return agent_pb2_grpc.AgentStub(channel).ReportConnection(
        agent_pb2.ReportConnectionRequest(connection=conn), metadata=token_md(token)
    )


def _logs(db) -> list[ConnectionLog]:
    with db.session() as s:
        return list(s.exec(select(ConnectionLog)))


def test_connect_then_disconnect(db, clock, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    cid = uuid.uuid4()
    t0 = clock.now()
    start = C(id=cid.bytes, action=C.Action.CONNECT, type=C.Type.SSH, ip="localhost")
    start.timestamp.FromDatetime(t0)
    agent_pb2_grpc.AgentStub(channel).ReportConnection(
        agent_pb2.ReportConnectionRequest(connection=start), metadata=token_md(main.auth_token)
    )
    (row,) = _logs(db)
    assert row.type == "ssh" and row.ip == "127.0.0.1" and row.disconnect_time is None
    assert as_utc(row.connect_time) == t0 and row.agent_name == "main"
    assert row.workspace_id == uuid.UUID(ws.workspace_id) and row.code is None
    end = C(
        id=cid.bytes,
        action=C.Action.DISCONNECT,
        type=C.Type.SSH,
        status_code=130,
        reason="client went away",
    )
    end.timestamp.FromDatetime(t0 + dt.timedelta(minutes=5))
    agent_pb2_grpc.AgentStub(channel).ReportConnection(
        agent_pb2.ReportConnectionRequest(connection=end), metadata=token_md(main.auth_token)
    )
    (row,) = _logs(db)
    assert as_utc(row.disconnect_time) == t0 + dt.timedelta(minutes=5)
    assert (row.code, row.disconnect_reason) == (130, "client went away")


def test_disconnect_without_connect_and_new_methods(db, clock, channel, provision) -> None:
    token = provision.workspace().agent("main").auth_token
    report(
        channel,
        token,
        id=uuid.uuid4().bytes,
        action=C.Action.DISCONNECT,
        connection_method=C.Method.METHOD_PORT_FORWARDING,
        app_name="curl",
        ip="not an ip",
    )
    (row,) = _logs(db)
    assert row.type == "port_forwarding" and row.app_name == "curl" and row.ip is None
    # No timestamp: the server's clock.
    assert as_utc(row.connect_time) == clock.now() == as_utc(row.disconnect_time)


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"id": b"\x01"}, "connection id from bytes: invalid UUID (got 1 bytes)"),
        ({"id": b"\x00" * 16}, "connection ID cannot be nil"),
        (
            {"action": C.Action.ACTION_UNSPECIFIED, "type": C.Type.SSH},
            'unknown agent connection action "ACTION_UNSPECIFIED"',
        ),
        ({"action": C.Action.CONNECT}, 'unknown agent connection type "TYPE_UNSPECIFIED"'),
    ],
)
def test_refusals(db, channel, provision, kw, text) -> None:
    token = provision.workspace().agent("main").auth_token
    kw.setdefault("id", uuid.uuid4().bytes)
    with pytest.raises(grpc.RpcError) as info:
        report(channel, token, **kw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == text
    assert _logs(db) == []
