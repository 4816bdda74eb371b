"""Each tailnet peer's newest network telemetry event (``PostTelemetry``),
and its newest netcheck report apart, so a later event without one does
not hide the last the peer made. Rows untouched for a week are purged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp, utc_timestamp


class TailnetTelemetry(SQLModel, table=True):
    __tablename__ = "tailnet_telemetry"

    # The agent id for agents; a client's peer id (its resume token's subject).
    peer_id: uuid.UUID = Field(primary_key=True)
    # coder.tailnet.v2.TelemetryEvent, serialized without its DERP map.
    event: bytes = Field(sa_type=sa.LargeBinary)
    event_time: dt.datetime = required_timestamp()
    # coder.tailnet.v2.Netcheck of the newest event that carried one.
    netcheck: bytes | None = Field(default=None, sa_type=sa.LargeBinary, nullable=True)
    netcheck_time: dt.datetime | None = utc_timestamp()
    updated_at: dt.datetime = required_timestamp()


_TELEMETRY = TailnetTelemetry.__table__


@dataclasses.dataclass(frozen=True)
class TelemetryRow:
    event: bytes
    event_time: dt.datetime
    netcheck: bytes | None
    netcheck_time: dt.datetime | None


def record_event(
    conn: sa.Connection,
    *,
    peer_id: uuid.UUID,
    event: bytes,
    event_time: dt.datetime,
    netcheck: bytes | None,
    netcheck_time: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """Keeps the event if it is the peer's newest (by its own time), and its
    netcheck if it carries the newest one."""
    insert = sa_pg.insert if conn.dialect.name == "postgresql" else sa_sqlite.insert
    values = {
        "peer_id": peer_id,
        "event": event,
        "event_time": event_time,
        "netcheck": netcheck,
        "netcheck_time": netcheck_time if netcheck is not None else None,
        "updated_at": now,
    }
    stmt = insert(_TELEMETRY).values(**values)
    excluded = stmt.excluded
    newer_event = excluded.event_time >= _TELEMETRY.c.event_time
    newer_netcheck = sa.and_(
        excluded.netcheck.is_not(None),
        sa.or_(
            _TELEMETRY.c.netcheck_time.is_(None),
            excluded.netcheck_time >= _TELEMETRY.c.netcheck_time,
        ),
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[_TELEMETRY.c.peer_id],
            set_={
                "event": sa.case((newer_event, excluded.event), else_=_TELEMETRY.c.event),
                "event_time": sa.case(
                    (newer_event, excluded.event_time), else_=_TELEMETRY.c.event_time
                ),
                "netcheck": sa.case(
                    (newer_netcheck, excluded.netcheck), else_=_TELEMETRY.c.netcheck
                ),
                "netcheck_time": sa.case(
                    (newer_netcheck, excluded.netcheck_time), else_=_TELEMETRY.c.netcheck_time
                ),
                "updated_at": now,
            },
        )
    )


def get_telemetry(conn: sa.Connection, *, peer_id: uuid.UUID) -> TelemetryRow | None:
    row = conn.execute(sa.select(_TELEMETRY).where(_TELEMETRY.c.peer_id == peer_id)).first()
    if row is None:
        return None
    return TelemetryRow(row.event, row.event_time, row.netcheck, row.netcheck_time)


def purge_telemetry(conn: sa.Connection, *, before: dt.datetime) -> int:
    return conn.execute(sa.delete(_TELEMETRY).where(_TELEMETRY.c.updated_at < before)).rowcount
