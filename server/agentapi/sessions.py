"""An agent's live session with this server process, written as Coder's
connection monitor writes it: ``first_connected_at`` once,
``last_connected_at`` refreshed, ``disconnected_at`` cleared while the agent
is in contact, and set when its stream ends or it falls silent; plus
``last_connected_replica_id`` (this process's id in the replica registry,
``server/replicas.py``).

* ``touch(caller)`` — every agent RPC (or ``seen(agent_id)``, for a call
  authenticated without re-reading the agent's row). It writes only when the row is not
  already "connected here, refreshed within the last few seconds", so an
  agent's steady stream of calls costs a dict update, not a write per call.
* ``hold(caller)`` — around a stream the agent keeps open (``me/reinit``,
  the external-auth long-poll, the tailnet Coordinate stream, the agent's
  tunnel, its ``me/rpc`` session). While held the session is refreshed on a
  timer, in batches off the event loop; when the last hold ends the agent is
  disconnected at once.
* ``sweep()`` — the timer: refreshes held sessions and disconnects agents
  that have been silent for longer than the inactivity timeout.

Timestamps come from the injected clock; the timer itself runs on the event
loop (real time), so tests drive ``sweep()`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from server.clock import Clock, as_utc
from server.storage import agentstatus
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

log = logging.getLogger(__name__)

# Held sessions refreshed per statement batch.
REFRESH_BATCH = 500


@dataclasses.dataclass
class _Session:
    last_seen: dt.datetime
    last_written: dt.datetime | None = None
    holds: int = 0
    # When the row last said (or this process wrote) "connected here".
    confirmed: dt.datetime | None = None


class AgentSessions:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        inactive_timeout: dt.timedelta,
        replica_id: uuid.UUID | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._inactive = inactive_timeout
        # Coder refreshes every AgentConnectionUpdateFrequency (half the
        # inactivity timeout); a third of that keeps a live agent well clear
        # of the timeout even when a refresh is late.
        self._refresh = max(inactive_timeout / 6, dt.timedelta(seconds=1))
        self.replica_id = replica_id or uuid.uuid4()
        self._lock = threading.Lock()
        self._sessions: dict[uuid.UUID, _Session] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Writes running as tasks of their own (kept so they are not lost).
        self._tasks: set[asyncio.Task[None]] = set()
        # A batched refresh of held sessions is being written.
        self._refreshing = False

    @property
    def refresh_interval(self) -> dt.timedelta:
        return self._refresh

    # -- contact ---------------------------------------------------------------
    async def touch(self, caller: AgentInWorkspace) -> None:
        agent = caller.agent
        now = self._clock.now()
        with self._lock:
            session = self._sessions.get(agent.id)
            if session is None:
                session = self._sessions[agent.id] = _Session(last_seen=now)
            else:
                session.last_seen = now
        # The timer keeps running while any session is tracked (cheap check).
        self._ensure_timer()
        if self._is_fresh(agent, now):
            with self._lock:
                session.confirmed = as_utc(agent.last_connected_at)  # type: ignore[attr-defined]
            return
        if await self._db.try_write(self._connected(agent.id, now), key=agent.id):
            self._written(agent.id, now)

    def seen(self, agent_id: uuid.UUID) -> bool:
        """Contact from an agent whose row was not re-read for this call (it
        was authenticated from a recent lookup). True when that is all it
        takes: within the refresh interval this process has confirmed the
        agent connected here (from its row, or by writing it) and has not
        disconnected it since. False: the caller re-reads the row and calls
        touch(), which decides about writes. What this cannot see is another
        replica's write (it disconnected the agent after a stream there
        ended); the caller re-reads the row at least every second
        (Authenticator.RECENT_AGENT_SECONDS), which bounds that staleness."""
        now = self._clock.now()
        with self._lock:
            session = self._sessions.get(agent_id)
            if session is None or session.confirmed is None:
                return False
            if now - session.confirmed >= self._refresh:
                return False
            session.last_seen = now
        return True

    def _is_fresh(self, agent: object, now: dt.datetime) -> bool:
        """The row already says: connected, here, refreshed recently."""
        if (
            agent.first_connected_at is None  # type: ignore[attr-defined]
            or agent.disconnected_at is not None  # type: ignore[attr-defined]
            or agent.last_connected_replica_id != self.replica_id  # type: ignore[attr-defined]
        ):
            return False
        last = as_utc(agent.last_connected_at)  # type: ignore[attr-defined]
        return last is not None and now - last < self._refresh

    @contextlib.contextmanager
    def hold(self, caller: AgentInWorkspace, *, stream: bool = True) -> Iterator[None]:
        """Keeps the agent connected while a call is open. When the last
        *stream* ends the agent is disconnected at once (Coder's connection
        closing); a long-poll (``stream=False``) only counts as contact."""
        agent_id = caller.agent.id
        # The authenticator touched it already for this call.
        with self._lock:
            session = self._sessions.setdefault(agent_id, _Session(last_seen=self._clock.now()))
            session.holds += 1
        try:
            yield
        finally:
            now = self._clock.now()
            with self._lock:
                session = self._sessions.get(agent_id)
                last = session is not None and session.holds <= 1
                if session is not None:
                    session.holds -= 1
                    session.last_seen = now
                    if last and stream:
                        del self._sessions[agent_id]
            if last and stream:
                self._disconnect(agent_id, seen_until=now, now=now)

    # -- the timer ---------------------------------------------------------------
    def sweep(self) -> None:
        """Refreshes held sessions that are due; disconnects silent ones."""
        now = self._clock.now()
        refresh: list[uuid.UUID] = []
        silent: list[tuple[uuid.UUID, dt.datetime]] = []
        with self._lock:
            for agent_id, session in list(self._sessions.items()):
                if session.holds > 0:
                    if session.last_written is None or now - session.last_written >= self._refresh:
                        refresh.append(agent_id)
                elif now - session.last_seen > self._inactive:
                    silent.append((agent_id, session.last_seen))
                    del self._sessions[agent_id]
        if refresh:
            self._refresh_held(refresh, now)
        for agent_id, last_seen in silent:
            self._disconnect(agent_id, seen_until=last_seen, now=now)

    def _ensure_timer(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on the core's loop (a direct call in a test)
        self._timer = loop.call_later(self._refresh.total_seconds(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.sweep()
        except Exception:
            log.exception("agent session sweep failed; retrying on the next tick")
        with self._lock:
            pending = bool(self._sessions)
        if pending:
            self._ensure_timer()

    async def drain(self, timeout: float = 5.0) -> None:
        """Waits (bounded) for the writes running as tasks (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def active_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def status_counts(self) -> dict[str, int]:
        """This replica's tracked agents by connection status as Coder would
        derive it now: connected while held or heard from within the
        inactivity timeout, disconnected (until the sweep writes it) after."""
        now = self._clock.now()
        counts = {"connected": 0, "disconnected": 0}
        with self._lock:
            for session in self._sessions.values():
                live = session.holds > 0 or now - session.last_seen <= self._inactive
                counts["connected" if live else "disconnected"] += 1
        return counts

    # -- writes ------------------------------------------------------------------
    def _refresh_held(self, agent_ids: list[uuid.UUID], now: dt.datetime) -> None:
        """Refreshes held sessions in batches, on a writer thread when there
        is a loop (thousands of agents hold tunnels: one write each on the
        loop stalled every call for a second per sweep)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_connected_many(agent_ids, now)
            return
        if self._refreshing:
            return  # the previous sweep's batch is still being written
        self._refreshing = True

        async def refresh() -> None:
            try:
                await self._db.offload(self._write_connected_many, agent_ids, now)
            except Exception:
                log.warning("refreshing held agent sessions failed", exc_info=True)
            finally:
                self._refreshing = False

        task = loop.create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_connected_many(self, agent_ids: list[uuid.UUID], now: dt.datetime) -> None:
        for start in range(0, len(agent_ids), REFRESH_BATCH):
            batch = agent_ids[start : start + REFRESH_BATCH]
            try:
                # Autocommit: each row's update commits on its own, so no row
                # lock is held while the next rows are written.
                with self._db.engine.connect() as conn:
                    agentstatus.mark_connected_many(
                        conn.execution_options(isolation_level="AUTOCOMMIT"),
                        agent_ids=batch,
                        replica_id=self.replica_id,
                        now=now,
                    )
            except Exception:
                # One agent's failed write (its row locked past the lock
                # timeout, the database away) does not cost the others theirs.
                for agent_id in batch:
                    try:
                        with self._db.write() as conn:
                            self._connected(agent_id, now)(conn)
                    except Exception:
                        log.warning(
                            "could not refresh agent %s as connected", agent_id, exc_info=True
                        )
                        continue
                    self._written(agent_id, now)
                continue
            for agent_id in batch:
                self._written(agent_id, now)

    def _connected(self, agent_id: uuid.UUID, now: dt.datetime) -> Callable[[sa.Connection], None]:
        return functools.partial(
            agentstatus.mark_connected, agent_id=agent_id, replica_id=self.replica_id, now=now
        )

    def _written(self, agent_id: uuid.UUID, now: dt.datetime) -> None:
        with self._lock:
            session = self._sessions.get(agent_id)
            if session is not None:
                session.last_written = session.confirmed = now

    def _disconnect(
        self, agent_id: uuid.UUID, *, seen_until: dt.datetime, now: dt.datetime
    ) -> None:
        """Records the disconnection; when that write cannot be done, the
        agent is tracked again as seen at `seen_until`, so a later sweep
        retries it (its session is already gone: nothing else would)."""

        def retry_later() -> None:
            log.warning(
                "could not record agent %s as disconnected; a later sweep retries", agent_id
            )
            with self._lock:
                self._sessions.setdefault(agent_id, _Session(last_seen=seen_until))
            self._ensure_timer()

        write = functools.partial(
            agentstatus.mark_disconnected,
            agent_id=agent_id,
            replica_id=self.replica_id,
            seen_until=seen_until,
            now=now,
        )
        self._in_background(write, agent_id, done=lambda: None, failed=retry_later)

    def _in_background(
        self,
        write: Callable[[sa.Connection], Any],
        agent_id: uuid.UUID,
        *,
        done: Callable[[], None],
        failed: Callable[[], None],
    ) -> None:
        """On the loop: a task that tries the write without waiting for a
        lock. Off any loop: the write, now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                with self._db.write() as conn:
                    write(conn)
            except Exception:
                failed()
            else:
                done()
            return

        async def attempt() -> None:
            try:
                ok = await self._db.try_write(write, key=agent_id)
            except Exception:
                log.debug("agent session write failed", exc_info=True)
                ok = False
            (done if ok else failed)()

        task = loop.create_task(attempt())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
