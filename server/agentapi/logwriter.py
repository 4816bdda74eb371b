"""Group commit for BatchCreateLogs.

Log batches are the hottest write; per-transaction work (begin, budget
update, commit) is a large share of a small batch. Batches that are ready
together — those parsed while the previous group was written, plus any the
event loop has ready after one more turn — are written in one transaction.

Where the write runs depends on the database, by measurement
(bench/logs_ingest.py, 4 senders):
* SQLite: inline on the loop. The write is CPU in this process; a worker
  thread cost more in hand-offs and GIL contention than it saved
  (489 vs 640 batches/s). It takes SQLite's write lock without waiting
  (``Database.try_inline_write``): when another connection holds it, the
  group goes to the SQLite writer thread, which waits, and the loop keeps
  serving.
* PostgreSQL: on writer threads ("lanes", agents spread over them). The
  write is mostly waiting (round trips, the commit's WAL flush): inline it
  blocked the loop for all of it, and one writer made every agent's commit
  wait for the previous one's flush. A group claims its agents' rows with
  SKIP LOCKED: a batch whose agent row another transaction holds leaves the
  group at once (it would have held up every other agent of the group) and
  is written on its own on the database's writer threads, where it may
  wait; the agent's later batches follow it there until it is done, so
  each agent's batches keep their order.

The writer keeps one connection of its own instead of checking one out of
the pool per group (on PostgreSQL each checkout pre-pings: a round trip).
If a group fails, the connection is dropped when it broke, and its batches
are retried one transaction each on pooled connections, so one bad batch
or a restarted database cannot fail the others.

Each batch keeps its own budget check and overflow outcome, and a caller is
answered only after the transaction holding its batch has committed:
acknowledged means stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from server.agentapi.logs import LOCKED, NewBatch, Outcome, write_batches
from server.clock import Clock
from server.errors import Unavailable, database_busy
from server.storage import logs as log_store
from server.storage.db import Database

SHUTTING_DOWN = "agentplane is shutting down; send the logs again."
# Agents known to have the built-in External source (skips a read per batch).
_MAX_KNOWN_SOURCES = 100_000


@dataclasses.dataclass
class _Job:
    batch: NewBatch
    future: asyncio.Future[bool | None]


# What a group returns per job: an outcome, or the error that job failed with.
_Result = Outcome | BaseException


# Writer lanes on PostgreSQL: agents are spread over this many writers, each
# with its own connection and thread, so commits of different agents overlap
# (each waits for its WAL flush) instead of queueing behind one another.
POSTGRES_LANES = 4
# How long a lane's group waits for an agent row another transaction holds.
LOCK_TIMEOUT_MS = 2000


class LogWriter:
    """Routes each agent's batches to one lane: per-agent order holds (an
    agent always lands on the same lane), and lanes never lock each other's
    agent rows. SQLite has one lane, inline on the loop."""

    def __init__(
        self, db: Database, clock: Clock, *, limit_bytes: int, lanes: int | None = None
    ) -> None:
        known: set[tuple[uuid.UUID, uuid.UUID]] = set()
        count = (lanes or POSTGRES_LANES) if db.is_postgres else 1
        # Agents with batches written on their own (their row was locked):
        # how many are in flight (on the loop only).
        diverted: dict[uuid.UUID, int] = {}
        self._lanes = [
            _Lane(
                db,
                clock,
                limit_bytes=limit_bytes,
                known=known,
                threaded=db.is_postgres,
                diverted=diverted,
            )
            for _ in range(count)
        ]

    def lane_for(self, agent_id: uuid.UUID) -> _Lane:
        return self._lanes[agent_id.int % len(self._lanes)]

    async def submit(self, batch: NewBatch) -> bool | None:
        """Stores one batch; True when the limit refused it, None when its
        token_hash no longer authenticates as the agent. Returns once the
        transaction holding it has committed."""
        return await self.lane_for(batch.agent_id).submit(batch)

    async def drain(self, timeout: float = 10.0) -> None:
        """Waits (bounded) for batches written on their own (at shutdown)."""
        tasks = {task for lane in self._lanes for task in lane._tasks}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()


class _Lane:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        limit_bytes: int,
        known: set[tuple[uuid.UUID, uuid.UUID]],
        threaded: bool,
        diverted: dict[uuid.UUID, int],
    ) -> None:
        self._db = db
        self._diverted = diverted
        self._clock = clock
        self._limit = limit_bytes
        self._pending: list[_Job] = []
        self._drain: asyncio.Task[None] | None = None
        # Shared by the lanes; set operations are atomic under the GIL.
        self._known = known
        self._conn: sa.Connection | None = None
        self._closed = False
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-writer") if threaded else None
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Returns the writer's connection and stops its thread (at shutdown,
        after the server has stopped taking calls and its loop has stopped
        or finished every drain). Later batches are refused, not queued."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _connection(self) -> sa.Connection:
        if self._closed:
            raise Unavailable(SHUTTING_DOWN)
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = self._conn = self._db.engine.connect()
            if self._db.is_postgres:
                # A group holds its agents' rows while it claims the next; if
                # one of those is locked elsewhere, give up (the batches are
                # retried one by one) rather than hold the others for long:
                # the core's loop may be waiting to write one of them.
                conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                conn.commit()
        return conn

    async def submit(self, batch: NewBatch) -> bool | None:
        if self._closed:
            raise Unavailable(SHUTTING_DOWN)
        loop = asyncio.get_running_loop()
        job = _Job(batch, loop.create_future())
        if self._diverted.get(batch.agent_id):
            # Behind an earlier batch of this agent that waits on its row.
            self._divert(job)
            return await asyncio.shield(job.future)
        self._pending.append(job)
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._drain_all(), name="log-writer")
        # Shielded: a caller that goes away does not cancel its batch, which
        # may already be in a transaction with others.
        return await asyncio.shield(job.future)

    async def _drain_all(self) -> None:
        group: list[_Job] = []
        try:
            while self._pending and not self._closed:
                # One turn of the loop lets requests that are already parsed
                # join this group.
                await asyncio.sleep(0)
                group, self._pending = self._pending, []
                # A fixed lock order (agent rows) across replicas: no deadlocks.
                group.sort(key=lambda job: job.batch.agent_id)
                now = self._clock.now()
                outcomes = await self._write_group_off_the_loop(group, now)
                for job, outcome in zip(group, outcomes, strict=True):
                    if job.future.done():
                        continue
                    if outcome == LOCKED:
                        self._divert(job)
                    elif isinstance(outcome, BaseException):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)  # type: ignore[arg-type]
                group = []
        finally:
            # Whatever stopped the drain (cancellation at shutdown, a closed
            # executor), no caller may be left waiting: an unanswered batch
            # was not acknowledged, and the agent sends it again.
            for job in (*group, *self._pending):
                if not job.future.done():
                    job.future.set_exception(
                        Unavailable("agentplane could not store the logs; send them again.")
                    )
            if group or self._pending:
                self._pending = []

    async def _write_group_off_the_loop(self, group: list[_Job], now: dt.datetime) -> list[_Result]:
        """PostgreSQL: on the lane's thread. SQLite: on the loop if its write
        lock is free now, else on the database's writer thread."""
        if self._executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._write_group, group, now
            )
        try:
            done, results = self._db.try_inline_write(
                lambda conn: list(self._write(conn, group, now))
            )
        except Exception:
            done, results = False, None  # a bad batch: the writer thread sorts it out
        if done:
            assert results is not None
            self._remember(group, results)
            return results  # type: ignore[return-value]
        return await self._db.offload(self._write_group, group, now)

    def _write_group(self, group: list[_Job], now: dt.datetime) -> list[_Result]:
        """The group in one transaction; if it fails, each batch in its own
        (one bad batch or a restarted database must not fail the others) —
        unless it gave up waiting for a lock: then so does every batch (each
        alone would only wait again)."""
        try:
            # SQLite (the writer thread): a pooled connection, whose lock
            # wait counts from the call (Database.offload); PostgreSQL: the
            # lane's own.
            with (
                self._db.transaction(self._connection())
                if self._db.is_postgres
                else self._db.write()
            ) as conn:
                results: list[_Result] = list(self._write(conn, group, now))
        except Exception as err:
            if database_busy(err):
                return [err] * len(group)
            self._drop_if_broken()
            return [self._write_alone(job, now) for job in group]
        self._remember(group, results)
        return results

    def _divert(self, job: _Job) -> None:
        """Writes the job on its own on the database's writer threads, where
        it may wait for its agent's row; the agent's later batches follow it
        there (counted in ``_diverted``) so its batches keep their order."""
        agent_id = job.batch.agent_id
        self._diverted[agent_id] = self._diverted.get(agent_id, 0) + 1

        async def write() -> None:
            result: _Result = Unavailable("agentplane could not store the logs; send them again.")
            try:
                result = await self._db.offload(
                    self._write_alone, job, self._clock.now(), wait=True, key=agent_id
                )
            finally:
                left = self._diverted[agent_id] - 1
                if left:
                    self._diverted[agent_id] = left
                else:
                    del self._diverted[agent_id]
                if not job.future.done():
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)  # type: ignore[arg-type]

        task = asyncio.get_running_loop().create_task(write(), name="log-writer-diverted")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated):
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()

    def _write_alone(self, job: _Job, now: dt.datetime, *, wait: bool = False) -> _Result:
        """One batch in its own transaction on a pooled connection; ``wait``:
        for its agent's row too (up to the lock timeout), instead of LOCKED."""
        try:
            with self._db.write() as conn:
                (result,) = self._write(conn, [job], now, skip_locked=not wait)
        except Exception as err:
            return err
        self._remember([job], [result])
        return result

    def _write(
        self,
        conn: sa.Connection,
        jobs: list[_Job],
        now: dt.datetime,
        *,
        skip_locked: bool = True,
    ) -> list[Outcome]:
        return write_batches(
            self._db,
            conn,
            [job.batch for job in jobs],
            now=now,
            limit_bytes=self._limit,
            source_known=lambda batch: (batch.agent_id, batch.source_id) in self._known,
            skip_locked=skip_locked and self._db.is_postgres,
        )

    def _remember(self, group: list[_Job], results: list[_Result]) -> None:
        if len(self._known) > _MAX_KNOWN_SOURCES:
            self._known.clear()
        for job, result in zip(group, results, strict=True):
            batch = job.batch
            if result is False and batch.source_id == log_store.EXTERNAL_SOURCE_ID:
                self._known.add((batch.agent_id, batch.source_id))
