"""What an agent reports about itself, stored on its ``workspace_agents`` row:
connection timestamps, lifecycle, startup facts — and the workspace's
last-used time its sessions bump. Statements are built once (hot paths)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from server.storage.agents import WorkspaceAgent
from server.storage.types import NulFreeJSON
from server.storage.workspaces import Workspace

_AGENTS = WorkspaceAgent.__table__
_WORKSPACES = Workspace.__table__

# Coder's connection monitor on connect and on every tick: first contact
# once, last contact now, not disconnected, seen by this replica.
_MARK_CONNECTED = (
    sa.update(_AGENTS)
    .where(_AGENTS.c.id == sa.bindparam("agent_id"))
    .values(
        first_connected_at=sa.func.coalesce(_AGENTS.c.first_connected_at, sa.bindparam("now")),
        last_connected_at=sa.bindparam("now"),
        disconnected_at=None,
        last_connected_replica_id=sa.bindparam("replica_id"),
        updated_at=sa.bindparam("now"),
    )
)
# Only the replica that holds the session may end it, and only once: a newer
# session on another replica (or an earlier disconnect) is left alone.
_MARK_DISCONNECTED = (
    sa.update(_AGENTS)
    .where(
        _AGENTS.c.id == sa.bindparam("agent_id"),
        _AGENTS.c.last_connected_replica_id == sa.bindparam("replica_id"),
        _AGENTS.c.disconnected_at.is_(None),
        _AGENTS.c.last_connected_at <= sa.bindparam("seen_until"),
    )
    .values(disconnected_at=sa.bindparam("now"), updated_at=sa.bindparam("now"))
)
_UPDATE_LIFECYCLE = (
    sa.update(_AGENTS)
    .where(_AGENTS.c.id == sa.bindparam("agent_id"))
    .values(
        lifecycle_state=sa.bindparam("state"),
        started_at=sa.bindparam("started_at"),
        ready_at=sa.bindparam("ready_at"),
    )
)
_UPDATE_STARTUP = (
    sa.update(_AGENTS)
    .where(_AGENTS.c.id == sa.bindparam("agent_id"))
    .values(
        version=sa.bindparam("version"),
        expanded_directory=sa.bindparam("expanded_directory"),
        subsystems=sa.bindparam("subsystems", type_=NulFreeJSON),
        api_version=sa.bindparam("api_version"),
    )
)
_BUMP_LAST_USED = (
    sa.update(_WORKSPACES)
    .where(
        _WORKSPACES.c.id == sa.bindparam("workspace_id"),
        sa.or_(
            _WORKSPACES.c.last_used_at.is_(None),
            _WORKSPACES.c.last_used_at < sa.bindparam("now"),
        ),
    )
    .values(last_used_at=sa.bindparam("now"))
)


def mark_connected(
    conn: sa.Connection, *, agent_id: uuid.UUID, replica_id: uuid.UUID, now: dt.datetime
) -> None:
    conn.execute(_MARK_CONNECTED, {"agent_id": agent_id, "replica_id": replica_id, "now": now})


def mark_connected_many(
    conn: sa.Connection,
    *,
    agent_ids: list[uuid.UUID],
    replica_id: uuid.UUID,
    now: dt.datetime,
) -> None:
    """mark_connected for many agents in one statement batch (the refresh
    of every agent holding a stream, e.g. its tunnel)."""
    if agent_ids:
        conn.execute(
            _MARK_CONNECTED,
            [{"agent_id": a, "replica_id": replica_id, "now": now} for a in agent_ids],
        )


def mark_disconnected(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    replica_id: uuid.UUID,
    seen_until: dt.datetime,
    now: dt.datetime,
) -> bool:
    """Sets disconnected_at unless the agent was seen after ``seen_until``
    (it reconnected) or another replica holds it; True if it was set."""
    result = conn.execute(
        _MARK_DISCONNECTED,
        {"agent_id": agent_id, "replica_id": replica_id, "seen_until": seen_until, "now": now},
    )
    return result.rowcount > 0


def update_lifecycle(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    state: str,
    started_at: dt.datetime | None,
    ready_at: dt.datetime | None,
) -> None:
    conn.execute(
        _UPDATE_LIFECYCLE,
        {"agent_id": agent_id, "state": state, "started_at": started_at, "ready_at": ready_at},
    )


def update_startup(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    version: str,
    expanded_directory: str,
    subsystems: Sequence[str],
    api_version: str,
) -> None:
    conn.execute(
        _UPDATE_STARTUP,
        {
            "agent_id": agent_id,
            "version": version,
            "expanded_directory": expanded_directory,
            "subsystems": list(subsystems),
            "api_version": api_version,
        },
    )


def bump_workspace_last_used(
    conn: sa.Connection, *, workspace_id: uuid.UUID, now: dt.datetime
) -> None:
    """Moves last_used_at forward to now (never backwards)."""
    conn.execute(_BUMP_LAST_USED, {"workspace_id": workspace_id, "now": now})
