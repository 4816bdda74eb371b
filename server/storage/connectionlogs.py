"""Connection logs (``ReportConnection``): one row per connection to a
workspace (SSH, VS Code, JetBrains, reconnecting PTY, port forwarding), opened
by the CONNECT report and closed by the DISCONNECT report with the same
connection id — Coder's ``connection_logs``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from server.storage.types import (
    new_id,
    required_timestamp,
    string_column,
    text_column,
    utc_timestamp,
)

CONNECTION_TYPES = ("ssh", "vscode", "jetbrains", "reconnecting_pty", "port_forwarding")


class ConnectionLog(SQLModel, table=True):
    __tablename__ = "connection_logs"
    # Coder upserts on (connection_id, workspace_id, agent_name).
    __table_args__ = (sa.UniqueConstraint("connection_id", "workspace_id", "agent_name"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    connect_time: dt.datetime = required_timestamp()
    disconnect_time: dt.datetime | None = utc_timestamp()
    workspace_id: uuid.UUID = Field(foreign_key="workspaces.id", index=True, ondelete="CASCADE")
    workspace_owner_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    workspace_name: str = string_column(64)
    agent_id: uuid.UUID = Field(foreign_key="workspace_agents.id", ondelete="CASCADE")
    agent_name: str = string_column(64)
    type: str = string_column(32)
    # The client application (API 2.13 `app_name`), empty when unknown.
    app_name: str = text_column(default="")
    ip: str | None = string_column(64, default=None)
    # Set by the DISCONNECT report (the session's exit status).
    code: int | None = Field(default=None)
    disconnect_reason: str | None = text_column(default=None)
    connection_id: uuid.UUID


_LOGS = ConnectionLog.__table__
_BY_KEY = sa.select(_LOGS).where(
    _LOGS.c.connection_id == sa.bindparam("connection_id"),
    _LOGS.c.workspace_id == sa.bindparam("workspace_id"),
    _LOGS.c.agent_name == sa.bindparam("agent_name"),
)
# A DISCONNECT closes the row once; a repeated one changes nothing.
_CLOSE = (
    sa.update(_LOGS)
    .where(_LOGS.c.id == sa.bindparam("log_id"), _LOGS.c.disconnect_time.is_(None))
    .values(
        disconnect_time=sa.bindparam("at"),
        code=sa.bindparam("code"),
        disconnect_reason=sa.bindparam("reason"),
    )
)
_BY_WORKSPACE = (
    sa.select(_LOGS)
    .where(_LOGS.c.workspace_id == sa.bindparam("workspace_id"))
    .order_by(_LOGS.c.connect_time)
)


def upsert_connection_log(
    conn: sa.Connection,
    *,
    row: dict[str, Any],
    disconnected: bool,
) -> None:
    """CONNECT inserts the row; DISCONNECT closes it, or inserts it already
    closed when the CONNECT never arrived (as Coder's upsert does)."""
    key = {k: row[k] for k in ("connection_id", "workspace_id", "agent_name")}
    existing = conn.execute(_BY_KEY, key).first()
    if existing is None:
        values = dict(row)
        if disconnected:
            values["disconnect_time"] = row["connect_time"]
        else:
            values["code"] = None
            values["disconnect_reason"] = None
        try:
            with conn.begin_nested():
                conn.execute(_LOGS.insert(), {"id": uuid.uuid4(), **values})
            return
        except sa.exc.IntegrityError:
            # The other half of the pair raced in; fall through to update it.
            existing = conn.execute(_BY_KEY, key).first()
    if disconnected and existing is not None:
        conn.execute(
            _CLOSE,
            {
                "log_id": existing.id,
                "at": row["connect_time"],
                "code": row.get("code"),
                "reason": row.get("disconnect_reason"),
            },
        )


def list_connection_logs_by_workspace(conn: sa.Connection, *, workspace_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(_BY_WORKSPACE, {"workspace_id": workspace_id}))
