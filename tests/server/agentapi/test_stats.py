"""UpdateStats: the report interval always, no side effects without stats,
a stored row per report, and open sessions moving the workspace's
last-used time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.clock import as_utc
from server.storage.stats import WorkspaceAgentStat
from server.storage.workspaces import Workspace
from tests.conftest import token_md


def _update(channel, token: str, stats: agent_pb2.Stats | None):
    req = agent_pb2.UpdateStatsRequest()
    if stats is not None:
        req.stats.CopyFrom(stats)
    return agent_pb2_grpc.AgentStub(channel).UpdateStats(req, metadata=token_md(token))


def _rows(db, core=None) -> list[WorkspaceAgentStat]:
    if core is not None:
        # Reports are written behind the call; flush what the core buffered.
        core.core.reports.flush()
    with db.session() as s:
        return list(s.exec(select(WorkspaceAgentStat)))


def _last_used(db, workspace_id: str) -> dt.datetime | None:
    with db.session() as s:
        return as_utc(s.get(Workspace, uuid.UUID(workspace_id)).last_used_at)


def test_without_stats_only_the_interval(db, core, channel, provision) -> None:
    ws = provision.workspace()
    reply = _update(channel, ws.agent("main").auth_token, None)
    assert reply.report_interval.seconds == 30 and reply.report_interval.nanos == 0
    assert _rows(db, core) == [] and _last_used(db, ws.workspace_id) is None


def test_report_is_stored(db, clock, core, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    stats = agent_pb2.Stats(
        connections_by_proto={"ssh": 2, "tcp": 1},
        connection_count=3,
        connection_median_latency_ms=12.5,
        rx_packets=10,
        rx_bytes=1000,
        tx_packets=20,
        tx_bytes=2000,
    )
    reply = _update(channel, main.auth_token, stats)
    assert reply.report_interval.seconds == 30
    (row,) = _rows(db, core)
    assert row.agent_id == uuid.UUID(main.id) and row.workspace_id == uuid.UUID(ws.workspace_id)
    assert row.user_id == uuid.UUID(ws.user_id) and as_utc(row.created_at) == clock.now()
    assert row.connections_by_proto == {"ssh": 2, "tcp": 1}
    assert (row.rx_bytes, row.tx_bytes, row.connection_count) == (1000, 2000, 3)
    assert row.connection_median_latency_ms == 12.5
    # Connections without sessions are not use: last_used_at stays unset.
    assert _last_used(db, ws.workspace_id) is None


@pytest.mark.parametrize(
    "sessions",
    [
        {"session_count_vscode": 1},
        {"session_count_ssh": 2},
        {"session_count_jetbrains": 1},
        {"session_count_reconnecting_pty": 1},
        {"session_counts": {"vscode": 1}},
    ],
)
def test_open_sessions_bump_last_used(db, clock, core, channel, provision, sessions) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    clock.advance(seconds=60)
    _update(channel, token, agent_pb2.Stats(connection_count=1, **sessions))
    assert len(_rows(db, core)) == 1
    assert _last_used(db, ws.workspace_id) == clock.now()
    clock.advance(seconds=30)
    _update(channel, token, agent_pb2.Stats(connection_count=1, **sessions))
    assert len(_rows(db, core)) == 2
    assert _last_used(db, ws.workspace_id) == clock.now()


class TestConfiguredInterval:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, agent_stats_report_interval_seconds=45)

    def test_interval_follows_the_setting(self, channel, provision) -> None:
        token = provision.workspace().agent("main").auth_token
        assert _update(channel, token, None).report_interval.seconds == 45


def test_reports_are_written_within_a_second_without_a_flush(db, clock, channel, provision):
    """The write-behind timer writes on its own (no test flush here)."""
    from tests.rest_facade._live import wait_until

    ws = provision.workspace()
    _update(channel, ws.agent("main").auth_token, agent_pb2.Stats(session_count_ssh=1))
    wait_until(lambda: len(_rows(db)) == 1, timeout=5, what="the stats flush")
    assert _last_used(db, ws.workspace_id) == clock.now()
