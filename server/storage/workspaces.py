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

# Coder's prebuilds system user (codersdk.PrebuildsSystemUserID): it owns
# prebuilt workspaces and initiates their builds until a user claims one.
PREBUILDS_USER_ID = uuid.UUID("c42fdf75-3097-471c-8c33-fb52454d81c0")
PREBUILDS_USERNAME = "prebuilds"


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"
    __table_args__ = (
        # A name is taken while its workspace lives; a deleted workspace's
        # name can be used again (as in Coder, whose index has the same WHERE).
        sa.Index(
            "uq_workspaces_owner_id_name_live",
            "owner_id",
            "name",
            unique=True,
            postgresql_where=sa.text("NOT deleted"),
            sqlite_where=sa.text("NOT deleted"),
        ),
    )

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
    # Who started the build (Coder's initiator_id): the owner, or the
    # prebuilds user for a prebuild's builds; None only for builds made
    # before agentplane recorded it.
    initiator_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    # The build that handed a prebuilt workspace to the user who claimed it.
    prebuild_claim: bool = Field(default=False)


class WorkspaceResource(SQLModel, table=True):
    __tablename__ = "workspace_resources"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    build_id: uuid.UUID = Field(foreign_key="workspace_builds.id", index=True, ondelete="CASCADE")
    name: str = string_column(255)
    type: str = string_column(255, default="")
    created_at: dt.datetime = required_timestamp()


def get_workspace_by_owner_and_name(
    session: Session, *, owner_id: uuid.UUID, name: str, deleted: bool = False
) -> Workspace | None:
    """The live workspace of that name (``deleted=True``: the newest deleted
    one instead)."""
    return session.exec(
        select(Workspace)
        .where(
            Workspace.owner_id == owner_id,
            Workspace.name == name,
            Workspace.deleted == deleted,
        )
        .order_by(col(Workspace.updated_at).desc())
    ).first()


def get_latest_build(session: Session, *, workspace_id: uuid.UUID) -> WorkspaceBuild | None:
    return session.exec(
        select(WorkspaceBuild)
        .where(WorkspaceBuild.workspace_id == workspace_id)
        .order_by(col(WorkspaceBuild.build_number).desc())
        .limit(1)
    ).first()


def get_first_build(session: Session, *, workspace_id: uuid.UUID) -> WorkspaceBuild | None:
    return session.exec(
        select(WorkspaceBuild)
        .where(WorkspaceBuild.workspace_id == workspace_id)
        .order_by(col(WorkspaceBuild.build_number))
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
