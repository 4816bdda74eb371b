"""Signing keys shared by every replica, per feature (Coder's
``crypto_keys``): a key is used to sign from ``starts_at`` until a newer key
of the feature starts, and verifies until ``deletes_at`` (unset: forever)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp, string_column, utc_timestamp

FEATURE_TAILNET_RESUME = "tailnet_resume"


class CryptoKey(SQLModel, table=True):
    __tablename__ = "crypto_keys"

    feature: str = string_column(32, primary_key=True)
    sequence: int = Field(primary_key=True)
    secret: bytes = Field(sa_type=sa.LargeBinary)
    starts_at: dt.datetime = required_timestamp()
    deletes_at: dt.datetime | None = utc_timestamp()


_KEYS = CryptoKey.__table__


@dataclasses.dataclass(frozen=True)
class Key:
    sequence: int
    secret: bytes
    starts_at: dt.datetime
    deletes_at: dt.datetime | None


def list_keys(conn: sa.Connection, *, feature: str) -> list[Key]:
    """The feature's keys, newest first."""
    rows = conn.execute(
        sa.select(_KEYS).where(_KEYS.c.feature == feature).order_by(_KEYS.c.sequence.desc())
    ).all()
    return [Key(r.sequence, r.secret, r.starts_at, r.deletes_at) for r in rows]


def insert_key(
    conn: sa.Connection, *, feature: str, sequence: int, secret: bytes, now: dt.datetime
) -> bool:
    """Adds the key with this sequence; False when another replica added one
    with the same sequence first (then read the keys again)."""
    try:
        with conn.begin_nested():
            conn.execute(
                _KEYS.insert().values(
                    feature=feature, sequence=sequence, secret=secret, starts_at=now
                )
            )
    except sa.exc.IntegrityError:
        return False
    return True


def retire_keys_before(
    conn: sa.Connection, *, feature: str, sequence: int, deletes_at: dt.datetime
) -> None:
    """Older keys keep verifying until ``deletes_at`` (the tokens they signed
    expire by then) and are removed after it."""
    conn.execute(
        sa.update(_KEYS)
        .where(
            _KEYS.c.feature == feature,
            _KEYS.c.sequence < sequence,
            _KEYS.c.deletes_at.is_(None),
        )
        .values(deletes_at=deletes_at)
    )


def delete_expired_keys(conn: sa.Connection, *, feature: str, now: dt.datetime) -> None:
    conn.execute(
        sa.delete(_KEYS).where(
            _KEYS.c.feature == feature,
            _KEYS.c.deletes_at.is_not(None),
            _KEYS.c.deletes_at <= now,
        )
    )
