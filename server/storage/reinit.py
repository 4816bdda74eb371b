"""Reinitialization requests for a workspace's agents (``me/reinit``).

Coder raises these when a prebuilt workspace is claimed; agentplane raises
them on an admin request. Each request is a row, so a stream that missed the
wake-up (another replica, a reconnect) still finds it on its next re-read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp, string_column
from server.storage.workspaces import WorkspaceBuild

REASON_PREBUILD_CLAIMED = "prebuild_claimed"


class WorkspaceReinitEvent(SQLModel, table=True):
    __tablename__ = "workspace_reinit_events"

    # Ordered ids let a stream ask for "everything after the last one I saw".
    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    )
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", index=True, ondelete="CASCADE")
    owner_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    reason: str = string_column(32, default=REASON_PREBUILD_CLAIMED)
    # The workspace's latest build when the request was made: agents of that
    # build (or newer) have not reinitialized since.
    build_number: int
    created_at: dt.datetime = required_timestamp()


_EVENTS = WorkspaceReinitEvent.__table__
_INSERT = _EVENTS.insert().returning(_EVENTS.c.id)
_AFTER = (
    sa.select(_EVENTS)
    .where(
        _EVENTS.c.workspace_id == sa.bindparam("workspace_id"),
        _EVENTS.c.id > sa.bindparam("after_id"),
        _EVENTS.c.build_number >= sa.bindparam("min_build"),
    )
    .order_by(_EVENTS.c.id)
)
_LAST_ID = sa.select(sa.func.coalesce(sa.func.max(_EVENTS.c.id), 0)).where(
    _EVENTS.c.workspace_id == sa.bindparam("workspace_id")
)


_BUILDS = WorkspaceBuild.__table__
_FIRST_INITIATOR = (
    sa.select(_BUILDS.c.initiator_id)
    .where(_BUILDS.c.workspace_id == sa.bindparam("workspace_id"))
    .order_by(_BUILDS.c.build_number)
    .limit(1)
)


def first_build_initiator(conn: sa.Connection, *, workspace_id: uuid.UUID) -> uuid.UUID | None:
    """Who started the workspace's first build (the prebuilds user for a
    prebuilt workspace, claimed or not)."""
    return conn.execute(_FIRST_INITIATOR, {"workspace_id": workspace_id}).scalar()


def insert_reinit_event(
    conn: sa.Connection,
    *,
    workspace_id: uuid.UUID,
    owner_id: uuid.UUID,
    build_number: int,
    reason: str,
    now: dt.datetime,
) -> int:
    return int(
        conn.execute(
            _INSERT,
            {
                "workspace_id": workspace_id,
                "owner_id": owner_id,
                "build_number": build_number,
                "reason": reason,
                "created_at": now,
            },
        ).scalar_one()
    )


def last_event_id(conn: sa.Connection, *, workspace_id: uuid.UUID) -> int:
    return int(conn.execute(_LAST_ID, {"workspace_id": workspace_id}).scalar_one())


def list_events_after(
    conn: sa.Connection, *, workspace_id: uuid.UUID, after_id: int, min_build: int
) -> list[Any]:
    """Requests newer than ``after_id`` made while build ``min_build`` or a
    newer one was the workspace's latest."""
    return list(
        conn.execute(
            _AFTER, {"workspace_id": workspace_id, "after_id": after_id, "min_build": min_build}
        )
    )
