"""Workspace apps (with their healthchecks): table and queries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import new_id, required_timestamp, string_column, text_column

APP_HEALTHS = ("disabled", "initializing", "healthy", "unhealthy")
SHARING_LEVELS = ("owner", "authenticated", "organization", "public")
OPEN_IN = ("slim-window", "tab")


class WorkspaceApp(SQLModel, table=True):
    __tablename__ = "workspace_apps"
    __table_args__ = (sa.UniqueConstraint("agent_id", "slug"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    created_at: dt.datetime = required_timestamp()
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", index=True, ondelete="CASCADE")
    slug: str = string_column(64)
    display_name: str = string_column(64, default="")
    icon: str = text_column(default="")
    command: str = text_column(default="")
    url: str = text_column(default="")
    external: bool = Field(default=False)
    subdomain: bool = Field(default=False)
    healthcheck_url: str = text_column(default="")
    # Seconds, as Coder stores them.
    healthcheck_interval: int = Field(default=0)
    healthcheck_threshold: int = Field(default=0)
    health: str = string_column(16, default="disabled")
    sharing_level: str = string_column(16, default="owner")
    display_order: int = Field(default=0)
    hidden: bool = Field(default=False)
    open_in: str = string_column(16, default="slim-window")
    display_group: str = string_column(255, default="")
    tooltip: str = text_column(default="")


_APPS = WorkspaceApp.__table__
_APPS_BY_AGENTS = (
    sa.select(_APPS)
    .where(_APPS.c.agent_id.in_(sa.bindparam("agent_ids", expanding=True)))
    .order_by(_APPS.c.display_order, _APPS.c.slug)
)


def list_apps_by_agent_ids(conn: sa.Connection, *, agent_ids: list[uuid.UUID]) -> list[Any]:
    if not agent_ids:
        return []
    return list(conn.execute(_APPS_BY_AGENTS, {"agent_ids": agent_ids}))
