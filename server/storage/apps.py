"""Workspace apps (with their healthchecks): table and queries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import new_id, required_timestamp

APP_HEALTHS = ("disabled", "initializing", "healthy", "unhealthy")
SHARING_LEVELS = ("owner", "authenticated", "organization", "public")
OPEN_IN = ("slim-window", "tab")


class WorkspaceApp(SQLModel, table=True):
    __tablename__ = "workspace_apps"
    __table_args__ = (sa.UniqueConstraint("agent_id", "slug"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    created_at: dt.datetime = required_timestamp()
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", index=True, ondelete="CASCADE")
    slug: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=64)
    icon: str = Field(default="", sa_type=sa.Text)
    command: str = Field(default="", sa_type=sa.Text)
    url: str = Field(default="", sa_type=sa.Text)
    external: bool = Field(default=False)
    subdomain: bool = Field(default=False)
    healthcheck_url: str = Field(default="", sa_type=sa.Text)
    # Seconds, as Coder stores them.
    healthcheck_interval: int = Field(default=0)
    healthcheck_threshold: int = Field(default=0)
    health: str = Field(default="disabled", max_length=16)
    sharing_level: str = Field(default="owner", max_length=16)
    display_order: int = Field(default=0)
    hidden: bool = Field(default=False)
    open_in: str = Field(default="slim-window", max_length=16)
    display_group: str = Field(default="", max_length=255)
    tooltip: str = Field(default="", sa_type=sa.Text)


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
