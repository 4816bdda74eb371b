"""ScriptCompleted: a timing per run of one of the agent's own scripts."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wpb_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.clock import as_utc
from server.storage.scripttimings import WorkspaceAgentScriptTiming
from tests.conftest import token_md

Timing = agent_pb2.Timing


def script_id(channel, ws) -> uuid.UUID:
    agent = (
        wpb_grpc.WorkspaceAgentsServiceStub(channel)
        .GetWorkspaceAgent(
            wpb.GetWorkspaceAgentRequest(id=ws.agent("main").id), metadata=token_md(ws.api_key)
        )
        .agent
    )
    return uuid.UUID(agent.scripts[0].id)


def completed(channel, token: str, sid: bytes, start: dt.datetime, **kw):
    timing = Timing(script_id=sid, **kw)
    timing.start.FromDatetime(start)
    timing.end.FromDatetime(start + dt.timedelta(seconds=4))
    return agent_pb2_grpc.AgentStub(channel).ScriptCompleted(
        agent_pb2.WorkspaceAgentScriptCompletedRequest(timing=timing), metadata=token_md(token)
    )


def _timings(db) -> list[WorkspaceAgentScriptTiming]:
    with db.session() as s:
        return list(s.exec(select(WorkspaceAgentScriptTiming)))


def test_timing_is_stored_once_per_run(db, clock, channel, provision) -> None:
    ws = provision.workspace()
    sid = script_id(channel, ws)
    start = clock.now()
    token = ws.agent("main").auth_token
    completed(
        channel,
        token,
        sid.bytes,
        start,
        exit_code=3,
        stage=Timing.START,
        status=Timing.EXIT_FAILURE,
    )
    # A retried report of the same run is accepted and stored once.
    completed(
        channel,
        token,
        sid.bytes,
        start,
        exit_code=3,
        stage=Timing.START,
        status=Timing.EXIT_FAILURE,
    )
    completed(channel, token, sid.bytes, start + dt.timedelta(minutes=1), stage=Timing.CRON)
    rows = sorted(_timings(db), key=lambda r: as_utc(r.started_at))
    assert [(r.stage, r.status, r.exit_code) for r in rows] == [
        ("start", "exit_failure", 3),
        ("cron", "ok", 0),
    ]
    assert as_utc(rows[0].ended_at) == start + dt.timedelta(seconds=4)


def test_refusals(db, clock, channel, provision) -> None:
    ws = provision.workspace()
    other = provision.workspace()
    token = ws.agent("main").auth_token
    with pytest.raises(grpc.RpcError) as info:
        completed(channel, token, b"\x00" * 3, clock.now())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "script id from bytes: invalid UUID (got 3 bytes)"
    foreign = script_id(channel, other)
    with pytest.raises(grpc.RpcError) as info:
        completed(channel, token, foreign.bytes, clock.now())
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert f'script "{foreign}" is not a script of this agent' in info.value.details()
    assert _timings(db) == []
