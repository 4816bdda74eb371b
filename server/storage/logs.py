"""Agent log sources (the log rows themselves arrive with the logs issue)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

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


def list_log_sources_by_agent_ids(
    session: Session, *, agent_ids: list[uuid.UUID]
) -> list[WorkspaceAgentLogSource]:
    if not agent_ids:
        return []
    return list(
        session.exec(
            select(WorkspaceAgentLogSource)
            .where(col(WorkspaceAgentLogSource.workspace_agent_id).in_(agent_ids))
            .order_by(col(WorkspaceAgentLogSource.created_at), col(WorkspaceAgentLogSource.id))
        ).all()
    )


__all__ = ["WorkspaceAgentLogSource", "list_log_sources_by_agent_ids", "sa"]
