"""Tailnet coordination shared between replicas (PostgreSQL): each replica's
peers with their latest node, and the tunnels its peers opened.

A replica writes only its own rows (``replica_id`` = itself) and reads the
others'; its local peers' state is authoritative in its memory
(``server/tailnet/coordinator.py``). Rows of a replica go with its registry
row (``ON DELETE CASCADE``).

A peer row's ``status`` says what became of the peer: ``ok`` (connected,
``node`` is current), ``lost`` (its stream ended without a goodbye; the node
is kept) or ``gone`` (it left: graceful disconnect or failed update, the
``reason``). Settled rows (lost/gone) are removed by their replica after a
grace period, long enough for every other replica to have read them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp, string_column

STATUS_OK = "ok"
STATUS_LOST = "lost"
STATUS_GONE = "gone"


class TailnetPeer(SQLModel, table=True):
    __tablename__ = "tailnet_peers"

    id: uuid.UUID = Field(primary_key=True)
    replica_id: uuid.UUID = Field(
        foreign_key="replicas.id", primary_key=True, index=True, ondelete="CASCADE"
    )
    # coder.tailnet.v2.Node, serialized.
    node: bytes = Field(sa_type=sa.LargeBinary)
    status: str = string_column(8, default=STATUS_OK)
    reason: str = string_column(64, default="")
    updated_at: dt.datetime = required_timestamp()


class TailnetTunnel(SQLModel, table=True):
    __tablename__ = "tailnet_tunnels"

    # The replica of the source peer (the one that opened the tunnel).
    replica_id: uuid.UUID = Field(foreign_key="replicas.id", primary_key=True, ondelete="CASCADE")
    src_id: uuid.UUID = Field(primary_key=True, index=True)
    dst_id: uuid.UUID = Field(primary_key=True, index=True)
    updated_at: dt.datetime = required_timestamp()


_PEERS = TailnetPeer.__table__
_TUNNELS = TailnetTunnel.__table__


@dataclasses.dataclass(frozen=True)
class Binding:
    """One replica's row for a peer."""

    peer_id: uuid.UUID
    replica_id: uuid.UUID
    node: bytes
    status: str
    reason: str
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class TunnelRow:
    replica_id: uuid.UUID
    src_id: uuid.UUID
    dst_id: uuid.UUID


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return sa_pg.insert(table)
    return sa_sqlite.insert(table)


# -- a replica's own rows ------------------------------------------------------


def upsert_peer_node(
    conn: sa.Connection, *, replica_id: uuid.UUID, peer_id: uuid.UUID, node: bytes, now: dt.datetime
) -> None:
    stmt = _insert(conn, _PEERS).values(
        id=peer_id, replica_id=replica_id, node=node, status=STATUS_OK, reason="", updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[_PEERS.c.id, _PEERS.c.replica_id],
            set_={"node": node, "status": STATUS_OK, "reason": "", "updated_at": now},
        )
    )


def settle_peer(
    conn: sa.Connection,
    *,
    replica_id: uuid.UUID,
    peer_id: uuid.UUID,
    status: str,
    reason: str,
    now: dt.datetime,
) -> None:
    """The peer left this replica (``lost`` or ``gone``); a peer that never
    sent a node has no row and nothing to say."""
    conn.execute(
        sa.update(_PEERS)
        .where(_PEERS.c.id == peer_id, _PEERS.c.replica_id == replica_id)
        .values(status=status, reason=reason[:64], updated_at=now)
    )


def delete_tunnels_from(
    conn: sa.Connection, *, replica_id: uuid.UUID, src_id: uuid.UUID
) -> list[uuid.UUID]:
    """Removes the tunnels a peer opened; returns their destinations."""
    rows = conn.execute(
        sa.delete(_TUNNELS)
        .where(_TUNNELS.c.replica_id == replica_id, _TUNNELS.c.src_id == src_id)
        .returning(_TUNNELS.c.dst_id)
    ).all()
    return [r.dst_id for r in rows]


