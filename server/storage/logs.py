"""Agent log sources (the log rows themselves arrive with the logs issue)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import required_timestamp


class WorkspaceAgentLogSource(SQLModel, table=True):
    __tablename__ = "workspace_agent_log_sources"

    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    id: uuid.UUID = Field(primary_key=True)
    created_at: dt.datetime = required_timestamp()
    display_name: str = Field(max_length=127)
    icon: str = Field(default="", sa_type=sa.Text)


_SOURCES = WorkspaceAgentLogSource.__table__
_SOURCES_BY_AGENTS = (
    sa.select(_SOURCES)
    .where(_SOURCES.c.workspace_agent_id.in_(sa.bindparam("agent_ids", expanding=True)))
    .order_by(_SOURCES.c.created_at, _SOURCES.c.id)
)


def list_log_sources_by_agent_ids(conn: sa.Connection, *, agent_ids: list[uuid.UUID]) -> list[Any]:
    if not agent_ids:
        return []
    return list(conn.execute(_SOURCES_BY_AGENTS, {"agent_ids": agent_ids}))
