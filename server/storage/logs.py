"""Agent logs and log sources: tables and queries.

Log rows are the hottest write in the system, so ingestion is one
transaction of SQLAlchemy Core statements (executemany on SQLite, COPY on
PostgreSQL) rather than ORM objects. The per-agent byte budget is enforced by
one conditional UPDATE of ``workspace_agents.logs_length``, so two batches
racing for the last bytes cannot both pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_pg
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlmodel import Field, SQLModel

from server.storage.agents import WorkspaceAgent, bump_revision
from server.storage.types import required_timestamp

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
# Coder's built-in source for logs sent without one (the nil UUID).
EXTERNAL_SOURCE_ID = uuid.UUID("3b579bf4-1ed8-4b99-87a8-e9a1e3410410")
EXTERNAL_SOURCE_NAME = "External"
EXTERNAL_SOURCE_ICON = "/emojis/1f310.png"
# Coder stores output as VARCHAR(1024): longer lines are cut, silently.
MAX_LINE_CHARS = 1024


class WorkspaceAgentLogSource(SQLModel, table=True):
    __tablename__ = "workspace_agent_log_sources"

    workspace_agent_id: uuid.UUID = Field(
        foreign_key="workspace_agents.id", primary_key=True, ondelete="CASCADE"
    )
    id: uuid.UUID = Field(primary_key=True)
    created_at: dt.datetime = required_timestamp()
    display_name: str = Field(max_length=127)
    icon: str = Field(default="", sa_type=sa.Text)


class WorkspaceAgentLog(SQLModel, table=True):
    __tablename__ = "workspace_agent_logs"
    __table_args__ = (sa.Index("ix_workspace_agent_logs_agent_id_id", "agent_id", "id"),)

    # BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
    )
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", ondelete="CASCADE")
    created_at: dt.datetime = required_timestamp()
    output: str = Field(max_length=MAX_LINE_CHARS)
    level: str = Field(default="info", max_length=8)
    log_source_id: uuid.UUID


_SOURCES = WorkspaceAgentLogSource.__table__
_LOGS = WorkspaceAgentLog.__table__
_AGENTS = WorkspaceAgent.__table__

_SOURCES_BY_AGENTS = (
    sa.select(_SOURCES)
    .where(_SOURCES.c.workspace_agent_id.in_(sa.bindparam("agent_ids", expanding=True)))
    .order_by(_SOURCES.c.created_at, _SOURCES.c.id)
)
_SOURCE = sa.select(_SOURCES).where(
    _SOURCES.c.workspace_agent_id == sa.bindparam("agent_id"),
    _SOURCES.c.id == sa.bindparam("source_id"),
)
_CLAIM_BUDGET = (
    sa.update(_AGENTS)
    .where(
        _AGENTS.c.id == sa.bindparam("agent_id"),
        ~_AGENTS.c.logs_overflowed,
        _AGENTS.c.logs_length + sa.bindparam("n", type_=sa.Integer) <= sa.bindparam("limit"),
    )
    .values(logs_length=_AGENTS.c.logs_length + sa.bindparam("n", type_=sa.Integer))
    .returning(_AGENTS.c.logs_length)
)
# The same claim that also queues the change notification (PostgreSQL): one
# round trip instead of two, and no notification when nothing was claimed.
_CLAIM_BUDGET_NOTIFY = _CLAIM_BUDGET.returning(
    sa.func.pg_notify(sa.bindparam("channel"), sa.bindparam("payload"))
)
_MARK_OVERFLOWED = (
    sa.update(_AGENTS)
    .where(_AGENTS.c.id == sa.bindparam("agent_id"), ~_AGENTS.c.logs_overflowed)
    .values(logs_overflowed=True)
    .returning(_AGENTS.c.id)
)
_LOG_STATE = sa.select(_AGENTS.c.logs_length, _AGENTS.c.logs_overflowed).where(
    _AGENTS.c.id == sa.bindparam("agent_id")
)


def list_log_sources_by_agent_ids(conn: sa.Connection, *, agent_ids: list[uuid.UUID]) -> list[Any]:
    if not agent_ids:
        return []
    return list(conn.execute(_SOURCES_BY_AGENTS, {"agent_ids": agent_ids}))


def get_log_source(conn: sa.Connection, *, agent_id: uuid.UUID, source_id: uuid.UUID) -> Any:
    return conn.execute(_SOURCE, {"agent_id": agent_id, "source_id": source_id}).first()


def insert_log_source_if_absent(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    source_id: uuid.UUID,
    display_name: str,
    icon: str,
    now: dt.datetime,
) -> tuple[Any, bool]:
    """(source row, created). An existing id is left as it is (idempotent)."""
    existing = get_log_source(conn, agent_id=agent_id, source_id=source_id)
    if existing is not None:
        return existing, False
    row = {
        "workspace_agent_id": agent_id,
        "id": source_id,
        "created_at": now,
        "display_name": display_name,
        "icon": icon,
    }
    # ON CONFLICT DO NOTHING instead of a savepoint: another request may have
    # created it since our read, and pysqlite's savepoints would commit early.
    insert = (sa_sqlite.insert if conn.dialect.name == "sqlite" else sa_pg.insert)(_SOURCES)
    created = conn.execute(insert.values(**row).on_conflict_do_nothing()).rowcount == 1
    if not created:
        return get_log_source(conn, agent_id=agent_id, source_id=source_id), False
    # Log sources are part of the agent's cached view.
    bump_revision(conn, agent_id=agent_id)
    return get_log_source(conn, agent_id=agent_id, source_id=source_id), True


def claim_log_budget(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    n: int,
    limit: int,
    notify: tuple[str, str] | None = None,
) -> bool:
    """Adds n bytes to the agent's log total if that stays within the limit
    and the agent has not overflowed; False (and nothing changed) otherwise.
    ``notify``: (channel, payload) of a PostgreSQL notification to queue in
    the same statement, only when the claim succeeds."""
    params: dict[str, Any] = {"agent_id": agent_id, "n": n, "limit": limit}
    if notify is None:
        return conn.execute(_CLAIM_BUDGET, params).first() is not None
    params["channel"], params["payload"] = notify
    return conn.execute(_CLAIM_BUDGET_NOTIFY, params).first() is not None


def mark_logs_overflowed(conn: sa.Connection, *, agent_id: uuid.UUID) -> bool:
    """Sets the overflow flag; True only for the call that set it."""
    return conn.execute(_MARK_OVERFLOWED, {"agent_id": agent_id}).first() is not None


def get_log_state(conn: sa.Connection, *, agent_id: uuid.UUID) -> Any:
    return conn.execute(_LOG_STATE, {"agent_id": agent_id}).first()


class NewLog(NamedTuple):
    # A NamedTuple, not a dataclass: a batch builds a hundred of these per
    # call, and a tuple is built in a third of the time.
    output: str
    level: str


@dataclasses.dataclass(frozen=True)
class LogBatch:
    agent_id: uuid.UUID
    source_id: uuid.UUID
    logs: Sequence[NewLog]


def insert_logs(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    source_id: uuid.UUID,
    created_at: dt.datetime,
    logs: Sequence[NewLog],
) -> None:
    """One batch, in the caller's transaction (see insert_log_batches)."""
    insert_log_batches(conn, [LogBatch(agent_id, source_id, logs)], created_at=created_at)


