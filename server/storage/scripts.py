"""Workspace agent scripts (startup, shutdown, cron): table and queries."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from server.storage.types import new_id, required_timestamp


class WorkspaceAgentScript(SQLModel, table=True):
    __tablename__ = "workspace_agent_scripts"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", index=True, ondelete="CASCADE"
    )
    log_source_id: uuid.UUID
    log_path: str = Field(default="", sa_type=sa.Text)
    script: str = Field(default="", sa_type=sa.Text)
    cron: str = Field(default="", max_length=255)
    start_blocks_login: bool = Field(default=False)
    run_on_start: bool = Field(default=False)
    run_on_stop: bool = Field(default=False)
    timeout_seconds: int = Field(default=0)
    display_name: str = Field(default="", max_length=127)
    created_at: dt.datetime = required_timestamp()


def list_scripts_by_agent_id(
    session: Session, *, agent_id: uuid.UUID
) -> list[WorkspaceAgentScript]:
    return list(
        session.exec(
            select(WorkspaceAgentScript)
            .where(WorkspaceAgentScript.workspace_agent_id == agent_id)
            .order_by(col(WorkspaceAgentScript.created_at), col(WorkspaceAgentScript.display_name))
        ).all()
    )
