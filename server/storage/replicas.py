"""The replica registry: one row per running ``agentplane server`` process,
with the gRPC address other replicas reach it at and its last heartbeat.

Rows of other concerns that belong to one replica (its tailnet peers and
tunnels) reference ``replicas.id`` with ``ON DELETE CASCADE``, so removing
a dead replica's row removes everything it owned.

Heartbeat times come from the database's clock on PostgreSQL (``now`` is
None), so replicas on hosts whose clocks disagree still judge each other by
one clock; on SQLite (one process) from the caller's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp, string_column


class Replica(SQLModel, table=True):
    __tablename__ = "replicas"

    id: uuid.UUID = Field(primary_key=True)
    # host:port of this process's gRPC server as other replicas reach it.
    address: str = string_column(255)
    hostname: str = string_column(255, default="")
    pid: int = Field(default=0)
    started_at: dt.datetime = required_timestamp()
    heartbeat_at: dt.datetime = required_timestamp()


_REPLICAS = Replica.__table__


@dataclasses.dataclass(frozen=True)
class ReplicaRow:
    id: uuid.UUID
    address: str
    hostname: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    # Its heartbeat is recent enough (judged by the same clock that wrote it).
    alive: bool


def _now(conn: sa.Connection, now: dt.datetime | None) -> Any:
    if now is not None:
        return now
    if conn.dialect.name != "postgresql":
        raise ValueError("a time is needed on SQLite")
    # clock_timestamp(), not now(): the time of the statement, not of the
    # transaction it runs in.
    return sa.func.clock_timestamp()


def upsert_replica(
    conn: sa.Connection,
    *,
    replica_id: uuid.UUID,
    address: str,
    hostname: str,
    pid: int,
    now: dt.datetime | None,
) -> None:
    """Registers (or re-registers) a replica with a fresh heartbeat."""
    at = _now(conn, now)
    updated = conn.execute(
        sa.update(_REPLICAS)
        .where(_REPLICAS.c.id == replica_id)
        .values(address=address, hostname=hostname, pid=pid, heartbeat_at=at)
    ).rowcount
    if updated:
        return
    conn.execute(
        _REPLICAS.insert().values(
            id=replica_id,
            address=address,
            hostname=hostname,
            pid=pid,
            started_at=at,
            heartbeat_at=at,
        )
    )


def heartbeat(conn: sa.Connection, *, replica_id: uuid.UUID, now: dt.datetime | None) -> bool:
    """Refreshes the replica's heartbeat; False when its row is gone (another
    replica judged it dead and removed it)."""
    return bool(
        conn.execute(
            sa.update(_REPLICAS)
            .where(_REPLICAS.c.id == replica_id)
            .values(heartbeat_at=_now(conn, now))
        ).rowcount
    )


def list_replicas(
    conn: sa.Connection, *, expiry: dt.timedelta, now: dt.datetime | None
) -> list[ReplicaRow]:
    """Every registered replica, each with whether its heartbeat is younger
    than ``expiry``."""
    at = _now(conn, now)
    if isinstance(at, dt.datetime):
        alive = _REPLICAS.c.heartbeat_at > at - expiry
    else:
        alive = _REPLICAS.c.heartbeat_at > at - sa.literal(expiry, sa.Interval())
    rows = conn.execute(
        sa.select(_REPLICAS, sa.case((alive, True), else_=False).label("alive")).order_by(
            _REPLICAS.c.started_at, _REPLICAS.c.id
        )
    ).all()
    return [
        ReplicaRow(
            id=r.id,
            address=r.address,
            hostname=r.hostname,
            pid=r.pid,
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            alive=bool(r.alive),
        )
        for r in rows
    ]


def delete_replicas(conn: sa.Connection, *, replica_ids: Iterable[uuid.UUID]) -> int:
    """Removes replicas (and, by cascade, what they owned)."""
    ids = list(replica_ids)
    if not ids:
        return 0
    return conn.execute(sa.delete(_REPLICAS).where(_REPLICAS.c.id.in_(ids))).rowcount
