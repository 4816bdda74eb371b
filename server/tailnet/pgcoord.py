"""Coordination across replicas on PostgreSQL (Coder's pgcoord, reshaped):
peers on different ``agentplane server`` processes see each other exactly
as on one replica.

Each replica keeps its own peers in memory (``Coordinator``) and mirrors
them into ``tailnet_peers`` / ``tailnet_tunnels`` with its replica id, then
publishes the peer's id (``TAILNET_PEER``: ``"<peer>/<replica>"``) in the
same transaction. Every other replica hears the id on its one ``LISTEN``
connection (``server/pubsub.py``) and, if one of its peers shares a tunnel
with that peer (or the id is one of its own peers, to which another
replica's peer opened a tunnel), re-reads the rows and hands the news to
its coordinator, which tells its peers as it would about a local change.

* One writer task applies this replica's changes in order, many per
  transaction; one reader task re-reads what the notifications point at,
  many ids per query, and applies the answers in order — so what a replica
  believes only moves forward.
* A replica that stops heartbeating (``server/replicas.py``: 3 missed
  beats of 2 s) is dead: its peers are LOST to ours, the tunnels they
  opened go, and its rows are removed (cascade from its registry row).
* A new peer first reads the tunnels other replicas' peers opened to it,
  so its ``init`` batch is complete.
* Everything is also re-read every 30 s and whenever the listener lost its
  connection, so a lost notification costs latency, never a peer.
* ``ready_for_handshake`` to a peer on another replica travels as a
  notification only (``TAILNET_HANDSHAKE``); there is nothing to store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from server.pubsub import TAILNET_HANDSHAKE, TAILNET_PEER
from server.replicas import ReplicaRegistry
from server.storage import tailnet as store
from server.storage.db import BackgroundWork, Database
from server.storage.tailnet import STATUS_GONE, STATUS_LOST, STATUS_OK, Binding
from server.tailnet.coordinator import Coordinator

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0
# lost/gone rows stay this long for slower replicas to read, then go.
SETTLED_GRACE_SECONDS = 30.0
CLEANUP_SECONDS = 10.0
# A new peer waits at most this long for other replicas' tunnels to it
# before its init batch goes out with what is known.
PREPARE_TIMEOUT_SECONDS = 5.0
_MAX_RETRY_SECONDS = 10.0
_IDS_PER_QUERY = 1000


def _chunks(ids: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    for i in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[i : i + _IDS_PER_QUERY]


def best_binding(rows: list[Binding]) -> Binding | None:
    """A peer's row to believe among several replicas' (it may have moved):
    a connected one beats a lost or gone one, then the newest wins."""
    best: Binding | None = None
    for row in rows:
        if best is None:
            best = row
        elif (row.status == STATUS_OK) != (best.status == STATUS_OK):
            if row.status == STATUS_OK:
                best = row
        elif row.updated_at > best.updated_at:
            best = row
    return best


class PgMirror:
    """Implements ``coordinator.Mirror``; started and closed with the core."""

    def __init__(self, db: Database, coordinator: Coordinator, registry: ReplicaRegistry) -> None:
        self._db = db
        self._coordinator = coordinator
        self._registry = registry
        self.replica_id = registry.replica_id
        self._ops: list[tuple[Any, ...]] = []
        self._ops_ready = asyncio.Event()
        self._dirty: set[uuid.UUID] = set()
        self._dirty_ready = asyncio.Event()
        self._waiting: list[tuple[uuid.UUID, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._unlisten: list[Any] = []
        self._work = BackgroundWork()
        self.reads = 0
        self.writes = 0

    # -- life --------------------------------------------------------------------
    async def start(self) -> None:
        self._coordinator.mirror = self
        pubsub = self._db.pubsub
        self._unlisten = [
            pubsub.listen(TAILNET_PEER, self._heard_peer),
            pubsub.listen(TAILNET_HANDSHAKE, self._heard_handshake),
        ]
        self._registry.on_dead(self._coordinator.remote_replica_lost)
        self._registry.on_reregistered(self._rewrite)
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="tailnet-writer"),
            asyncio.create_task(self._read_forever(), name="tailnet-reader"),
            asyncio.create_task(self._resync_forever(), name="tailnet-resync"),
        ]

    async def close(self) -> None:
        for stop in self._unlisten:
            stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._work.drain()
        for _, fut in self._waiting:
            if not fut.done():
                fut.set_result(None)
        self._coordinator.mirror = None

    # -- Mirror: this replica's changes ---------------------------------------------
    def _op(self, *op: Any) -> None:
        self._ops.append(op)
        self._ops_ready.set()

    def peer_node(self, peer_id: uuid.UUID, node: bytes) -> None:
        self._op("node", peer_id, node)

    def peer_left(self, peer_id: uuid.UUID, *, lost: bool, reason: str) -> None:
        self._op("left", peer_id, STATUS_LOST if lost else STATUS_GONE, reason)

    def tunnel_added(self, src: uuid.UUID, dst: uuid.UUID) -> None:
        self._op("tunnel+", src, dst)

    def tunnel_removed(self, src: uuid.UUID, dst: uuid.UUID) -> None:
        self._op("tunnel-", src, dst)

    def forward_handshake(self, src: uuid.UUID, dst: uuid.UUID) -> None:
        self._op("rfh", src, dst)

    def want(self, peer_id: uuid.UUID) -> None:
        self._dirty.add(peer_id)
        self._dirty_ready.set()

    async def prepare(self, peer_id: uuid.UUID) -> None:
        """Reads what other replicas hold about a peer that just connected
        here (tunnels their peers opened to it, and those peers' nodes)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append((peer_id, fut))
        self.want(peer_id)
        try:
            async with asyncio.timeout(PREPARE_TIMEOUT_SECONDS):
                await asyncio.shield(fut)
        except TimeoutError:
            log.warning("tailnet: other replicas' state for %s is late; starting without", peer_id)

    def _rewrite(self) -> None:
        peers, tunnels = self._coordinator.local_state()
        self._op("rewrite", peers, tunnels)

    # -- writing ---------------------------------------------------------------------
    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.1
        next_cleanup = loop.time() + CLEANUP_SECONDS
        while True:
            # asyncio.timeout, not wait_for, which on Python 3.11 can swallow
            # the cancellation that stops this task.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLEANUP_SECONDS):
                    await self._ops_ready.wait()
            self._ops_ready.clear()
            ops, self._ops = self._ops, []
            cleanup = loop.time() >= next_cleanup
            if not ops and not cleanup:
                continue
            try:
                await self._work.run(self._write, _coalesce(ops), cleanup)
                self.writes += 1
                delay = 0.1
                if cleanup:
                    next_cleanup = loop.time() + CLEANUP_SECONDS
            except Exception:
                log.warning("tailnet: writing to the database failed; retrying", exc_info=True)
                # Keep the order: what failed goes before what came since.
                self._ops = ops + self._ops
                self._ops_ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_SECONDS)

    def _write(self, ops: list[tuple[Any, ...]], cleanup: bool) -> None:
        me = self.replica_id
        now = sa.func.clock_timestamp()
        notify: dict[str, None] = {}
        handshakes: list[str] = []
        pubsub = self._db.pubsub
        with self._db.write() as conn:
            # Soft state: after a database crash every peer reconnects and
            # posts its node again, so the commit need not wait for the WAL
            # flush (it is what a node's propagation would wait on).
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            for op in ops:
                kind = op[0]
                if kind == "node":
                    store.upsert_peer_node(conn, replica_id=me, peer_id=op[1], node=op[2], now=now)
                    notify[str(op[1])] = None
                elif kind == "left":
                    store.settle_peer(
                        conn, replica_id=me, peer_id=op[1], status=op[2], reason=op[3], now=now
                    )
                    dsts = store.delete_tunnels_from(conn, replica_id=me, src_id=op[1])
                    notify[str(op[1])] = None
                    notify.update((str(d), None) for d in dsts)
                elif kind == "tunnel+":
                    store.upsert_tunnel(conn, replica_id=me, src_id=op[1], dst_id=op[2], now=now)
                    notify[str(op[1])] = None
                    notify[str(op[2])] = None
                elif kind == "tunnel-":
                    store.delete_tunnel(conn, replica_id=me, src_id=op[1], dst_id=op[2])
                    notify[str(op[1])] = None
                    notify[str(op[2])] = None
                elif kind == "rfh":
                    handshakes.append(f"{op[2]}/{op[1]}/{me}")
                elif kind == "rewrite":
                    store.replace_replica_state(
                        conn, replica_id=me, peers=op[1], tunnels=op[2], now=now
                    )
                    notify.update((str(p), None) for p, _ in op[1])
                    notify.update((str(d), None) for _, d in op[2])
            if cleanup:
                store.delete_settled_peers(
                    conn,
                    replica_id=me,
                    before=sa.func.clock_timestamp()
                    - sa.literal(dt.timedelta(seconds=SETTLED_GRACE_SECONDS), sa.Interval()),
                )
            for key in notify:
                pubsub.publish(conn, TAILNET_PEER, f"{key}/{me}")
            for key in handshakes:
                pubsub.publish(conn, TAILNET_HANDSHAKE, key)

    # -- reading -----------------------------------------------------------------------
    def _heard_peer(self, key: str | None) -> None:
        if key is None:
            self._resync_all()
            return
        peer, _, replica = key.partition("/")
        if replica == str(self.replica_id):
            return
        try:
            self.want(uuid.UUID(peer))
        except ValueError:
            log.warning("tailnet: ignoring a malformed notification %r", key[:100])

    def _heard_handshake(self, key: str | None) -> None:
        if key is None:
            return
        parts = key.split("/")
        if len(parts) != 3 or parts[2] == str(self.replica_id):
            return
        try:
            dst, src = uuid.UUID(parts[0]), uuid.UUID(parts[1])
        except ValueError:
            return
        self._coordinator.remote_ready_for_handshake(src, dst)

    def _resync_all(self) -> None:
        coordinator = self._coordinator
        self._dirty.update(coordinator.peers)
        self._dirty.update(coordinator.remote)
        self._dirty_ready.set()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            self._resync_all()

    async def _read_forever(self) -> None:
        delay = 0.1
        while True:
            await self._dirty_ready.wait()
            self._dirty_ready.clear()
            dirty, self._dirty = self._dirty, set()
            waiting, self._waiting = self._waiting, []
            if not dirty:
                _release(waiting)
                continue
            coordinator = self._coordinator
            local = [p for p in dirty if p in coordinator.peers]
            # The bindings needed: the ids asked about, the other ends of
            # what is known to touch local peers (one that left says so in
            # its row, before its tunnels are seen gone) and of what the
            # database holds.
            known = {
                other
                for key in coordinator.remote_tunnels
                for other in key
                if other not in coordinator.peers and (key[0] in dirty or key[1] in dirty)
            }
            asked = {p for p in dirty if p not in coordinator.peers} | known
            try:
                tunnels, bindings = await self._work.run(self._read, local, asked)
                self.reads += 1
                delay = 0.1
            except Exception:
                log.warning("tailnet: reading from the database failed; retrying", exc_info=True)
                self._dirty |= dirty
                self._waiting = waiting + self._waiting
                self._dirty_ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_SECONDS)
                continue
            self._apply(local, tunnels, bindings)
            _release(waiting)

    def _read(
        self, local: list[uuid.UUID], asked: set[uuid.UUID]
    ) -> tuple[list[store.TunnelRow], dict[uuid.UUID, list[Binding]]]:
        me = self.replica_id
        with self._db.engine.connect() as conn, conn.begin():
            # One snapshot for both reads: a peer that left and took its
            # tunnels with it is seen gone in both or in neither.
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            tunnels: list[store.TunnelRow] = []
            for chunk in _chunks(local):
                tunnels.extend(
                    store.list_tunnels_touching(conn, peer_ids=chunk, exclude_replica=me)
                )
            local_set = set(local)
            wanted = set(asked)
            for row in tunnels:
                wanted.add(row.dst_id if row.src_id in local_set else row.src_id)
            bindings: dict[uuid.UUID, list[Binding]] = {p: [] for p in wanted}
            for chunk in _chunks(list(wanted)):
                for row in store.list_bindings(conn, peer_ids=chunk, exclude_replica=me):
                    bindings[row.peer_id].append(row)
        return tunnels, bindings

    def _apply(
        self,
        local: list[uuid.UUID],
        tunnels: list[store.TunnelRow],
        bindings: dict[uuid.UUID, list[Binding]],
    ) -> None:
        coordinator = self._coordinator
        registry = self._registry
        by_local: dict[uuid.UUID, dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]] = {
            p: {} for p in local
        }
        for row in tunnels:
            if registry.is_dead(row.replica_id):
                continue
            for end in (row.src_id, row.dst_id):
                if end in by_local:
                    by_local[end][(row.src_id, row.dst_id)] = row.replica_id
        # New tunnels first (so the nodes read with them reach their local
        # ends), then the nodes, then the tunnels gone (after the rows that
        # say why their peer left).
        for peer_id, current in by_local.items():
            coordinator.remote_tunnels_opened(peer_id, current)
        for peer_id, rows in bindings.items():
            alive = [r for r in rows if not registry.is_dead(r.replica_id)]
            best = best_binding(alive)
            if best is None:
                coordinator.remote_binding(
                    peer_id, replica_id=None, node=None, status=None, reason=""
                )
            else:
                coordinator.remote_binding(
                    peer_id,
                    replica_id=best.replica_id,
                    node=best.node,
                    status=best.status,
                    reason=best.reason,
                )
        for peer_id, current in by_local.items():
            coordinator.remote_tunnels_closed(peer_id, current)

    def node(self, peer_id: uuid.UUID) -> bytes | None:
        """A peer's node as any replica knows it (for ``latency``); a read,
        for peers this replica has no tunnel to."""
        with self._db.read() as conn:
            rows = store.list_bindings(conn, peer_ids=[peer_id], exclude_replica=None)
        best = best_binding([r for r in rows if not self._registry.is_dead(r.replica_id)])
        if best is None or best.status != STATUS_OK:
            return None
        return best.node


def _coalesce(ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Of several node updates of one peer in a batch, only the last is
    written (nothing else about the peer in between)."""
    last: dict[uuid.UUID, int] = {}
    drop: set[int] = set()
    for i, op in enumerate(ops):
        if op[0] == "node":
            previous = last.get(op[1])
            if previous is not None:
                drop.add(previous)
            last[op[1]] = i
        elif op[0] == "left":
            last.pop(op[1], None)
    return [op for i, op in enumerate(ops) if i not in drop]


def _release(waiting: list[tuple[uuid.UUID, asyncio.Future[None]]]) -> None:
    for _, fut in waiting:
        if not fut.done():
            fut.set_result(None)
