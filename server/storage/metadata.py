"""Workspace agent metadata: the definitions from the spec and their latest values."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import utc_timestamp


class WorkspaceAgentMetadatum(SQLModel, table=True):
    __tablename__ = "workspace_agent_metadata"

    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    key: str = Field(primary_key=True, max_length=127)
    display_name: str = Field(default="", max_length=127)
    script: str = Field(default="", sa_type=sa.Text)
    # Seconds.
    interval: int = Field(default=0)
    timeout: int = Field(default=0)
    display_order: int = Field(default=0)
    value: str = Field(default="", sa_type=sa.Text)
    error: str = Field(default="", sa_type=sa.Text)
    collected_at: dt.datetime | None = utc_timestamp()


_METADATA = WorkspaceAgentMetadatum.__table__
_METADATA_BY_AGENT = (
    sa.select(_METADATA)
    .where(_METADATA.c.workspace_agent_id == sa.bindparam("agent_id"))
    .order_by(_METADATA.c.display_order, _METADATA.c.key)
)


def list_metadata_by_agent_id(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_METADATA_BY_AGENT, {"agent_id": agent_id}))
