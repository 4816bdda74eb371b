"""Workspace agent metadata: the definitions from the spec and their latest values."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import string_column, text_column, utc_timestamp


class WorkspaceAgentMetadatum(SQLModel, table=True):
    __tablename__ = "workspace_agent_metadata"

    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    key: str = string_column(127, primary_key=True)
    display_name: str = string_column(127, default="")
    script: str = text_column(default="")
    # Seconds.
    interval: int = Field(default=0)
    timeout: int = Field(default=0)
    display_order: int = Field(default=0)
    value: str = text_column(default="")
    error: str = text_column(default="")
    collected_at: dt.datetime | None = utc_timestamp()


_METADATA = WorkspaceAgentMetadatum.__table__
_METADATA_BY_AGENT = (
    sa.select(_METADATA)
    .where(_METADATA.c.workspace_agent_id == sa.bindparam("agent_id"))
    .order_by(_METADATA.c.display_order, _METADATA.c.key)
)


def list_metadata_by_agent_id(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_METADATA_BY_AGENT, {"agent_id": agent_id}))
