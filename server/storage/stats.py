"""Agent statistics reports (``UpdateStats``, legacy ``POST me/report-stats``):
one row per report, as Coder's ``workspace_agent_stats``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import json_column, required_timestamp


class WorkspaceAgentStat(SQLModel, table=True):
    __tablename__ = "workspace_agent_stats"
    __table_args__ = (
        sa.Index("ix_workspace_agent_stats_agent_id_created_at", "agent_id", "created_at"),
    )

    # BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    )
    created_at: dt.datetime = required_timestamp()
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", ondelete="CASCADE")
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", index=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    connections_by_proto: dict[str, int] = json_column(dict)
    connection_count: int = Field(default=0, sa_type=sa.BigInteger)
    connection_median_latency_ms: float = Field(default=0.0)
    rx_packets: int = Field(default=0, sa_type=sa.BigInteger)
    rx_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    tx_packets: int = Field(default=0, sa_type=sa.BigInteger)
    tx_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    session_count_vscode: int = Field(default=0, sa_type=sa.BigInteger)
    session_count_jetbrains: int = Field(default=0, sa_type=sa.BigInteger)
    session_count_reconnecting_pty: int = Field(default=0, sa_type=sa.BigInteger)
    session_count_ssh: int = Field(default=0, sa_type=sa.BigInteger)
    # API 2.11+: live sessions keyed by client app name.
    session_counts: dict[str, int] = json_column(dict)


_STATS = WorkspaceAgentStat.__table__
_INSERT = _STATS.insert()
_BY_AGENT = (
    sa.select(_STATS).where(_STATS.c.agent_id == sa.bindparam("agent_id")).order_by(_STATS.c.id)
)


def insert_stats(conn: sa.Connection, *, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts report rows (dicts of the table's columns, without ``id``)."""
    if rows:
        conn.execute(_INSERT, list(rows))


def list_stats_by_agent(conn: sa.Connection, *, agent_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_BY_AGENT, {"agent_id": agent_id}))
