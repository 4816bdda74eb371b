"""The write-behind buffers of agents' periodic reports (stats, metadata):
one caller's bad item never costs another caller theirs, a database that is
away keeps what was acknowledged for the next flush, and what waits is
bounded by keys, newest value per key."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy as sa
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.agentapi.metadata import MetadataReport, MetadataWriter
from server.agentapi.stats import StatsReport, StatsWriter
from server.agentapi.writebehind import BUFFER_FULL
from server.errors import Unavailable
from server.storage.agents import WorkspaceAgent
from server.storage.metadata import WorkspaceAgentMetadatum
from server.storage.metadatavalues import MetadataValue
from server.storage.stats import WorkspaceAgentStat
from tests.conftest import DEFAULT_SPEC, token_md, write_locked
from tests.rest_facade._live import wait_until

Result = agent_pb2.WorkspaceAgentMetadata.Result


def _send_metadata(channel, token: str, value: str) -> None:
    agent_pb2_grpc.AgentStub(channel).BatchUpdateMetadata(
        agent_pb2.BatchUpdateMetadataRequest(
            metadata=[agent_pb2.Metadata(key="load", result=Result(value=value))]
        ),
        metadata=token_md(token),
        timeout=30,
    )


def _send_stats(channel, token: str, **stats: int) -> None:
    agent_pb2_grpc.AgentStub(channel).UpdateStats(
        agent_pb2.UpdateStatsRequest(stats=agent_pb2.Stats(**stats)),
        metadata=token_md(token),
        timeout=30,
    )


def _value(db, agent_id: str) -> str:
    with db.session() as s:
        return s.exec(
            select(WorkspaceAgentMetadatum.value).where(
                WorkspaceAgentMetadatum.workspace_agent_id == uuid.UUID(agent_id)
            )
        ).one()


def _stats(db) -> dict[uuid.UUID, list[WorkspaceAgentStat]]:
    out: dict[uuid.UUID, list[WorkspaceAgentStat]] = {}
    with db.session() as s:
        for row in s.exec(select(WorkspaceAgentStat)):
            out.setdefault(row.agent_id, []).append(row)
    return out


def test_one_agents_nul_does_not_cost_another_its_metadata(db, core, channel, provision):
    """A sends "x\\u0000", B reports in the same second: both are answered
    OK and both values are stored (on PostgreSQL the one shared write
    failed, and B's value was dropped with A's)."""
    a = provision.workspace(DEFAULT_SPEC).agent("main")
    b = provision.workspace(DEFAULT_SPEC).agent("main")
    _send_metadata(channel, a.auth_token, "x\u0000")
    _send_metadata(channel, b.auth_token, "b's value")
    assert core.core.reports.flush() == 2
    assert _value(db, b.id) == "b's value"
    assert _value(db, a.id) == "x\u274c"


def test_a_bad_item_fails_alone(db, core, channel, provision, caplog):
    """A report the database refuses for its data (here: stats of an agent
    whose row went away before the flush, a foreign-key violation) is
    dropped alone; the other agents' reports of the same flush are stored."""
    caplog.set_level(logging.WARNING, logger="server.agentapi.writebehind")
    agents = [provision.workspace().agent("main") for _ in range(5)]
    for i, agent in enumerate(agents):
        _send_stats(channel, agent.auth_token, rx_bytes=i + 1)
    gone = uuid.UUID(agents[2].id)
    with db.write() as conn:
        table = WorkspaceAgent.__table__
        conn.execute(sa.delete(table).where(table.c.id == gone))
    core.core.reports.flush()
    stored = _stats(db)
    assert set(stored) == {uuid.UUID(a.id) for a in agents} - {gone}
    assert core.core.reports.pending() == 0
    assert [r.getMessage() for r in caplog.records if "dropped one" in r.getMessage()]