def upsert_tunnel(
    conn: sa.Connection,
    *,
    replica_id: uuid.UUID,
    src_id: uuid.UUID,
    dst_id: uuid.UUID,
    now: dt.datetime,
) -> None:
    stmt = _insert(conn, _TUNNELS).values(
        replica_id=replica_id, src_id=src_id, dst_id=dst_id, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[_TUNNELS.c.replica_id, _TUNNELS.c.src_id, _TUNNELS.c.dst_id],
            set_={"updated_at": now},
        )
    )


def delete_tunnel(
    conn: sa.Connection, *, replica_id: uuid.UUID, src_id: uuid.UUID, dst_id: uuid.UUID
) -> None:
    conn.execute(
        sa.delete(_TUNNELS).where(
            _TUNNELS.c.replica_id == replica_id,
            _TUNNELS.c.src_id == src_id,
            _TUNNELS.c.dst_id == dst_id,
        )
    )


def replace_replica_state(
    conn: sa.Connection,
    *,
    replica_id: uuid.UUID,
    peers: Sequence[tuple[uuid.UUID, bytes]],
    tunnels: Sequence[tuple[uuid.UUID, uuid.UUID]],
    now: dt.datetime,
) -> None:
    """Writes a replica's whole state again (after other replicas judged it
    dead and removed its rows while it was in fact alive)."""
    conn.execute(sa.delete(_PEERS).where(_PEERS.c.replica_id == replica_id))
    conn.execute(sa.delete(_TUNNELS).where(_TUNNELS.c.replica_id == replica_id))
    if peers:
        conn.execute(
            _PEERS.insert(),
            [
                {
                    "id": peer_id,
                    "replica_id": replica_id,
                    "node": node,
                    "status": STATUS_OK,
                    "reason": "",
                    "updated_at": now,
                }
                for peer_id, node in peers
            ],
        )
    if tunnels:
        conn.execute(
            _TUNNELS.insert(),
            [
                {"replica_id": replica_id, "src_id": src, "dst_id": dst, "updated_at": now}
                for src, dst in tunnels
            ],
        )


def delete_settled_peers(conn: sa.Connection, *, replica_id: uuid.UUID, before: dt.datetime) -> int:
    """Removes the replica's lost/gone rows settled before ``before``."""
    return conn.execute(
        sa.delete(_PEERS).where(
            _PEERS.c.replica_id == replica_id,
            _PEERS.c.status != STATUS_OK,
            _PEERS.c.updated_at < before,
        )
    ).rowcount


# -- what other replicas wrote -------------------------------------------------


def list_tunnels_touching(
    conn: sa.Connection, *, peer_ids: Iterable[uuid.UUID], exclude_replica: uuid.UUID
) -> list[TunnelRow]:
    """Tunnels other replicas' peers opened from or to any of these peers."""
    ids = list(peer_ids)
    if not ids:
        return []
    rows = conn.execute(
        sa.select(_TUNNELS.c.replica_id, _TUNNELS.c.src_id, _TUNNELS.c.dst_id).where(
            _TUNNELS.c.replica_id != exclude_replica,
            sa.or_(_TUNNELS.c.dst_id.in_(ids), _TUNNELS.c.src_id.in_(ids)),
        )
    ).all()
    return [TunnelRow(r.replica_id, r.src_id, r.dst_id) for r in rows]


def list_bindings(
    conn: sa.Connection, *, peer_ids: Iterable[uuid.UUID], exclude_replica: uuid.UUID | None
) -> list[Binding]:
    """Every replica's row for these peers (but ``exclude_replica``'s)."""
    ids = list(peer_ids)
    if not ids:
        return []
    query = sa.select(_PEERS).where(_PEERS.c.id.in_(ids))
    if exclude_replica is not None:
        query = query.where(_PEERS.c.replica_id != exclude_replica)
    return [
        Binding(r.id, r.replica_id, r.node, r.status, r.reason, r.updated_at)
        for r in conn.execute(query).all()
    ]
