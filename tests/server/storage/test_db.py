"""Engines and connections (server/storage/db.py): what an error carries,
and that the core never waits on the database's locks on its event loop."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import uuid

import pytest
import sqlalchemy as sa
from agentplane.workspaceagents.v1 import workspace_agents_pb2, workspace_agents_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.storage.prepared import Prepared
from server.storage.users import User
from tests.conftest import token_md, write_locked
from tests.rest_facade._live import wait_until

SECRET = "s3cret-value-in-a-parameter"


def test_errors_never_carry_the_parameters(db, clock) -> None:
    users = User.__table__
    row = {
        "id": uuid.uuid4(),
        "username": "dup",
        "email": SECRET,
        "role": "member",
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    with db.write() as conn:
        conn.execute(users.insert(), row)
    with pytest.raises(sa.exc.IntegrityError) as err, db.write() as conn:
        conn.execute(users.insert(), {**row, "username": "other"})
    assert SECRET not in str(err.value) and "hidden" in str(err.value)
    # The prepared statements wrap driver errors the same way.
    duplicate = Prepared(users.insert().values(row | {"username": "x"}).returning(users.c.id))
    with pytest.raises(sa.exc.IntegrityError) as err, db.write() as conn:
        duplicate.first(conn, {})
    assert SECRET not in str(err.value) and "hidden" in str(err.value)


# -- the core never waits on the database's locks -----------------------------


def _writer_thread_in(function: str) -> bool:
    """A database writer thread is running `function` (a call waiting on a
    lock there, off the event loop)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if not thread.name.startswith("db-writer"):
            continue
        frame = frames.get(thread.ident or -1)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
    return False


def test_a_locked_agent_holds_up_no_other_agent(db, core, channel, provision) -> None:
    """Another transaction holds agent A's row (PostgreSQL) or SQLite's write
    lock. A's own write waits for it on a writer thread; every call of
    another agent that does not need that lock completes while A's write
    still waits (before the lock is released) — on SQLite that is every
    read and the written-behind reports; on PostgreSQL every call, writes
    and log batches included. Not a timed assertion: the order is the test."""
    writer = core.core.log_writer
    a = provision.workspace()
    lane = writer.lane_for(uuid.UUID(a.agent("main").id))
    b = provision.workspace()
    while writer.lane_for(uuid.UUID(b.agent("main").id)) is not lane:
        b = provision.workspace()  # B shares A's log-writer lane (PostgreSQL)
    stub = agent_pb2_grpc.AgentStub(channel)
    md_a, md_b = token_md(a.agent("main").auth_token), token_md(b.agent("main").auth_token)
    for md in (md_a, md_b):  # first contact, written before the lock
        stub.UpdateStats(agent_pb2.UpdateStatsRequest(), metadata=md, timeout=30)
    State = agent_pb2.Lifecycle.State
    lifecycle = agent_pb2.UpdateLifecycleRequest(lifecycle=agent_pb2.Lifecycle(state=State.READY))
    logs = agent_pb2.BatchCreateLogsRequest(
        log_source_id=uuid.UUID(int=0).bytes, logs=[agent_pb2.Log(output="line")]
    )
    users = workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub(channel)
    reads = [
        lambda: stub.GetManifest(agent_pb2.GetManifestRequest(), metadata=md_b, timeout=30),
        lambda: stub.UpdateStats(
            agent_pb2.UpdateStatsRequest(stats=agent_pb2.Stats(rx_bytes=1)),
            metadata=md_b,
            timeout=30,
        ),
        lambda: stub.BatchUpdateMetadata(
            agent_pb2.BatchUpdateMetadataRequest(
                metadata=[
                    agent_pb2.Metadata(
                        key="load", result=agent_pb2.WorkspaceAgentMetadata.Result(value="1")
                    )
                ]
            ),
            metadata=md_b,
            timeout=30,
        ),
        lambda: users.GetWorkspaceAgent(
            workspace_agents_pb2.GetWorkspaceAgentRequest(id=b.agent("main").id),
            metadata=token_md(b.api_key),
            timeout=30,
        ),
    ]
    writes = [
        lambda: stub.UpdateLifecycle(lifecycle, metadata=md_b, timeout=30),
        lambda: stub.BatchCreateLogs(logs, metadata=md_b, timeout=30),
    ]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        with write_locked(db, a.agent("main").id):
            a_lifecycle = pool.submit(stub.UpdateLifecycle, lifecycle, metadata=md_a, timeout=60)
            a_logs = pool.submit(stub.BatchCreateLogs, logs, metadata=md_a, timeout=60)
            wait_until(
                lambda: _writer_thread_in("update_lifecycle"), timeout=30, what="A's write waits"
            )
            for call in reads:
                call()
            if db.is_postgres:
                for call in writes:
                    call()
                b_writes = []
            else:
                # SQLite's one write lock is held: B's writes wait for it too,
                # off the loop, while the reads above were answered.
                b_writes = [pool.submit(call) for call in writes]
            assert not a_lifecycle.done() and not a_logs.done()
            assert not any(w.done() for w in b_writes)
        # Released before the lock timeout: the waiting writes go through.
        assert a_lifecycle.result().state == State.READY
        assert not a_logs.result().log_limit_exceeded
        for w in b_writes:
            w.result()


def test_the_loops_lock_settings_stay_off_the_pool(db) -> None:
    """The loop's kept connection waits for no lock; when it goes back to the
    pool, pooled connections wait the usual time again."""
    import asyncio

    async def on_a_loop() -> None:
        with db.read() as conn:
            conn.exec_driver_sql("SELECT 1").close()
        db.close_pinned()

    asyncio.run(on_a_loop())
    for _ in range(db.engine.pool.size()):
        with db.engine.connect() as conn:
            if db.is_postgres:
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
            else:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_queued_writes_wait_for_a_lock_from_when_they_were_asked(db) -> None:
    """A write that sat in the writer queue behind one waiting on a lock has
    only what is left of its own lock wait (counted from the call), so a
    queue behind a held lock gives up together, not one wait after another."""
    import time

    from server.storage.db import LOCK_WAIT_SECONDS

    def lock_wait(conn) -> float:  # type: ignore[no-untyped-def]
        if not db.is_postgres:
            return conn.exec_driver_sql("PRAGMA busy_timeout").scalar() / 1000
        shown = conn.exec_driver_sql("SHOW lock_timeout").scalar()
        return float(shown[:-2]) / 1000 if shown.endswith("ms") else float(shown[:-1])

    def on_writer() -> float:
        with db.write() as conn:
            return lock_wait(conn)

    queued = db.writer.submit(db._within, time.monotonic() + 1.0, on_writer).result()
    fresh = db.writer.submit(db._within, time.monotonic() + LOCK_WAIT_SECONDS, on_writer).result()
    assert 0 < queued <= 1.0
    assert fresh == LOCK_WAIT_SECONDS
    with db.engine.connect() as conn:  # and the pool's default is back
        assert lock_wait(conn) == LOCK_WAIT_SECONDS