def insert_log_batches(
    conn: sa.Connection, batches: Sequence[LogBatch], *, created_at: dt.datetime
) -> None:
    """Bulk insert of several batches (several agents) in the caller's
    transaction, in one statement: COPY on PostgreSQL, executemany elsewhere."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(
            "COPY workspace_agent_logs (agent_id, created_at, output, level, log_source_id) "
            "FROM STDIN"
        ) as copy:
            for batch in batches:
                agent_id, source_id = batch.agent_id, batch.source_id
                for item in batch.logs:
                    copy.write_row((agent_id, created_at, item.output, item.level, source_id))
        return
    # SQLite: the driver's executemany with values already in the column
    # formats SQLAlchemy uses there (UUID as 32 hex digits, naive UTC text),
    # skipping per-row parameter processing on the hottest write.
    stamp = created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn.exec_driver_sql(
        "INSERT INTO workspace_agent_logs (agent_id, created_at, output, level, log_source_id)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (agent_hex, stamp, item.output, item.level, source_hex)
            for batch in batches
            for agent_hex, source_hex in ((batch.agent_id.hex, batch.source_id.hex),)
            for item in batch.logs
        ],
    )


_LOGS_PAGE = (
    sa.select(_LOGS)
    .where(
        _LOGS.c.agent_id == sa.bindparam("agent_id"),
        _LOGS.c.id > sa.bindparam("after"),
        _LOGS.c.id < sa.bindparam("before"),
    )
    .order_by(_LOGS.c.id)
    .limit(sa.bindparam("limit"))
)
# Ids are BIGINT: "no upper bound" is the largest one.
MAX_LOG_ID = 2**63 - 1


def list_logs_page(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    after: int,
    before: int | None,
    limit: int,
) -> list[Any]:
    """Logs with after < id < before in id order, at most `limit` — one index
    range scan on (agent_id, id), whatever the table's size."""
    return list(
        conn.execute(
            _LOGS_PAGE,
            {
                "agent_id": agent_id,
                "after": after,
                "before": before if before is not None else MAX_LOG_ID,
                "limit": limit,
            },
        )
    )
