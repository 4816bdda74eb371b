"""Coder's tailnet coordinator (``coder.tailnet.v2.Tailnet/Coordinate``):
peers post their tailnet node, clients open directed tunnels to agents, and
each peer is told the nodes of the peers it shares a tunnel with.

The rules, as Coder's ``tailnet/coordinator.go`` and ``peer.go`` keep them:

* A peer connecting with an id already connected replaces the old one (the
  old stream ends). A new peer first gets one batch of NODE updates (reason
  ``init``) for every tunnel peer that has a node.
* ``update_self`` stores the node and sends NODE (``node update``) to every
  peer sharing a tunnel with it, in either direction; a receiver is never
  sent the same node twice, nor told DISCONNECTED/LOST about a peer it was
  never sent.
* ``add_tunnel`` records src -> dst and exchanges the nodes both ways when
  known (``add tunnel``); ``remove_tunnel`` tells both sides DISCONNECTED
  (``remove tunnel``).
* ``ready_for_handshake`` is passed to the peer as READY_FOR_HANDSHAKE, or
  answers ``you do not share a tunnel with "<id>"`` in the response's error.
* A peer that leaves takes its tunnels with it, but tunnels *to* it stay,
  so a reconnecting agent gets its clients again. Its tunnel peers hear
  DISCONNECTED (``graceful disconnect``) after a ``disconnect``, LOST
  (``lost``) when the stream just ends, DISCONNECTED (``failed update``) when
  it stopped reading and 512 responses piled up, LOST (``coordinator close``)
  when the server shuts down.

Everything here runs on the event loop and never waits: a response is put
in the receiver's outbox or the receiver is dropped, so one slow peer never
delays another. Responses are encoded once per fan-out and the same bytes
go to every receiver.

On PostgreSQL a ``Mirror`` (``server/tailnet/pgcoord.py``) writes this
replica's peers and tunnels for the others and feeds theirs back through
the ``remote_*`` methods; on SQLite there is no mirror (one replica).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

from coder.tailnet.v2 import tailnet_pb2

from server.errors import DomainError, InvalidArgument
from server.tailnet.nodes import check_node

log = logging.getLogger(__name__)

PeerUpdate = tailnet_pb2.CoordinateResponse.PeerUpdate
NODE = PeerUpdate.NODE
DISCONNECTED = PeerUpdate.DISCONNECTED
LOST = PeerUpdate.LOST
READY_FOR_HANDSHAKE = PeerUpdate.READY_FOR_HANDSHAKE

# Coder's ResponseBufferSize: a peer this far behind is dropped.
RESPONSE_BUFFER = 512
# update_self per peer: a burst, then this many per second; what comes
# faster is coalesced (the newest node wins) and applied when allowed.
UPDATE_BURST = 20
UPDATES_PER_SECOND = 10.0
# Tunnels one peer may open (a user-scoped client opens one per agent).
MAX_TUNNELS_PER_PEER = 4096


class CoordinatorClosed(Exception):
    """The coordinator is shutting down; no new peers."""


class Policy(Protocol):
    """Who a peer is and what it may ask (``server/tailnet/policies.py``)."""

    kind: str

    def authorize(self, request: tailnet_pb2.CoordinateRequest) -> None:
        """Raises the DomainError that ends the peer's stream."""
        ...


class Mirror(Protocol):
    """What the coordinator tells the other replicas (PostgreSQL)."""

    def peer_node(self, peer_id: uuid.UUID, node: bytes) -> None: ...
    def peer_left(self, peer_id: uuid.UUID, *, lost: bool, reason: str) -> None: ...
    def tunnel_added(self, src: uuid.UUID, dst: uuid.UUID) -> None: ...
    def tunnel_removed(self, src: uuid.UUID, dst: uuid.UUID) -> None: ...
    def want(self, peer_id: uuid.UUID) -> None: ...
    def forward_handshake(self, src: uuid.UUID, dst: uuid.UUID) -> None: ...


