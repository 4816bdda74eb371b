"""Workspace agents: the table and the lookups every agent-facing call starts with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from server.storage.prepared import Prepared
from server.storage.types import (
    json_column,
    new_id,
    required_timestamp,
    string_column,
    text_column,
    utc_timestamp,
)
from server.storage.users import User
from server.storage.workspaces import (
    Workspace,
    WorkspaceBuild,
    WorkspaceResource,
    latest_build_number_subquery,
)

LIFECYCLE_STATES = (
    "created",
    "starting",
    "start_timeout",
    "start_error",
    "ready",
    "shutting_down",
    "shutdown_timeout",
    "shutdown_error",
    "off",
)
AUTH_TOKEN = "token"
AUTH_KINDS = (
    AUTH_TOKEN,
    "aws-instance-identity",
    "azure-instance-identity",
    "google-instance-identity",
)


class WorkspaceAgent(SQLModel, table=True):
    __tablename__ = "workspace_agents"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    created_at: dt.datetime = required_timestamp()
    updated_at: dt.datetime = required_timestamp()
    name: str = string_column(64)
    resource_id: uuid.UUID = Field(
        foreign_key="workspace_resources.id", index=True, ondelete="CASCADE"
    )
    # Set for sub-agents (devcontainer children); they share the parent's resource.
    parent_id: uuid.UUID | None = Field(
        default=None, foreign_key="workspace_agents.id", index=True, ondelete="CASCADE"
    )
    auth_kind: str = string_column(32, default=AUTH_TOKEN)
    # sha256 hex of the agent token; the token itself is never stored.
    auth_token_hash: str | None = string_column(64, default=None, unique=True, index=True)
    auth_instance_id: str | None = string_column(255, default=None, index=True)
    architecture: str = string_column(64, default="")
    operating_system: str = string_column(64, default="")
    environment_variables: dict[str, str] = json_column(dict)
    directory: str = text_column(default="")
    expanded_directory: str = text_column(default="")
    version: str = string_column(128, default="")
    api_version: str = string_column(32, default="")
    subsystems: list[str] = json_column(list)
    first_connected_at: dt.datetime | None = utc_timestamp()
    last_connected_at: dt.datetime | None = utc_timestamp()
    disconnected_at: dt.datetime | None = utc_timestamp()
    last_connected_replica_id: uuid.UUID | None = Field(default=None)
    connection_timeout_seconds: int = Field(default=120)
    troubleshooting_url: str = text_column(default="")
    motd_file: str = text_column(default="")
    display_apps: list[str] = json_column(list)
    display_order: int = Field(default=0)
    lifecycle_state: str = string_column(32, default="created")
    started_at: dt.datetime | None = utc_timestamp()
    ready_at: dt.datetime | None = utc_timestamp()
    logs_length: int = Field(default=0)
    logs_overflowed: bool = Field(default=False)
    deleted: bool = Field(default=False)
    # Bumped by every write to what an agent's view is built from (its apps,
    # scripts, log sources, metadata definitions, app health and statuses),
    # so readers can cache those children per (agent, revision).
    revision: int = Field(default=0)


@dataclasses.dataclass(frozen=True)
class WorkspaceRef:
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    deleted: bool
    owner_username: str


@dataclasses.dataclass(frozen=True)
class BuildRef:
    id: uuid.UUID
    build_number: int
    transition: str


@dataclasses.dataclass(frozen=True)
class AgentInWorkspace:
    """An agent (a read-only row with every agent column) with the rows that
    decide who may see or act as it. Read with SQLAlchemy Core: this lookup
    starts every agent call, so it is one query, not four ORM loads."""

    agent: Any
    resource_id: uuid.UUID
    build: BuildRef
    workspace: WorkspaceRef


_AGENTS = WorkspaceAgent.__table__
_RESOURCES = WorkspaceResource.__table__
_BUILDS = WorkspaceBuild.__table__
_WORKSPACES = Workspace.__table__
_USERS = User.__table__

_CONTEXT_COLUMNS = (
    _BUILDS.c.id.label("ctx_build_id"),
    _BUILDS.c.build_number.label("ctx_build_number"),
    _BUILDS.c.transition.label("ctx_transition"),
    _WORKSPACES.c.id.label("ctx_workspace_id"),
    _WORKSPACES.c.owner_id.label("ctx_owner_id"),
    _WORKSPACES.c.name.label("ctx_workspace_name"),
    _WORKSPACES.c.deleted.label("ctx_workspace_deleted"),
    _USERS.c.username.label("ctx_owner_username"),
)


def _agent_context_query() -> sa.Select[Any]:
    return sa.select(_AGENTS, *_CONTEXT_COLUMNS).select_from(
        _AGENTS.join(_RESOURCES, _RESOURCES.c.id == _AGENTS.c.resource_id)
        .join(_BUILDS, _BUILDS.c.id == _RESOURCES.c.build_id)
        .join(_WORKSPACES, _WORKSPACES.c.id == _BUILDS.c.workspace_id)
        .join(_USERS, _USERS.c.id == _WORKSPACES.c.owner_id)
    )


def _context(row: Any) -> AgentInWorkspace | None:
    if row is None:
        return None
    return AgentInWorkspace(
        agent=row,
        resource_id=row.resource_id,
        build=BuildRef(row.ctx_build_id, row.ctx_build_number, row.ctx_transition),
        workspace=WorkspaceRef(
            row.ctx_workspace_id,
            row.ctx_owner_id,
            row.ctx_workspace_name,
            row.ctx_workspace_deleted,
            row.ctx_owner_username,
        ),
    )


# Built once: these lookups run on every call, and building a statement costs
# more than executing its cached compilation.
_BY_ID = Prepared(
    _agent_context_query().where(_AGENTS.c.id == sa.bindparam("agent_id"), ~_AGENTS.c.deleted),
    memo=4096,
)
_BY_TOKEN = Prepared(
    _agent_context_query().where(
        _AGENTS.c.auth_token_hash == sa.bindparam("token_hash"),
        ~_AGENTS.c.deleted,
        ~_WORKSPACES.c.deleted,
        _BUILDS.c.build_number == latest_build_number_subquery(),
    ),
    memo=4096,
)


def token_still_valid(token_hash: Any) -> sa.ColumnElement[bool]:
    """A condition on a ``workspace_agents`` row, for writes that check the
    caller's token in their own statement (log ingestion): the row's token
    is `token_hash` and still authenticates. The same rules as the lookup
    above (``_BY_TOKEN``), as one EXISTS instead of joins."""
    workspace_ok = (
        sa.select(sa.literal_column("1"))
        .select_from(
            _RESOURCES.join(_BUILDS, _BUILDS.c.id == _RESOURCES.c.build_id).join(
                _WORKSPACES, _WORKSPACES.c.id == _BUILDS.c.workspace_id
            )
        )
        .where(
            _RESOURCES.c.id == _AGENTS.c.resource_id,
            ~_WORKSPACES.c.deleted,
            _BUILDS.c.build_number == latest_build_number_subquery(),
        )
        .correlate_except(_RESOURCES, _BUILDS, _WORKSPACES)
    )
    return sa.and_(
        _AGENTS.c.auth_token_hash == token_hash,
        ~_AGENTS.c.deleted,
        workspace_ok.exists(),
    )


def get_agent_in_workspace(conn: sa.Connection, *, agent_id: uuid.UUID) -> AgentInWorkspace | None:
    return _context(_BY_ID.first(conn, {"agent_id": agent_id}))


def get_authenticated_agent_by_token_hash(
    conn: sa.Connection, *, token_hash: str
) -> AgentInWorkspace | None:
    """The agent owning this token, if it may still act: its workspace is not
    deleted and its build is the workspace's latest (an older build's agent is
    rejected, as in Coder)."""
    return _context(_BY_TOKEN.first(conn, {"token_hash": token_hash}))


def bump_revision(conn: sa.Connection | Session, *, agent_id: uuid.UUID) -> None:
    """Marks the agent's view as changed; call it in the same transaction as
    any write to the agent's apps, scripts, log sources or metadata."""
    conn.execute(
        sa.update(_AGENTS).where(_AGENTS.c.id == agent_id).values(revision=_AGENTS.c.revision + 1)
    )


