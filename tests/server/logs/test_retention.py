"""Log retention (Coder's --workspace-agent-logs-retention): which agents'
logs go, in chunks, one replica at a time, and the core's periodic purge."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid

import pytest
import sqlalchemy as sa

from server.logs.retention import LogRetention, purge_expired_logs
from server.storage import logs as log_store
from server.storage.agents import WorkspaceAgent
from tests.server.logs.test_read import _store_silently, send

WEEK = dt.timedelta(days=7)
_AGENTS = WorkspaceAgent.__table__
_LOGS = log_store.WorkspaceAgentLog.__table__


def _count(db, agent_id: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(_LOGS.c.agent_id == uuid.UUID(agent_id))
        ).scalar_one()


def _set(db, agent_id: str, **values) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.update(_AGENTS).where(_AGENTS.c.id == uuid.UUID(agent_id)).values(**values))


def _expired_setup(channel, provision, db, core, clock):
    """Five agents with logs; returns (agent id -> lines it keeps, lines to purge)."""
    now = clock.now()
    old, recent = now - WEEK - dt.timedelta(hours=1), now - WEEK + dt.timedelta(hours=1)
    # An agent of an older build, last connected before the threshold: purged.
    ws = provision.workspace()
    replaced = ws.agent("main").id
    send(channel, ws.agent("main").auth_token, *[f"old {i}" for i in range(20)])
    latest = next(a for a in provision.rebuild(ws).agents if a.name == "main")
    # The latest build's agent, however old its last connection: kept.
    send(channel, latest.auth_token, "latest")
    # An older build's agent that connected within the period: kept.
    ws2 = provision.workspace()
    active = ws2.agent("main").id
    send(channel, ws2.agent("main").auth_token, "active")
    provision.rebuild(ws2)
    # An older build's agent that never connected, created before it: purged.
    ws3 = provision.workspace()
    silent = ws3.agent("main").id
    _store_silently(db, core, silent, ["never connected"])
    provision.rebuild(ws3)
    for agent_id, connected in ((replaced, old), (latest.id, old), (active, recent)):
        _set(db, agent_id, last_connected_at=connected)
    _set(db, silent, last_connected_at=None, created_at=old)
    return {replaced: 0, latest.id: 1, active: 1, silent: 0}, 21


def test_purge_deletes_only_expired_agents_logs(channel, provision, db, core, clock) -> None:
    keeps, purged = _expired_setup(channel, provision, db, core, clock)
    # Chunks of 7: the 20 lines of one agent take three transactions.
    assert purge_expired_logs(db, now=clock.now(), retention=WEEK, chunk=7) == purged
    assert {agent_id: _count(db, agent_id) for agent_id in keeps} == keeps
    assert purge_expired_logs(db, now=clock.now(), retention=WEEK) == 0


def test_a_halted_purge_stops_between_chunks(channel, provision, db, core, clock) -> None:
    keeps, purged = _expired_setup(channel, provision, db, core, clock)
    # Asked after each chunk; the first answer stops it.
    assert (
        purge_expired_logs(db, now=clock.now(), retention=WEEK, halted=lambda: True, chunk=5) == 5
    )
    # The rest goes with the next purge.
    assert purge_expired_logs(db, now=clock.now(), retention=WEEK) == purged - 5
    assert {agent_id: _count(db, agent_id) for agent_id in keeps} == keeps


def test_one_replica_purges_at_a_time(channel, provision, db, core, clock) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite is served by one process")
    _keeps, purged = _expired_setup(channel, provision, db, core, clock)
    with db.engine.connect() as other:
        assert other.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": log_store.PURGE_LOCK_KEY}
        ).scalar()
        assert purge_expired_logs(db, now=clock.now(), retention=WEEK) == 0
        other.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": log_store.PURGE_LOCK_KEY})
        other.commit()
    assert purge_expired_logs(db, now=clock.now(), retention=WEEK) == purged


def test_the_core_purges_on_start_and_stops(channel, provision, db, core, clock) -> None:
    keeps, purged = _expired_setup(channel, provision, db, core, clock)

    async def run() -> None:
        off = LogRetention(db, clock, retention=None)
        off.start()
        await off.stop()
        assert off.purges == 0
        retention = LogRetention(db, clock, retention=WEEK, interval=3600)
        retention.start()
        await asyncio.wait_for(retention.purged.wait(), 30)
        assert retention.last_deleted == purged
        # Stopping does not wait out the interval.
        await asyncio.wait_for(retention.stop(), 30)
        assert retention.purges == 1

    asyncio.run(run())
    assert {agent_id: _count(db, agent_id) for agent_id in keeps} == keeps


def test_on_sqlite_the_purge_takes_turns_with_the_loop(
    channel, provision, db, core, clock, monkeypatch
) -> None:
    """SQLite's writers run on the core's loop, so the purge runs there too,
    a chunk per turn: between two chunks, everything else on the loop runs."""
    if db.is_postgres:
        pytest.skip("PostgreSQL purges on a worker thread")
    from server.logs import retention as retention_module

    _keeps, purged = _expired_setup(channel, provision, db, core, clock)
    events: list[str] = []
    delete = retention_module.log_store.delete_oldest_workspace_agent_logs

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("chunk")
        return delete(*args, **kwargs)

    monkeypatch.setattr(retention_module.log_store, "delete_oldest_workspace_agent_logs", recorded)
    monkeypatch.setattr(retention_module, "SQLITE_ROWS_PER_STEP", 5)

    async def run() -> None:
        retention = LogRetention(db, clock, retention=WEEK, interval=3600)

        async def other_work() -> None:
            while not retention.purged.is_set():
                events.append("other")
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        retention.start()
        await asyncio.wait_for(retention.purged.wait(), 30)
        await other
        await retention.stop()
        assert retention.last_deleted == purged

    asyncio.run(run())
    chunks = [i for i, event in enumerate(events) if event == "chunk"]
    assert len(chunks) >= purged // 5
    assert all(b - a > 1 for a, b in itertools.pairwise(chunks))