@contextlib.contextmanager
def _metadata_locked(db, agent_id: str) -> Iterator[None]:
    """Another transaction holds what a metadata write needs: the agent's
    metadata rows on PostgreSQL, the write lock on SQLite."""
    if not db.is_postgres:
        with write_locked(db, agent_id):
            yield
        return
    table = WorkspaceAgentMetadatum.__table__
    with db.engine.connect() as locker, locker.begin():
        locker.execute(
            sa.select(table.c.key)
            .where(table.c.workspace_agent_id == uuid.UUID(agent_id))
            .with_for_update()
        ).all()
        yield


def test_a_database_that_cannot_take_the_write_keeps_the_items(db, core, channel, provision):
    """The flush fails for want of the database (a lock held past the lock
    timeout): nothing is dropped; a newer value of the same key replaces the
    waiting one; the buffer's own timer writes it once the database takes
    it again (no flush called here after the failed one)."""
    a = provision.workspace(DEFAULT_SPEC).agent("main")
    b = provision.workspace(DEFAULT_SPEC).agent("main")
    _send_metadata(channel, a.auth_token, "first")
    _send_metadata(channel, b.auth_token, "b's")
    buffers = core.core.reports
    with _metadata_locked(db, a.id):
        # b's row is free on PostgreSQL: only a's item waits there.
        written = buffers.flush()
        assert buffers.pending() == 2 - written >= 1
        _send_metadata(channel, a.auth_token, "newest")
    wait_until(lambda: _value(db, a.id) == "newest", timeout=30, what="the retried flush")
    assert _value(db, b.id) == "b's"
    assert buffers.pending() == 0


def test_waiting_reports_are_bounded_by_key(db, provision) -> None:
    """One waiting item per key (newest value wins; stats add up their
    traffic deltas), and a new key past the bound is refused, not taken."""
    ws = provision.workspace(DEFAULT_SPEC)
    agent_id = uuid.UUID(ws.agent("main").id)
    now = dt.datetime.now(dt.UTC)

    async def scenario() -> None:
        metadata = MetadataWriter(db)
        metadata._max_keys = 2
        for value in ("1", "2", "3"):
            metadata.add(MetadataReport(agent_id, now, MetadataValue("load", value, "")))
        metadata.add(MetadataReport(agent_id, now, MetadataValue("other", "x", "")))
        assert metadata.pending() == 2
        with pytest.raises(Unavailable) as err:
            metadata.add(MetadataReport(agent_id, now, MetadataValue("third", "x", "")))
        assert err.value.message == BUFFER_FULL
        await asyncio.get_running_loop().run_in_executor(None, metadata.flush)

        stats = StatsWriter(db)
        row = {
            "created_at": now,
            "agent_id": agent_id,
            "workspace_id": uuid.UUID(ws.workspace_id),
            "user_id": uuid.UUID(ws.user_id),
            "connections_by_proto": {},
            "connection_count": 1,
            "connection_median_latency_ms": 0.0,
            "rx_packets": 1,
            "rx_bytes": 100,
            "tx_packets": 2,
            "tx_bytes": 200,
            "session_count_vscode": 0,
            "session_count_jetbrains": 0,
            "session_count_reconnecting_pty": 0,
            "session_count_ssh": 0,
            "session_counts": {},
        }
        stats.add(StatsReport(row, None))
        stats.add(StatsReport({**row, "connection_count": 5}, None))
        assert stats.pending() == 1
        await asyncio.get_running_loop().run_in_executor(None, stats.flush)

    asyncio.run(scenario())
    assert _value(db, str(agent_id)) == "3"
    (stat,) = _stats(db)[agent_id]
    assert (stat.rx_bytes, stat.tx_bytes, stat.rx_packets, stat.connection_count) == (
        200,
        400,
        2,
        5,
    )


def test_a_full_buffer_answers_unavailable(db, core, channel, provision) -> None:
    ws = provision.workspace(DEFAULT_SPEC)
    writer = core.core.reports.buffers[1]
    writer._max_keys = 0
    with pytest.raises(grpc.RpcError) as err:
        _send_metadata(channel, ws.agent("main").auth_token, "v")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == BUFFER_FULL