# Instance-identity login (Coder's GetWorkspaceAgentsByInstanceID, narrowed to
# what may log in): root agents only, on the latest build of a live workspace.
# Agents of older builds must never match, because clouds recycle instance ids.
_LOGIN_CANDIDATES_BY_INSTANCE_ID = (
    _agent_context_query()
    .where(
        _AGENTS.c.auth_instance_id == sa.bindparam("instance_id"),
        _AGENTS.c.parent_id.is_(None),
        ~_AGENTS.c.deleted,
        ~_WORKSPACES.c.deleted,
        _BUILDS.c.build_number == latest_build_number_subquery(),
    )
    .order_by(_AGENTS.c.name, _AGENTS.c.id)
)


def get_login_candidates_by_instance_id(
    conn: sa.Connection | Session, *, instance_id: str
) -> list[AgentInWorkspace]:
    """Root agents bound to ``instance_id`` whose build is the latest of their
    (not deleted) workspace, ordered by name."""
    rows = conn.execute(_LOGIN_CANDIDATES_BY_INSTANCE_ID, {"instance_id": instance_id}).all()
    return [ctx for ctx in map(_context, rows) if ctx is not None]


def set_agent_token_hash(
    conn: sa.Connection | Session, *, agent_id: uuid.UUID, token_hash: str
) -> None:
    """Replaces the agent's token (by its sha256 hex); the previous token stops working."""
    conn.execute(
        sa.update(_AGENTS).where(_AGENTS.c.id == agent_id).values(auth_token_hash=token_hash)
    )


_WORKSPACE_HEAD = sa.select(
    _WORKSPACES.c.deleted,
    sa.select(sa.func.max(_BUILDS.c.build_number))
    .where(_BUILDS.c.workspace_id == _WORKSPACES.c.id)
    .scalar_subquery()
    .label("latest_build_number"),
).where(_WORKSPACES.c.id == sa.bindparam("workspace_id"))


def get_workspace_head(conn: sa.Connection, *, workspace_id: uuid.UUID) -> Any:
    """(deleted, latest_build_number) of a workspace, or None."""
    return conn.execute(_WORKSPACE_HEAD, {"workspace_id": workspace_id}).first()
