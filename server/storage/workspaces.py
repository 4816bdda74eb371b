"""Workspaces, their builds and the resources a build provisions."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from server.storage.types import (
    new_id,
    required_timestamp,
    string_column,
    text_column,
    utc_timestamp,
)

TRANSITIONS = ("start", "stop", "delete")


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"
    __table_args__ = (sa.UniqueConstraint("owner_id", "name"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    name: str = string_column(64)
    deleted: bool = Field(default=False)
    created_at: dt.datetime = required_timestamp()
    updated_at: dt.datetime = required_timestamp()
    last_used_at: dt.datetime | None = utc_timestamp()


class WorkspaceBuild(SQLModel, table=True):
    __tablename__ = "workspace_builds"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "build_number"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", index=True, ondelete="CASCADE")
    build_number: int
    # start | stop | delete
    transition: str = string_column(16)
    # Provisioning is synchronous here, so a stored build's job has succeeded;
    # the column keeps Coder's pending/running states expressible.
    job_status: str = string_column(16, default="succeeded")
    spec_json: str = text_column()
    created_at: dt.datetime = required_timestamp()


class WorkspaceResource(SQLModel, table=True):
    __tablename__ = "workspace_resources"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    build_id: uuid.UUID = Field(foreign_key="workspace_builds.id", index=True, ondelete="CASCADE")
    name: str = string_column(255)
    type: str = string_column(255, default="")
    created_at: dt.datetime = required_timestamp()


def get_workspace_by_owner_and_name(
    session: Session, *, owner_id: uuid.UUID, name: str
) -> Workspace | None:
    return session.exec(
        select(Workspace).where(Workspace.owner_id == owner_id, Workspace.name == name)
    ).first()


def get_latest_build(session: Session, *, workspace_id: uuid.UUID) -> WorkspaceBuild | None:
    return session.exec(
        select(WorkspaceBuild)
        .where(WorkspaceBuild.workspace_id == workspace_id)
        .order_by(col(WorkspaceBuild.build_number).desc())
        .limit(1)
    ).first()


def latest_build_number_subquery() -> sa.ScalarSelect[int]:
    """Correlated subquery: the newest build number of the outer query's workspace."""
    inner = sa.alias(WorkspaceBuild.__table__, "latest_wb")
    return (
        sa.select(sa.func.max(inner.c.build_number))
        .where(inner.c.workspace_id == WorkspaceBuild.__table__.c.workspace_id)
        .scalar_subquery()
    )