# -- wire encoding -------------------------------------------------------------
# CoordinateResponse is built by hand from already-serialized nodes, so a
# fan-out to N receivers serializes once, not N times (the bytes equal what
# protobuf writes; tests compare them).


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def encode_peer_update(about: bytes, node: bytes | None, kind: int, reason: str) -> bytes:
    """One CoordinateResponse.PeerUpdate, without its envelope."""
    body = _field(0x0A, about)
    if node is not None:
        body += _field(0x12, node)
    if kind:
        body += b"\x18" + _varint(kind)
    if reason:
        body += _field(0x22, reason.encode())
    return body


def encode_response(updates: Iterable[bytes] = (), error: str = "") -> bytes:
    """A CoordinateResponse from encoded PeerUpdates (and an error text)."""
    out = b"".join(_field(0x0A, u) for u in updates)
    if error:
        out += _field(0x12, error.encode())
    return out


# -- a peer's outbox -------------------------------------------------------------


class Outbox:
    """A peer's bounded queue of encoded responses; ``put`` never waits."""

    __slots__ = ("_items", "_waiter", "closed", "limit")

    def __init__(self, limit: int) -> None:
        # Created on first use: most peers are idle most of the time, and an
        # empty deque costs ten times an empty slot.
        self._items: collections.deque[bytes] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.limit = limit

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    def put(self, item: bytes) -> bool:
        """False when full (the receiver is not reading)."""
        if self.closed:
            return True
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        elif len(items) >= self.limit:
            return False
        items.append(item)
        self._wake()
        return True

    def close(self) -> None:
        self.closed = True
        self._wake()

    def drop(self) -> None:
        """Closes and forgets what is queued (the receiver will not get it)."""
        self._items = None
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> bytes | None:
        """The next response, or None once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


# -- peers ------------------------------------------------------------------------


class Peer:
    """A peer connected to this replica."""

    __slots__ = (
        "_next_allowed",
        "_pending",
        "_timer",
        "_tokens",
        "error",
        "id",
        "id_bytes",
        "kick",
        "name",
        "node",
        "node_bytes",
        "outbox",
        "policy",
        "ready",
        "sent",
    )

    def __init__(
        self,
        peer_id: uuid.UUID,
        name: str,
        policy: Policy,
        *,
        limit: int,
        kick: Callable[[], None] | None,
    ) -> None:
        self.id = peer_id
        self.id_bytes = peer_id.bytes
        self.name = name
        self.policy = policy
        self.node: tailnet_pb2.Node | None = None
        self.node_bytes: bytes | None = None
        self.outbox = Outbox(limit)
        # Peer id -> the node bytes last sent about it (Coder's peer.sent).
        self.sent: dict[uuid.UUID, bytes] = {}
        # False until the init batch is out: nothing is sent before it.
        self.ready = False
        # The error that ends this peer's stream (a policy refusal).
        self.error: DomainError | None = None
        # Ends the peer's stream at once (it stopped reading: its transport
        # is full, so closing the outbox would never reach it).
        self.kick = kick
        self._tokens = float(UPDATE_BURST)
        self._next_allowed = 0.0
        self._pending: tuple[tailnet_pb2.Node, bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def track(self, about: uuid.UUID, node: bytes | None, kind: int) -> bool:
        """Records what this peer is told about ``about``; False when it
        need not be told (Coder's storeMappingLocked)."""
        if kind == NODE:
            if self.sent.get(about) == node:
                return False
            self.sent[about] = node  # type: ignore[assignment]
            return True
        # LOST / DISCONNECTED only about a peer it was sent.
        return self.sent.pop(about, None) is not None


@dataclasses.dataclass
class RemotePeer:
    """A peer on another replica that shares a tunnel with a local one."""

    replica_id: uuid.UUID | None
    node: bytes | None
    # ok, lost or gone (server.storage.tailnet); None: not known yet.
    status: str | None


class TunnelStore:
    """Directed tunnels, indexed both ways (Coder's tunnelStore)."""

    __slots__ = ("by_dst", "by_src")

    def __init__(self) -> None:
        self.by_src: dict[uuid.UUID, set[uuid.UUID]] = {}
        self.by_dst: dict[uuid.UUID, set[uuid.UUID]] = {}

    def add(self, src: uuid.UUID, dst: uuid.UUID) -> bool:
        dsts = self.by_src.setdefault(src, set())
        if dst in dsts:
            return False
        dsts.add(dst)
        self.by_dst.setdefault(dst, set()).add(src)
        return True

    def remove(self, src: uuid.UUID, dst: uuid.UUID) -> bool:
        dsts = self.by_src.get(src)
        if dsts is None or dst not in dsts:
            return False
        dsts.discard(dst)
        if not dsts:
            del self.by_src[src]
        srcs = self.by_dst[dst]
        srcs.discard(src)
        if not srcs:
            del self.by_dst[dst]
        return True

    def remove_from(self, src: uuid.UUID) -> list[uuid.UUID]:
        dsts = list(self.by_src.get(src, ()))
        for dst in dsts:
            self.remove(src, dst)
        return dsts

    def peers_of(self, peer_id: uuid.UUID) -> set[uuid.UUID]:
        return self.by_src.get(peer_id, set()) | self.by_dst.get(peer_id, set())

    def exists(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        """A tunnel between the two, either way."""
        return b in self.by_src.get(a, ()) or a in self.by_src.get(b, ())

    def count_from(self, src: uuid.UUID) -> int:
        return len(self.by_src.get(src, ()))


def parse_peer_id(raw: bytes, what: str) -> uuid.UUID:
    """A peer id from its 16 bytes, with Go's uuid.FromBytes message."""
    if len(raw) != 16:
        raise InvalidArgument(f"{what}: invalid UUID (got {len(raw)} bytes)")
    return uuid.UUID(bytes=raw)


# -- the coordinator --------------------------------------------------------------


class Coordinator:
    def __init__(
        self,
        *,
        response_buffer: int = RESPONSE_BUFFER,
        updates_per_second: float = UPDATES_PER_SECOND,
        update_burst: int = UPDATE_BURST,
    ) -> None:
        self.peers: dict[uuid.UUID, Peer] = {}
        self.remote: dict[uuid.UUID, RemotePeer] = {}
        self.tunnels = TunnelStore()
        # Tunnels opened by peers of other replicas that end here: (src, dst)
        # -> the replica that opened them.
        self.remote_tunnels: dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID] = {}
        # Remote peers whose node a local peer asked for with add_tunnel
        # before it was known: they get it with reason "add tunnel".
        self._awaiting: dict[uuid.UUID, set[uuid.UUID]] = {}
        self.closed = False
        self.mirror: Mirror | None = None
        self.response_buffer = response_buffer
        self.updates_per_second = updates_per_second
        self.update_burst = update_burst
        self.stats = collections.Counter[str]()

    # -- queries -------------------------------------------------------------
    def node(self, peer_id: uuid.UUID) -> bytes | None:
        """The peer's latest node (serialized), if this replica knows it."""
        peer = self.peers.get(peer_id)
        if peer is not None:
            return peer.node_bytes
        remote = self.remote.get(peer_id)
        if remote is not None and remote.status == "ok":
            return remote.node
        return None

    def is_current(self, peer: Peer) -> bool:
        return self.peers.get(peer.id) is peer

    # -- connecting ------------------------------------------------------------
    def connect(
        self,
        peer_id: uuid.UUID,
        name: str,
        policy: Policy,
        *,
        kick: Callable[[], None] | None = None,
    ) -> Peer:
        """Adds a peer (replacing one with the same id, whose stream ends).
        It hears nothing until ``start``."""
        if self.closed:
            raise CoordinatorClosed()
        peer = Peer(peer_id, name, policy, limit=self.response_buffer, kick=kick)
        peer._tokens = float(self.update_burst)
        old = self.peers.get(peer_id)
        if old is not None:
            # Coder keeps the old peer's tunnels and tells nobody: the new
            # connection takes its place.
            self.stats["overwrites"] += 1
            old.outbox.close()
            self._cancel_pending(old)
        self.peers[peer_id] = peer
        # A local connection supersedes what another replica said about it.
        self.remote.pop(peer_id, None)
        return peer

    def start(self, peer: Peer) -> None:
        """Sends the init batch: the node of every tunnel peer that has one."""
        if not self.is_current(peer) or peer.ready:
            return
        updates = []
        for other in self.tunnels.peers_of(peer.id):
            node = self.node(other)
            if node is None or not peer.track(other, node, NODE):
                continue
            updates.append(encode_peer_update(other.bytes, node, NODE, "init"))
        peer.ready = True
        if updates and not peer.outbox.put(encode_response(updates)):
            self._failed(peer)

    # -- requests ----------------------------------------------------------------
    def handle(self, peer: Peer, req: tailnet_pb2.CoordinateRequest) -> None:
        """One request from a peer, Coder's order: authorize the whole
        request, then update_self, add_tunnel, remove_tunnel, disconnect,
        ready_for_handshake. A DomainError ends the peer's stream."""
        if not self.is_current(peer):
            return
        peer.policy.authorize(req)
        if req.HasField("update_self"):
            if not req.update_self.HasField("node"):
                raise InvalidArgument("update_self without a node")
            node = req.update_self.node
            self.update_self(peer, node, check_node(node))
        if req.HasField("add_tunnel") and self.is_current(peer):
            dst = parse_peer_id(req.add_tunnel.id, "unable to convert bytes to UUID")
            self.add_tunnel(peer, dst)
        if req.HasField("remove_tunnel") and self.is_current(peer):
            dst = parse_peer_id(req.remove_tunnel.id, "unable to convert bytes to UUID")
            self.remove_tunnel(peer, dst)
        if req.HasField("disconnect") and self.is_current(peer):
            self._remove(peer, DISCONNECTED, "graceful disconnect")
        if req.ready_for_handshake and self.is_current(peer):
            dsts = [
                parse_peer_id(r.id, "unable to convert bytes to UUID")
                for r in req.ready_for_handshake
            ]
            self.ready_for_handshake(peer, dsts)

    def update_self(self, peer: Peer, node: tailnet_pb2.Node, node_bytes: bytes) -> None:
        """Rate-limited per peer: beyond the burst, updates closer together
        than the rate allows are coalesced and the newest is applied when
        the next one is due."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        rate = self.updates_per_second
        peer._tokens = min(
            float(self.update_burst), peer._tokens + (now - peer._next_allowed) * rate
        )
        peer._next_allowed = now
        if peer._pending is None and peer._tokens >= 1.0:
            peer._tokens -= 1.0
            self._apply_node(peer, node, node_bytes)
            return
        self.stats["coalesced_updates"] += 1
        peer._pending = (node, node_bytes)
        if peer._timer is None:
            delay = max(0.0, (1.0 - peer._tokens) / rate)
            peer._timer = loop.call_later(delay, self._apply_pending, peer)

    def _apply_pending(self, peer: Peer) -> None:
        peer._timer = None
        pending, peer._pending = peer._pending, None
        if pending is None or not self.is_current(peer):
            return
        now = asyncio.get_running_loop().time()
        peer._tokens = min(
            float(self.update_burst),
            peer._tokens + (now - peer._next_allowed) * self.updates_per_second,
        )
        peer._next_allowed = now
        peer._tokens = max(0.0, peer._tokens - 1.0)
        self._apply_node(peer, *pending)

    def _cancel_pending(self, peer: Peer) -> None:
        peer._pending = None
        if peer._timer is not None:
            peer._timer.cancel()
            peer._timer = None

    def _apply_node(self, peer: Peer, node: tailnet_pb2.Node, node_bytes: bytes) -> None:
        peer.node = node
        peer.node_bytes = node_bytes
        self._tell_tunnel_peers(peer.id, node_bytes, NODE, "node update")
        if self.mirror is not None:
            self.mirror.peer_node(peer.id, node_bytes)

    def add_tunnel(self, src: Peer, dst_id: uuid.UUID) -> None:
        opened = self.tunnels.by_src.get(src.id, ())
        if dst_id not in opened and len(opened) >= MAX_TUNNELS_PER_PEER:
            raise InvalidArgument(f"too many tunnels (at most {MAX_TUNNELS_PER_PEER} per peer)")
        self.tunnels.add(src.id, dst_id)
        if self.mirror is not None:
            self.mirror.tunnel_added(src.id, dst_id)
        dst = self.peers.get(dst_id)
        if dst is None:
            self._add_remote_tunnel(src, dst_id)
            return
        if dst.node_bytes is not None and not self._send(
            src, dst_id, dst.node_bytes, NODE, "add tunnel"
        ):
            # The source failed: it is gone, and its tunnels with it.
            return
        if src.node_bytes is not None:
            self._send(dst, src.id, src.node_bytes, NODE, "add tunnel")

    def _add_remote_tunnel(self, src: Peer, dst_id: uuid.UUID) -> None:
        if self.mirror is None:
            # One replica: the destination may connect later, and then gets
            # the source's node in its init batch.
            return
        remote = self.remote.get(dst_id)
        if remote is None or remote.status is None:
            self.remote.setdefault(dst_id, RemotePeer(None, None, None))
            self._awaiting.setdefault(dst_id, set()).add(src.id)
            self.mirror.want(dst_id)
        elif remote.status == "ok" and remote.node is not None:
            self._send(src, dst_id, remote.node, NODE, "add tunnel")

    def remove_tunnel(self, src: Peer, dst_id: uuid.UUID) -> None:
        # Coder tells both sides even when the tunnel did not exist, and
        # even when the other direction remains (deduplication aside).
        if not self._send(src, dst_id, None, DISCONNECTED, "remove tunnel"):
            return
        dst = self.peers.get(dst_id)
        if dst is not None:
            self._send(dst, src.id, None, DISCONNECTED, "remove tunnel")
        if self.tunnels.remove(src.id, dst_id) and self.mirror is not None:
            self.mirror.tunnel_removed(src.id, dst_id)
        waiting = self._awaiting.get(dst_id)
        if waiting is not None:
            waiting.discard(src.id)
            if not waiting:
                del self._awaiting[dst_id]
        self._forget_remote_if_unused(dst_id)

    def ready_for_handshake(self, src: Peer, dsts: list[uuid.UUID]) -> None:
        for dst_id in dsts:
            if not self.is_current(src):
                return
            if not self.tunnels.exists(src.id, dst_id):
                # Coder answers in the response rather than ending the
                # stream: the client may have just left, which is no fault
                # of the agent.
                error = f'you do not share a tunnel with "{dst_id}"'
                if not src.outbox.put(encode_response(error=error)):
                    self._failed(src)
                continue
            dst = self.peers.get(dst_id)
            if dst is not None:
                if dst.ready:
                    payload = encode_response(
                        [encode_peer_update(src.id_bytes, None, READY_FOR_HANDSHAKE, "")]
                    )
                    if not dst.outbox.put(payload):
                        self._failed(dst)
            elif self.mirror is not None:
                self.mirror.forward_handshake(src.id, dst_id)

    # -- leaving -------------------------------------------------------------------
    def lost(self, peer: Peer) -> None:
        """The peer's stream ended without a disconnect."""
        if self.is_current(peer):
            self._remove(peer, LOST, "lost")
        else:
            self._cancel_pending(peer)

    def fail(self, peer: Peer, error: DomainError) -> None:
        """A request was refused: the stream ends with ``error`` (and the
        peer is lost, as in Coder)."""
        peer.error = error
        self.lost(peer)
        peer.outbox.close()

    def _failed(self, peer: Peer) -> None:
        """The peer's outbox is full: it is not reading."""
        if not self.is_current(peer):
            return
        self.stats["failed_updates"] += 1
        log.info("tailnet peer %s (%s) is not reading; removing it", peer.id, peer.name)
        self._remove(peer, DISCONNECTED, "failed update")
        peer.outbox.drop()
        if peer.kick is not None:
            peer.kick()

    def _remove(self, peer: Peer, kind: int, reason: str) -> None:
        """Coder's removePeerLocked: tunnel peers are told, the tunnels the
        peer opened go, the tunnels to it stay."""
        if not self.is_current(peer):
            return
        del self.peers[peer.id]
        self._cancel_pending(peer)
        self._tell_tunnel_peers(peer.id, None, kind, reason)
        dsts = self.tunnels.remove_from(peer.id)
        # Tunnels other replicas' peers opened to it are theirs to keep; this
        # replica only needs them while the peer is here.
        for key in [k for k in self.remote_tunnels if peer.id in k]:
            del self.remote_tunnels[key]
            self.tunnels.remove(*key)
        peer.outbox.close()
        if self.mirror is not None:
            self.mirror.peer_left(peer.id, lost=kind == LOST, reason=reason)
        for dst, waiting in list(self._awaiting.items()):
            waiting.discard(peer.id)
            if not waiting:
                del self._awaiting[dst]
        for dst in dsts:
            self._forget_remote_if_unused(dst)

    def close(self) -> None:
        """Server shutdown: every peer hears LOST (``coordinator close``)
        about each of its tunnel peers, so that connections in progress are
        not torn down, and every stream ends. (Coder removes the peers one
        by one, so the last ones are never told about the first.)"""
        if self.closed:
            return
        self.closed = True
        peers = list(self.peers.values())
        for peer in peers:
            self._tell_tunnel_peers(peer.id, None, LOST, "coordinator close")
        for peer in peers:
            self._remove(peer, LOST, "coordinator close")

    # -- sending -----------------------------------------------------------------------
    def _send(
        self, receiver: Peer, about: uuid.UUID, node: bytes | None, kind: int, reason: str
    ) -> bool:
        """One update to one peer; False when the receiver failed."""
        if not receiver.ready or not receiver.track(about, node, kind):
            return True
        payload = encode_response([encode_peer_update(about.bytes, node, kind, reason)])
        if receiver.outbox.put(payload):
            return True
        self._failed(receiver)
        return False

    def _tell_tunnel_peers(
        self,
        about: uuid.UUID,
        node: bytes | None,
        kind: int,
        reason: str,
        *,
        reasons: dict[uuid.UUID, str] | None = None,
    ) -> None:
        """Coder's updateTunnelPeersLocked, encoding each distinct update
        once for all its receivers."""
        payloads: dict[str, bytes] = {}
        failed: list[Peer] = []
        for other_id in self.tunnels.peers_of(about):
            other = self.peers.get(other_id)
            if other is None or not other.ready or not other.track(about, node, kind):
                continue
            why = reasons.get(other_id, reason) if reasons else reason
            payload = payloads.get(why)
            if payload is None:
                payload = payloads[why] = encode_response(
                    [encode_peer_update(about.bytes, node, kind, why)]
                )
            if not other.outbox.put(payload):
                failed.append(other)
        for other in failed:
            self._failed(other)

    # -- other replicas (PostgreSQL) -----------------------------------------------
    def remote_binding(
        self,
        peer_id: uuid.UUID,
        *,
        replica_id: uuid.UUID | None,
        node: bytes | None,
        status: str | None,
        reason: str,
    ) -> None:
        """What another replica says about one of its peers: ``ok`` with its
        node, ``lost``, ``gone`` (with the reason), or nothing (``status``
        None: no row any more, reported as lost)."""
        if peer_id in self.peers:
            return
        if not self.tunnels.peers_of(peer_id) and peer_id not in self._awaiting:
            self.remote.pop(peer_id, None)
            return
        awaiting = self._awaiting.pop(peer_id, set())
        prev = self.remote.get(peer_id)
        if status == "ok" and node is not None:
            self.remote[peer_id] = RemotePeer(replica_id, node, "ok")
            if prev is None or prev.node != node or prev.status != "ok":
                reasons = {src: "add tunnel" for src in awaiting if src in self.peers}
                self._tell_tunnel_peers(peer_id, node, NODE, "node update", reasons=reasons)
        else:
            if status is None:
                status, reason = "lost", "lost"
            self.remote[peer_id] = RemotePeer(replica_id, prev.node if prev else None, status)
            kind = LOST if status == "lost" else DISCONNECTED
            self._tell_tunnel_peers(peer_id, None, kind, reason or "lost")
        # The tunnel that asked for it may have gone while it was read.
        self._forget_remote_if_unused(peer_id)

    def remote_tunnels_opened(
        self, local_id: uuid.UUID, tunnels: dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]
    ) -> None:
        """Tunnels other replicas' peers opened to (or from) a local peer
        that this replica did not know yet (``tunnels``: every such tunnel
        now, (src, dst) -> replica). Applied like add_tunnel there: the
        local end gets the other's node (``add tunnel``), now if known, else
        when it is read."""
        local = self.peers.get(local_id)
        if local is None:
            return
        for key, replica_id in tunnels.items():
            if key in self.remote_tunnels:
                continue
            src, dst = key
            if local_id not in key or (src in self.peers and dst in self.peers):
                continue
            self.remote_tunnels[key] = replica_id
            self.tunnels.add(src, dst)
            other = src if dst == local_id else dst
            remote = self.remote.get(other)
            if remote is None or remote.status is None:
                self.remote.setdefault(other, RemotePeer(replica_id, None, None))
                self._awaiting.setdefault(other, set()).add(local_id)
            elif remote.status == "ok" and remote.node is not None:
                self._send(local, other, remote.node, NODE, "add tunnel")

    def remote_tunnels_closed(
        self, local_id: uuid.UUID, tunnels: dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]
    ) -> None:
        """Tunnels other replicas' peers had opened to (or from) a local peer
        and are gone from ``tunnels`` (every such tunnel now): applied like
        remove_tunnel there (unless the peer itself left, which its binding
        said first)."""
        local = self.peers.get(local_id)
        if local is None:
            return
        for key in [k for k in self.remote_tunnels if local_id in k and k not in tunnels]:
            del self.remote_tunnels[key]
            src, dst = key
            other = src if dst == local_id else dst
            self.tunnels.remove(src, dst)
            self._send(local, other, None, DISCONNECTED, "remove tunnel")
            self._forget_remote_if_unused(other)

    def remote_replica_lost(self, replica_id: uuid.UUID) -> None:
        """Another replica died: its peers are LOST to ours, and the tunnels
        they opened go."""
        for peer_id, remote in list(self.remote.items()):
            if remote.replica_id == replica_id and remote.status == "ok":
                self.remote[peer_id] = RemotePeer(replica_id, remote.node, "lost")
                self._tell_tunnel_peers(peer_id, None, LOST, "lost")
        for key, owner in list(self.remote_tunnels.items()):
            if owner == replica_id:
                del self.remote_tunnels[key]
                self.tunnels.remove(*key)
        for peer_id in [p for p, r in self.remote.items() if r.replica_id == replica_id]:
            self._forget_remote_if_unused(peer_id)

    def remote_ready_for_handshake(self, src: uuid.UUID, dst_id: uuid.UUID) -> None:
        dst = self.peers.get(dst_id)
        if dst is None or not dst.ready or not self.tunnels.exists(src, dst_id):
            return
        payload = encode_response([encode_peer_update(src.bytes, None, READY_FOR_HANDSHAKE, "")])
        if not dst.outbox.put(payload):
            self._failed(dst)

    def _forget_remote_if_unused(self, peer_id: uuid.UUID) -> None:
        if (
            peer_id in self.remote
            and not self.tunnels.peers_of(peer_id)
            and peer_id not in self._awaiting
        ):
            del self.remote[peer_id]

    def local_state(
        self,
    ) -> tuple[list[tuple[uuid.UUID, bytes]], list[tuple[uuid.UUID, uuid.UUID]]]:
        """This replica's peers with a node, and the tunnels they opened."""
        peers = [(p.id, p.node_bytes) for p in self.peers.values() if p.node_bytes is not None]
        tunnels = [
            (src, dst)
            for src, dsts in self.tunnels.by_src.items()
            if src in self.peers
            for dst in dsts
            if (src, dst) not in self.remote_tunnels
        ]
        return peers, tunnels  # type: ignore[return-value]
