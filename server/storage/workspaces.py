"""Workspaces, their builds and the resources a build provisions."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from server.storage.types import new_id, required_timestamp, utc_timestamp

TRANSITIONS = ("start", "stop", "delete")


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"
    __table_args__ = (sa.UniqueConstraint("owner_id", "name"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=64)
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
    transition: str = Field(max_length=16)
    # Provisioning is synchronous here, so a stored build's job has succeeded;
    # the column keeps Coder's pending/running states expressible.
    job_status: str = Field(default="succeeded", max_length=16)
    spec_json: str = Field(sa_type=sa.Text)
    created_at: dt.datetime = required_timestamp()


class WorkspaceResource(SQLModel, table=True):
    __tablename__ = "workspace_resources"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    build_id: uuid.UUID = Field(foreign_key="workspace_builds.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=255)
    type: str = Field(default="", max_length=255)
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


def list_workspaces_and_agents_by_owner(
    conn: sa.Connection, *, owner_id: uuid.UUID
) -> list[tuple[uuid.UUID, str, str, str, list[tuple[uuid.UUID, str]]]]:
    """The owner's workspaces that are not deleted, each with its latest
    build's job status and transition and that build's agents (Coder's
    GetWorkspacesAndAgentsByOwnerID): (id, name, job_status, transition,
    [(agent id, agent name)])."""
    from server.storage.agents import WorkspaceAgent

    workspaces = Workspace.__table__
    builds = WorkspaceBuild.__table__
    resources = WorkspaceResource.__table__
    agents = WorkspaceAgent.__table__
    latest = latest_build_number_subquery()
    rows = conn.execute(
        sa.select(
            workspaces.c.id,
            workspaces.c.name,
            builds.c.id.label("build_id"),
            builds.c.job_status,
            builds.c.transition,
        )
        .select_from(workspaces.join(builds, builds.c.workspace_id == workspaces.c.id))
        .where(
            workspaces.c.owner_id == owner_id,
            ~workspaces.c.deleted,
            builds.c.build_number == latest,
        )
        .order_by(workspaces.c.name)
    ).all()
    if not rows:
        return []
    by_build: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {r.build_id: [] for r in rows}
    for agent in conn.execute(
        sa.select(agents.c.id, agents.c.name, resources.c.build_id)
        .select_from(agents.join(resources, resources.c.id == agents.c.resource_id))
        .where(resources.c.build_id.in_(list(by_build)), ~agents.c.deleted)
        .order_by(agents.c.name, agents.c.id)
    ).all():
        by_build[agent.build_id].append((agent.id, agent.name))
    return [(r.id, r.name, r.job_status, r.transition, by_build[r.build_id]) for r in rows]
