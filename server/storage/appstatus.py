"""What an agent reports about its apps: healthcheck results (the ``health``
column of ``workspace_apps``) and the app status history
(``workspace_app_statuses``, Coder's AI-task status line).

Both are part of the agent's cached view, so every write here goes with
``agents.bump_revision`` in the same transaction (the callers do that).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.apps import WorkspaceApp
from server.storage.types import new_id, required_timestamp, string_column, text_column

APP_STATUS_STATES = ("working", "idle", "complete", "failure")
# GET {agent} shows each app's newest statuses; the history itself is kept
# whole, but a reply stays bounded however chatty an app is.
STATUSES_PER_APP = 100


class WorkspaceAppStatus(SQLModel, table=True):
    __tablename__ = "workspace_app_statuses"
    __table_args__ = (
        sa.Index("ix_workspace_app_statuses_app_id_created_at", "app_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    created_at: dt.datetime = required_timestamp()
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", index=True, ondelete="CASCADE")
    app_id: uuid.UUID = Field(foreign_key="workspace_apps.id", ondelete="CASCADE")
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", ondelete="CASCADE")
    state: str = string_column(16)
    message: str = text_column(default="")
    uri: str = text_column(default="")


_APPS = WorkspaceApp.__table__
_STATUSES = WorkspaceAppStatus.__table__

_SET_HEALTH = (
    sa.update(_APPS)
    .where(_APPS.c.id == sa.bindparam("b_app_id"), _APPS.c.agent_id == sa.bindparam("b_agent_id"))
    .values(health=sa.bindparam("b_health"))
)
_APP_BY_SLUG = sa.select(_APPS).where(
    _APPS.c.agent_id == sa.bindparam("agent_id"), _APPS.c.slug == sa.bindparam("slug")
)
_INSERT_STATUS = _STATUSES.insert()


def _newest_statuses_query() -> sa.Select[Any]:
    ranked = (
        sa.select(
            _STATUSES,
            sa.func.row_number()
            .over(
                partition_by=_STATUSES.c.app_id,
                order_by=(_STATUSES.c.created_at.desc(), _STATUSES.c.id.desc()),
            )
            .label("rank"),
        )
        .where(_STATUSES.c.agent_id == sa.bindparam("agent_id"))
        .subquery()
    )
    return (
        sa.select(*(ranked.c[c.name] for c in _STATUSES.columns))
        .where(ranked.c.rank <= STATUSES_PER_APP)
        .order_by(ranked.c.app_id, ranked.c.created_at.desc(), ranked.c.id.desc())
    )


_NEWEST_STATUSES = _newest_statuses_query()


def set_app_healths(
    conn: sa.Connection, *, agent_id: uuid.UUID, healths: dict[uuid.UUID, str]
) -> None:
    """Writes the given app healths (only apps of ``agent_id`` match)."""
    if not healths:
        return
    conn.execute(
        _SET_HEALTH,
        [
            {"b_app_id": app_id, "b_agent_id": agent_id, "b_health": h}
            for app_id, h in healths.items()
        ],
    )


def get_app_by_slug(conn: sa.Connection, *, agent_id: uuid.UUID, slug: str) -> Any:
    return conn.execute(_APP_BY_SLUG, {"agent_id": agent_id, "slug": slug}).first()


def insert_app_status(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    app_id: uuid.UUID,
    workspace_id: uuid.UUID,
    state: str,
    message: str,
    uri: str,
    now: dt.datetime,
) -> uuid.UUID:
    status_id = uuid.uuid4()
    conn.execute(
        _INSERT_STATUS,
        {
            "id": status_id,
            "created_at": now,
            "agent_id": agent_id,
            "app_id": app_id,
            "workspace_id": workspace_id,
            "state": state,
            "message": message,
            "uri": uri,
        },
    )
    return status_id


def list_newest_statuses_by_agent(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    """Each app's newest statuses (at most STATUSES_PER_APP), newest first."""
    return list(conn.execute(_NEWEST_STATUSES, {"agent_id": agent_id}))
