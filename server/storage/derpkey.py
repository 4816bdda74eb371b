"""The deployment's DERP server key: one row, created once, read by every
replica (so every replica's relay presents the same key)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp

# A deployment has exactly one DERP server key; the row id is fixed.
DERP_KEY_ROW_ID = 1


class DERPServerKey(SQLModel, table=True):
    __tablename__ = "derp_server_keys"

    id: int = Field(default=DERP_KEY_ROW_ID, primary_key=True)
    # Curve25519 private key, 32 raw bytes.
    private_key: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    created_at: dt.datetime = required_timestamp()


_KEYS = DERPServerKey.__table__  # type: ignore[attr-defined]


def get_derp_server_key(conn: sa.Connection) -> bytes | None:
    row = conn.execute(sa.select(_KEYS.c.private_key).where(_KEYS.c.id == DERP_KEY_ROW_ID)).first()
    return bytes(row.private_key) if row else None


def insert_derp_server_key_if_absent(
    conn: sa.Connection, *, private_key: bytes, now: dt.datetime
) -> None:
    """Stores the key unless a key exists already (two replicas starting at
    once: the first insert wins, the other is a no-op)."""
    values = {"id": DERP_KEY_ROW_ID, "private_key": private_key, "created_at": now}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(_KEYS).values(values).on_conflict_do_nothing(index_elements=["id"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(_KEYS).values(values).on_conflict_do_nothing(index_elements=["id"])
    conn.execute(stmt)
