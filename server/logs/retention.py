"""Log retention, Coder's ``--workspace-agent-logs-retention`` (default 7d,
0 = keep everything): the logs of an agent that is not in its workspace's
latest build and has not connected within the period (one that never
connected: created before it) are deleted. The latest build's logs are
always kept.

The core purges on start and then every PURGE_INTERVAL_SECONDS (Coder's
ten minutes), in chunks, each its own transaction, so no writer waits for
the whole purge. On PostgreSQL the purge runs on a worker thread (deleting
old rows locks nothing a writer needs) and an advisory lock lets one replica
purge at a time; on SQLite, whose one write lock every writer needs, it runs
on the core's loop between the other writes (see _purge_on_loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from server.clock import Clock
from server.storage import logs as log_store
from server.storage.db import Database

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 600.0
ROWS_PER_DELETE = 5000
# On SQLite the purge runs on the core's loop: steps short enough not to be
# felt there.
SQLITE_ROWS_PER_STEP = 500


def purge_steps(conn: sa.Connection, *, threshold: dt.datetime, chunk: int) -> Iterator[int]:
    """The purge of logs expired at `threshold`, one committed chunk per step
    (yields the rows it deleted); the caller decides what runs in between."""
    agents = log_store.get_agents_with_logs_expired(conn, threshold=threshold)
    conn.commit()
    for agent_id in agents:
        while True:
            with conn.begin():
                count = log_store.delete_oldest_workspace_agent_logs(
                    conn, agent_id=agent_id, limit=chunk
                )
            yield count
            if count < chunk:
                break


@contextlib.contextmanager
def purge_connection(db: Database) -> Iterator[sa.Connection | None]:
    """A connection to purge on; None when another replica is purging (on
    PostgreSQL an advisory lock, held for the block, lets one at a time)."""
    with db.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            yield conn
            return
        took = log_store.try_log_purge_lock(conn)
        conn.commit()
        if not took:
            yield None
            return
        try:
            yield conn
        finally:
            # If this fails the connection is gone, and the lock with it.
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.rollback()
                log_store.release_log_purge_lock(conn)
                conn.commit()


def purge_expired_logs(
    db: Database,
    *,
    now: dt.datetime,
    retention: dt.timedelta,
    halted: Callable[[], bool] = lambda: False,
    chunk: int = ROWS_PER_DELETE,
) -> int:
    """The whole purge on this thread; the rows deleted (0 when another
    replica is purging). ``halted`` is asked after each chunk (shutdown: the
    rest waits for the next purge)."""
    deleted = 0
    with purge_connection(db) as conn:
        if conn is None:
            return 0
        for count in purge_steps(conn, threshold=now - retention, chunk=chunk):
            deleted += count
            if halted():
                break
    return deleted


class LogRetention:
    """The core's periodic purge (started and stopped on its loop)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        retention: dt.timedelta | None,
        interval: float = PURGE_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._retention = retention
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._halt = threading.Event()  # seen by the purge between chunks
        # Rows deleted by the last purge; purges done, and an event set after
        # each (for whoever waits for one: tests).
        self.last_deleted = 0
        self.purges = 0
        self.purged = asyncio.Event()

    def start(self) -> None:
        if self._retention is None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="log-retention")

    async def stop(self) -> None:
        self._stop.set()
        self._halt.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        assert self._retention is not None
        while not self._stop.is_set():
            try:
                if self._db.is_postgres:
                    self.last_deleted = await asyncio.to_thread(
                        purge_expired_logs,
                        self._db,
                        now=self._clock.now(),
                        retention=self._retention,
                        halted=self._halt.is_set,
                    )
                else:
                    self.last_deleted = await self._purge_on_loop(self._clock.now())
            except Exception:  # a database outage: try again next time
                log.exception("purging expired agent logs failed")
            else:
                if self.last_deleted:
                    log.info("purged %d expired agent log lines", self.last_deleted)
            self.purges += 1
            self.purged.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    async def _purge_on_loop(self, now: dt.datetime) -> int:
        """SQLite: the core writes on its loop, so the purge does too, a small
        chunk at a time with a turn of the loop in between; no writer ever
        waits on SQLite's lock for it. (From a thread, writers polled the lock
        past the short gaps between chunks: about 100 ms each, measured.) A
        chunk that finds the lock taken elsewhere runs on the database's
        writer thread instead (Database.run_write): the loop never waits."""
        assert self._retention is not None
        with self._db.read() as conn:
            agents = log_store.get_agents_with_logs_expired(conn, threshold=now - self._retention)
        deleted = 0
        for agent_id in agents:
            while True:
                count = await self._db.run_write(
                    functools.partial(
                        log_store.delete_oldest_workspace_agent_logs,
                        agent_id=agent_id,
                        limit=SQLITE_ROWS_PER_STEP,
                    )
                )
                deleted += count
                if self._halt.is_set():
                    return deleted
                await asyncio.sleep(0)
                if count < SQLITE_ROWS_PER_STEP:
                    break
        return deleted
