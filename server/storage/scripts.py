"""Workspace agent scripts (startup, shutdown, cron): table and queries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import new_id, required_timestamp, string_column, text_column


class WorkspaceAgentScript(SQLModel, table=True):
    __tablename__ = "workspace_agent_scripts"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", index=True, ondelete="CASCADE"
    )
    log_source_id: uuid.UUID
    log_path: str = text_column(default="")
    script: str = text_column(default="")
    cron: str = string_column(255, default="")
    start_blocks_login: bool = Field(default=False)
    run_on_start: bool = Field(default=False)
    run_on_stop: bool = Field(default=False)
    timeout_seconds: int = Field(default=0)
    display_name: str = string_column(127, default="")
    created_at: dt.datetime = required_timestamp()


_SCRIPTS = WorkspaceAgentScript.__table__
_SCRIPTS_BY_AGENT = (
    sa.select(_SCRIPTS)
    .where(_SCRIPTS.c.workspace_agent_id == sa.bindparam("agent_id"))
    .order_by(_SCRIPTS.c.created_at, _SCRIPTS.c.display_name)
)


def list_scripts_by_agent_id(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_SCRIPTS_BY_AGENT, {"agent_id": agent_id}))
