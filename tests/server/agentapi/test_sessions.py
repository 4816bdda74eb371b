"""An agent's connection status is written from its live session: calls
mark it connected (throttled), streams hold it, a stream's end or silence
disconnects it — and GetWorkspaceAgent derives the status from those
timestamps at every boundary, with the injected clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest
from agentplane.me.v1 import me_pb2, me_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wpb_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.clock import as_utc
from server.storage.agents import WorkspaceAgent
from tests.conftest import token_md, write_locked
from tests.rest_facade._live import wait_until


def _row(db, agent_id: str) -> WorkspaceAgent:
    with db.session() as s:
        return s.get(WorkspaceAgent, uuid.UUID(agent_id))


def _call(channel, token: str) -> None:
    agent_pb2_grpc.AgentStub(channel).UpdateStats(
        agent_pb2.UpdateStatsRequest(), metadata=token_md(token)
    )


def _send_logs(channel, token: str) -> None:
    # Log batches authenticate from a recent lookup (no re-read of the row):
    # connection status must come out the same.
    agent_pb2_grpc.AgentStub(channel).BatchCreateLogs(
        agent_pb2.BatchCreateLogsRequest(
            log_source_id=bytes(16), logs=[agent_pb2.Log(output="x", level=agent_pb2.Log.INFO)]
        ),
        metadata=token_md(token),
    )


CALLS = pytest.mark.parametrize("call", [_call, _send_logs], ids=["UpdateStats", "BatchCreateLogs"])


def _status(channel, ws) -> wpb.WorkspaceAgent:
    return (
        wpb_grpc.WorkspaceAgentsServiceStub(channel)
        .GetWorkspaceAgent(
            wpb.GetWorkspaceAgentRequest(id=ws.agent("main").id), metadata=token_md(ws.api_key)
        )
        .agent
    )


def _at(msg, field: str) -> dt.datetime | None:
    return msg.__getattribute__(field).ToDatetime(tzinfo=dt.UTC) if msg.HasField(field) else None


def test_never_connected_is_connecting_then_timeout(clock, channel, provision) -> None:
    ws = provision.workspace()
    clock.advance(seconds=120)
    agent = _status(channel, ws)
    assert agent.status == "connecting" and agent.health.reason == "agent has not yet connected"
    clock.advance(microseconds=1)
    agent = _status(channel, ws)
    assert agent.status == "timeout"
    assert agent.health.reason == "agent is taking too long to connect"


@CALLS
def test_first_call_connects_and_later_calls_refresh(
    db, clock, core, channel, provision, call
) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    t0 = clock.advance(seconds=3)
    call(channel, main.auth_token)
    row = _row(db, main.id)
    assert as_utc(row.first_connected_at) == t0 == as_utc(row.last_connected_at)
    assert row.disconnected_at is None
    assert row.last_connected_replica_id == core.core.sessions.replica_id
    agent = _status(channel, ws)
    assert agent.status == "connected" and agent.health.healthy
    # Calls within the refresh interval do not write.
    refresh = core.core.sessions.refresh_interval
    clock.advance(seconds=refresh.total_seconds() - 0.001)
    call(channel, main.auth_token)
    assert as_utc(_row(db, main.id).last_connected_at) == t0
    t1 = clock.advance(seconds=0.001)
    call(channel, main.auth_token)
    row = _row(db, main.id)
    assert as_utc(row.last_connected_at) == t1 and as_utc(row.first_connected_at) == t0


@CALLS
def test_silence_disconnects_at_the_inactivity_timeout(
    db, clock, core, channel, provision, call
) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    t0 = clock.now()
    call(channel, main.auth_token)
    sessions = core.core.sessions
    clock.advance(seconds=30)
    sessions.sweep()
    agent = _status(channel, ws)
    assert agent.status == "connected" and not agent.HasField("disconnected_at")
    t1 = clock.advance(microseconds=1)
    # Derived before anything is written: Coder reports the last contact.
    agent = _status(channel, ws)
    assert agent.status == "disconnected" and _at(agent, "disconnected_at") == t0
    assert agent.health.reason == "agent has lost connection"
    sessions.sweep()
    row = _row(db, main.id)
    assert as_utc(row.disconnected_at) == t1
    agent = _status(channel, ws)
    assert agent.status == "disconnected" and _at(agent, "disconnected_at") == t1
    # The next call reconnects: disconnected_at cleared, first contact kept.
    t2 = clock.advance(seconds=5)
    call(channel, main.auth_token)
    row = _row(db, main.id)
    assert row.disconnected_at is None and as_utc(row.last_connected_at) == t2
    assert as_utc(row.first_connected_at) == t0
    assert _status(channel, ws).status == "connected"


def test_a_held_stream_stays_connected_and_its_end_disconnects(
    db, clock, core, channel, provision
) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    stream = me_pb2_grpc.MeServiceStub(channel).WatchReinit(
        me_pb2.WatchReinitRequest(), metadata=token_md(main.auth_token)
    )
    assert next(stream).HasField("ping")
    t0 = clock.now()
    assert as_utc(_row(db, main.id).last_connected_at) == t0
    sessions = core.core.sessions
    # Far past the inactivity timeout, the held session is refreshed, not dropped.
    t1 = clock.advance(seconds=95)
    sessions.sweep()
    row = _row(db, main.id)
    assert as_utc(row.last_connected_at) == t1 and row.disconnected_at is None
    assert _status(channel, ws).status == "connected"
    t2 = clock.advance(seconds=2)
    stream.cancel()
    wait_until(lambda: _row(db, main.id).disconnected_at is not None, what="disconnect")
    row = _row(db, main.id)
    assert as_utc(row.disconnected_at) == t2 and as_utc(row.last_connected_at) == t1
    agent = _status(channel, ws)
    assert agent.status == "disconnected" and _at(agent, "disconnected_at") == t2
    assert sessions.active_count() == 0


def test_refused_tokens_do_not_connect(db, channel, provision) -> None:
    ws = provision.workspace()
    old = ws.agent("main")
    provision.rebuild(ws)
    with pytest.raises(grpc.RpcError):
        _call(channel, old.auth_token)
    assert _row(db, old.id).first_connected_at is None


def test_a_disconnect_that_cannot_be_written_is_retried(db, clock, provision) -> None:
    """The end of a stream writes the disconnection; when the write fails
    (here: a lock held past the lock timeout), the agent is tracked again
    and a later sweep writes it."""
    from server.agentapi.sessions import AgentSessions
    from server.storage import agents as agent_store

    main = provision.workspace().agent("main")
    sessions = AgentSessions(db, clock, inactive_timeout=dt.timedelta(seconds=30))
    with db.read() as conn:
        caller = agent_store.get_agent_in_workspace(conn, agent_id=uuid.UUID(main.id))
    asyncio.run(sessions.touch(caller))
    with write_locked(db, main.id), sessions.hold(caller):
        pass
    assert _row(db, main.id).disconnected_at is None
    assert sessions.active_count() == 1
    swept = clock.advance(seconds=31)
    sessions.sweep()
    assert as_utc(_row(db, main.id).disconnected_at) == swept
    assert sessions.active_count() == 0
