"""Script run timings (``ScriptCompleted``): when each of an agent's scripts
ran, how it ended; read back to say which startup script an agent waits on."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.scripts import WorkspaceAgentScript
from server.storage.types import required_timestamp, string_column

STAGES = ("start", "stop", "cron")
STATUSES = ("ok", "exit_failure", "timed_out", "pipes_left_open")


class WorkspaceAgentScriptTiming(SQLModel, table=True):
    __tablename__ = "workspace_agent_script_timings"

    # Coder keys a timing by (script_id, started_at): a retried report of the
    # same run is the same row.
    script_id: uuid.UUID = Field(
        foreign_key="workspace_agent_scripts.id", primary_key=True, ondelete="CASCADE"
    )
    started_at: dt.datetime = Field(sa_type=sa.DateTime(timezone=True), primary_key=True)
    ended_at: dt.datetime = required_timestamp()
    exit_code: int = Field(default=0)
    stage: str = string_column(8)
    status: str = string_column(16)
    created_at: dt.datetime = required_timestamp()


_TIMINGS = WorkspaceAgentScriptTiming.__table__
_SCRIPTS = WorkspaceAgentScript.__table__

_SCRIPT_OF_AGENT = sa.select(_SCRIPTS.c.id).where(
    _SCRIPTS.c.id == sa.bindparam("script_id"),
    _SCRIPTS.c.workspace_agent_id == sa.bindparam("agent_id"),
)
_EXISTING = sa.select(_TIMINGS.c.script_id).where(
    _TIMINGS.c.script_id == sa.bindparam("script_id"),
    _TIMINGS.c.started_at == sa.bindparam("started_at"),
)
_INSERT = _TIMINGS.insert()
_TIMINGS_BY_AGENT_SINCE = (
    sa.select(_TIMINGS, _SCRIPTS.c.display_name)
    .select_from(_TIMINGS.join(_SCRIPTS, _SCRIPTS.c.id == _TIMINGS.c.script_id))
    .where(
        _SCRIPTS.c.workspace_agent_id == sa.bindparam("agent_id"),
        _TIMINGS.c.stage == sa.bindparam("stage"),
        _TIMINGS.c.started_at >= sa.bindparam("since"),
    )
    .order_by(_TIMINGS.c.started_at)
)


def is_script_of_agent(conn: sa.Connection, *, script_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
    return (
        conn.execute(_SCRIPT_OF_AGENT, {"script_id": script_id, "agent_id": agent_id}).first()
        is not None
    )


def insert_timing(
    conn: sa.Connection,
    *,
    script_id: uuid.UUID,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    exit_code: int,
    stage: str,
    status: str,
    now: dt.datetime,
) -> bool:
    """Stores a timing; False (nothing written) if this run was already reported."""
    key = {"script_id": script_id, "started_at": started_at}
    if conn.execute(_EXISTING, key).first() is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(
                _INSERT,
                {
                    **key,
                    "ended_at": ended_at,
                    "exit_code": exit_code,
                    "stage": stage,
                    "status": status,
                    "created_at": now,
                },
            )
    except sa.exc.IntegrityError:
        # The same report raced in from another request.
        return False
    return True


def list_timings_since(
    conn: sa.Connection, *, agent_id: uuid.UUID, stage: str, since: dt.datetime
) -> list[Any]:
    """The agent's timings of one stage whose runs started at or after ``since``."""
    return list(
        conn.execute(
            _TIMINGS_BY_AGENT_SINCE, {"agent_id": agent_id, "stage": stage, "since": since}
        )
    )
