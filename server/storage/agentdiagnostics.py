"""What agentplane remembers to explain a stuck agent (beyond Coder): refused
connection attempts made with a token that belongs to a known agent — one
of an older build, or of a deleted workspace."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlmodel import Field, SQLModel

from server.storage.agents import WorkspaceAgent
from server.storage.types import required_timestamp, string_column, text_column
from server.storage.workspaces import (
    Workspace,
    WorkspaceBuild,
    WorkspaceResource,
    latest_build_number_subquery,
)


class WorkspaceAgentTokenRejection(SQLModel, table=True):
    __tablename__ = "workspace_agent_token_rejections"
    __table_args__ = (
        sa.Index(
            "ix_workspace_agent_token_rejections_workspace_id_agent_name",
            "workspace_id",
            "agent_name",
        ),
    )

    # The agent the refused token belongs to (one row per agent: the newest
    # refusal wins).
    agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", ondelete="CASCADE")
    agent_name: str = string_column(64)
    build_number: int
    reason: str = text_column()
    rejected_at: dt.datetime = required_timestamp()
    attempts: int = Field(default=1, sa_type=sa.BigInteger)


_AGENTS = WorkspaceAgent.__table__
_RESOURCES = WorkspaceResource.__table__
_BUILDS = WorkspaceBuild.__table__
_WORKSPACES = Workspace.__table__
_REJECTIONS = WorkspaceAgentTokenRejection.__table__

# Any agent holding this token, whether or not it may still act.
_ANY_BY_TOKEN = (
    sa.select(
        _AGENTS.c.id,
        _AGENTS.c.name,
        _AGENTS.c.deleted,
        _BUILDS.c.build_number,
        _WORKSPACES.c.id.label("workspace_id"),
        _WORKSPACES.c.deleted.label("workspace_deleted"),
        latest_build_number_subquery().label("latest_build_number"),
    )
    .select_from(
        _AGENTS.join(_RESOURCES, _RESOURCES.c.id == _AGENTS.c.resource_id)
        .join(_BUILDS, _BUILDS.c.id == _RESOURCES.c.build_id)
        .join(_WORKSPACES, _WORKSPACES.c.id == _BUILDS.c.workspace_id)
    )
    .where(_AGENTS.c.auth_token_hash == sa.bindparam("token_hash"))
)
_NEWEST_FOR_NAME = (
    sa.select(_REJECTIONS)
    .where(
        _REJECTIONS.c.workspace_id == sa.bindparam("workspace_id"),
        _REJECTIONS.c.agent_name == sa.bindparam("agent_name"),
        _REJECTIONS.c.rejected_at >= sa.bindparam("since"),
        # A newer build's token says nothing about this agent.
        _REJECTIONS.c.build_number <= sa.bindparam("max_build"),
    )
    .order_by(_REJECTIONS.c.rejected_at.desc())
    .limit(1)
)


def find_agent_by_token_hash(conn: sa.Connection, *, token_hash: str) -> Any:
    """The agent owning the token with its build, its workspace's latest
    build number and the deleted flags; None for an unknown token."""
    return conn.execute(_ANY_BY_TOKEN, {"token_hash": token_hash}).first()


def record_rejection(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    workspace_id: uuid.UUID,
    agent_name: str,
    build_number: int,
    reason: str,
    now: dt.datetime,
    attempts: int = 1,
) -> None:
    """Adds ``attempts`` refusals of the agent's token, the newest at ``now``
    (one statement: an upsert on the agent's row)."""
    insert = (sa_sqlite.insert if conn.dialect.name == "sqlite" else sa_pg.insert)(_REJECTIONS)
    statement = insert.values(
        agent_id=agent_id,
        workspace_id=workspace_id,
        agent_name=agent_name,
        build_number=build_number,
        reason=reason,
        rejected_at=now,
        attempts=attempts,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[_REJECTIONS.c.agent_id],
            set_={
                "reason": statement.excluded.reason,
                "rejected_at": sa.func.greatest(
                    _REJECTIONS.c.rejected_at, statement.excluded.rejected_at
                )
                if conn.dialect.name == "postgresql"
                else sa.func.max(_REJECTIONS.c.rejected_at, statement.excluded.rejected_at),
                "attempts": _REJECTIONS.c.attempts + statement.excluded.attempts,
            },
        )
    )


def newest_rejection_for_agent_name(
    conn: sa.Connection,
    *,
    workspace_id: uuid.UUID,
    agent_name: str,
    since: dt.datetime,
    max_build: int,
) -> Any:
    """The newest refusal, at or after ``since``, of a token of any agent of
    this name in the workspace, of build ``max_build`` (the agent's own) or
    an older one."""
    return conn.execute(
        _NEWEST_FOR_NAME,
        {
            "workspace_id": workspace_id,
            "agent_name": agent_name,
            "since": since,
            "max_build": max_build,
        },
    ).first()
