"""Resource monitoring: which resources an agent samples (memory, volumes;
from the workspace spec, like Terraform's ``coder_agent.resources_monitoring``)
and the usage datapoints it pushes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.clock import as_utc
from server.storage.types import json_column, required_timestamp, string_column

# Datapoints older than this are dropped as new ones arrive: the table holds
# a recent window per agent, not a history.
USAGE_RETENTION = dt.timedelta(hours=24)


class WorkspaceAgentMemoryResourceMonitor(SQLModel, table=True):
    __tablename__ = "workspace_agent_memory_resource_monitors"

    agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    enabled: bool = Field(default=True)
    # Percent of memory in use that counts as "not OK".
    threshold: int = Field(default=0)
    created_at: dt.datetime = required_timestamp()


class WorkspaceAgentVolumeResourceMonitor(SQLModel, table=True):
    __tablename__ = "workspace_agent_volume_resource_monitors"

    agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    path: str = string_column(1024, primary_key=True)
    enabled: bool = Field(default=True)
    threshold: int = Field(default=0)
    created_at: dt.datetime = required_timestamp()


class WorkspaceAgentResourceUsage(SQLModel, table=True):
    __tablename__ = "workspace_agent_resource_usage"

    # The agent re-sends its recent window on every push; a datapoint is
    # keyed by when it was collected, so repeats are stored once.
    agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    collected_at: dt.datetime = Field(sa_type=sa.DateTime(timezone=True), primary_key=True)
    memory_used: int | None = Field(default=None, sa_type=sa.BigInteger)
    memory_total: int | None = Field(default=None, sa_type=sa.BigInteger)
    # [{"volume": path, "used": bytes, "total": bytes}, ...]
    volumes: list[dict[str, Any]] = json_column(list)


_MEMORY = WorkspaceAgentMemoryResourceMonitor.__table__
_VOLUMES = WorkspaceAgentVolumeResourceMonitor.__table__
_USAGE = WorkspaceAgentResourceUsage.__table__

_MEMORY_BY_AGENT = sa.select(_MEMORY).where(_MEMORY.c.agent_id == sa.bindparam("agent_id"))
_VOLUMES_BY_AGENT = (
    sa.select(_VOLUMES)
    .where(_VOLUMES.c.agent_id == sa.bindparam("agent_id"))
    .order_by(_VOLUMES.c.path)
)
_USAGE_KEYS = sa.select(_USAGE.c.collected_at).where(
    _USAGE.c.agent_id == sa.bindparam("agent_id"),
    _USAGE.c.collected_at.in_(sa.bindparam("times", expanding=True)),
)
_PRUNE = sa.delete(_USAGE).where(
    _USAGE.c.agent_id == sa.bindparam("agent_id"), _USAGE.c.collected_at < sa.bindparam("before")
)
_USAGE_BY_AGENT = (
    sa.select(_USAGE)
    .where(_USAGE.c.agent_id == sa.bindparam("agent_id"))
    .order_by(_USAGE.c.collected_at)
)


def get_memory_monitor(conn: sa.Connection, *, agent_id: uuid.UUID) -> Any:
    return conn.execute(_MEMORY_BY_AGENT, {"agent_id": agent_id}).first()


def list_volume_monitors(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_VOLUMES_BY_AGENT, {"agent_id": agent_id}))


def insert_usage(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    datapoints: Sequence[dict[str, Any]],
    now: dt.datetime,
) -> int:
    """Stores datapoints not stored yet (by collected_at) and drops the ones
    past the retention window; returns how many were new."""
    by_time = {d["collected_at"]: d for d in datapoints}
    fresh: list[dict[str, Any]] = []
    if by_time:
        rows = conn.execute(_USAGE_KEYS, {"agent_id": agent_id, "times": list(by_time)})
        known = {as_utc(row.collected_at) for row in rows}
        cutoff = now - USAGE_RETENTION
        fresh = [
            {"agent_id": agent_id, **d}
            for t, d in by_time.items()
            if t not in known and t >= cutoff
        ]
    if fresh:
        conn.execute(_USAGE.insert(), fresh)
    conn.execute(_PRUNE, {"agent_id": agent_id, "before": now - USAGE_RETENTION})
    return len(fresh)


def list_usage(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_USAGE_BY_AGENT, {"agent_id": agent_id}))


def monitors_for(
    *,
    agent_id: uuid.UUID,
    memory: Any,
    volumes: Sequence[Any],
    now: dt.datetime,
) -> list[SQLModel]:
    """The monitor rows a spec's ``resources_monitoring`` provisions
    (``memory``/``volumes`` items have enabled, threshold and, for volumes, path)."""
    rows: list[SQLModel] = []
    if memory is not None:
        rows.append(
            WorkspaceAgentMemoryResourceMonitor(
                agent_id=agent_id,
                enabled=memory.enabled,
                threshold=memory.threshold,
                created_at=now,
            )
        )
    rows.extend(
        WorkspaceAgentVolumeResourceMonitor(
            agent_id=agent_id, path=v.path, enabled=v.enabled, threshold=v.threshold, created_at=now
        )
        for v in volumes
    )
    return rows
