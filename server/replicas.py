"""The replica registry: every ``agentplane server`` process registers
itself (its id is the ``last_connected_replica_id`` agents' rows carry) with
the gRPC address other replicas reach it at, heartbeats every 2 s, and is
judged dead by the others after 3 missed heartbeats, which then remove its
row and, by cascade, everything it owned (its tailnet peers and tunnels).

Uses: the tailnet coordinator (peers of a dead replica are reported LOST),
and whatever must reach the replica holding a connection (``live()`` and
``address_of()``).

Database work runs on worker threads, so a slow database never stalls the
event loop; callbacks (``on_dead``, ``on_reregistered``) run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable

from server.clock import Clock
from server.storage import replicas as replica_store
from server.storage.db import BackgroundWork, Database
from server.storage.replicas import ReplicaRow

log = logging.getLogger(__name__)

# Coder's pgcoord: HeartbeatPeriod 2 s, MissedHeartbeats 3.
HEARTBEAT_SECONDS = 2.0
MISSED_HEARTBEATS = 3


class ReplicaRegistry:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        replica_id: uuid.UUID,
        address: str,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self.replica_id = replica_id
        self.address = address
        self.heartbeat = dt.timedelta(seconds=heartbeat_seconds)
        self.expiry = self.heartbeat * MISSED_HEARTBEATS
        # Other replicas are checked twice per heartbeat, so a death is seen
        # at most half a period after the third missed beat.
        self._check_seconds = heartbeat_seconds / 2
        self._live: dict[uuid.UUID, ReplicaRow] = {}
        self._dead: set[uuid.UUID] = set()
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._on_dead: list[Callable[[uuid.UUID], None]] = []
        self._on_reregistered: list[Callable[[], None]] = []
        self._work = BackgroundWork()

    # -- subscriptions -------------------------------------------------------
    def on_dead(self, callback: Callable[[uuid.UUID], None]) -> None:
        """``callback(replica_id)`` on the loop when another replica dies."""
        self._on_dead.append(callback)

    def on_reregistered(self, callback: Callable[[], None]) -> None:
        """``callback()`` when this replica found its row removed (others
        judged it dead during a stall) and registered again: what it owned
        must be written again."""
        self._on_reregistered.append(callback)

    # -- queries ---------------------------------------------------------------
    def live(self) -> list[ReplicaRow]:
        """The replicas alive at the last check (this one included), oldest
        first. Refreshed every second; ``await refresh()`` for a fresh view."""
        return list(self._live.values())

    def address_of(self, replica_id: uuid.UUID) -> str | None:
        row = self._live.get(replica_id)
        return row.address if row is not None else None

    def is_dead(self, replica_id: uuid.UUID) -> bool:
        return replica_id in self._dead

    @property
    def healthy(self) -> bool:
        """False after MISSED_HEARTBEATS consecutive failed heartbeats: the
        others consider this replica dead by now."""
        return self._failures < MISSED_HEARTBEATS

    # -- life ------------------------------------------------------------------
    def _now(self) -> dt.datetime | None:
        # PostgreSQL judges every replica by its own clock.
        return None if self._db.is_postgres else self._clock.now()

    async def start(self) -> None:
        await self._work.run(self._register)
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="replica-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._work.drain()
        try:
            await self._work.run(self._deregister)
        except Exception:
            log.warning("could not remove this replica's registration", exc_info=True)

    def _register(self) -> None:
        with self._db.engine.begin() as conn:
            replica_store.upsert_replica(
                conn,
                replica_id=self.replica_id,
                address=self.address,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                now=self._now(),
            )

    def _deregister(self) -> None:
        with self._db.engine.begin() as conn:
            replica_store.delete_replicas(conn, replica_ids=[self.replica_id])

    def _beat(self) -> bool:
        with self._db.engine.begin() as conn:
            return replica_store.heartbeat(conn, replica_id=self.replica_id, now=self._now())

    def _read(self) -> list[ReplicaRow]:
        with self._db.engine.begin() as conn:
            return replica_store.list_replicas(conn, expiry=self.expiry, now=self._now())

    def _remove_dead(self, ids: list[uuid.UUID]) -> None:
        with self._db.engine.begin() as conn:
            # Only rows still stale: a replica that came back in between
            # keeps its registration.
            stale = [
                r.id
                for r in replica_store.list_replicas(conn, expiry=self.expiry, now=self._now())
                if r.id in ids and not r.alive
            ]
            replica_store.delete_replicas(conn, replica_ids=stale)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat.total_seconds()
        while True:
            await asyncio.sleep(max(0.0, min(self._check_seconds, next_beat - loop.time())))
            if loop.time() >= next_beat:
                next_beat += self.heartbeat.total_seconds()
                await self._heartbeat_once()
            try:
                await self.refresh()
            except Exception:
                log.warning("could not read the replica registry", exc_info=True)

    async def _heartbeat_once(self) -> None:
        try:
            present = await self._work.run(self._beat)
            if not present:
                log.warning("this replica's registration was removed; registering again")
                await self._work.run(self._register)
                for callback in self._on_reregistered:
                    _safely(callback)
            self._failures = 0
        except Exception:
            self._failures += 1
            log.warning(
                "replica heartbeat failed (%d in a row)",
                self._failures,
                exc_info=self._failures == 1,
            )

    async def refresh(self) -> list[ReplicaRow]:
        """Reads the registry; replicas that stopped beating (or whose row
        vanished) are reported dead once, and their rows removed."""
        rows = await self._work.run(self._read)
        seen = {r.id: r for r in rows}
        died: list[uuid.UUID] = []
        for row in rows:
            if row.id == self.replica_id:
                continue
            if not row.alive and row.id not in self._dead:
                died.append(row.id)
        for replica_id in list(self._live):
            if replica_id != self.replica_id and replica_id not in seen:
                died.append(replica_id)
        self._live = {r.id: r for r in rows if r.alive or r.id == self.replica_id}
        # A replica that beats again is alive again.
        self._dead = {d for d in self._dead if d in seen and not seen[d].alive}
        self._dead.update(died)
        if died:
            log.warning("replicas %s stopped heartbeating; treating them as dead", died)
            for replica_id in died:
                for callback in self._on_dead:
                    _safely(callback, replica_id)
            stale = [d for d in died if d in seen]
            if stale:
                try:
                    await self._work.run(self._remove_dead, stale)
                except Exception:
                    log.warning("could not remove dead replicas' rows", exc_info=True)
        return self.live()


def _safely(callback: Callable[..., None], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("replica registry callback failed")
