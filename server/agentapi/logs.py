"""BatchCreateLogs: an agent's log lines, stored atomically under the
per-agent byte limit.

Serves ``coder.agent.v2.Agent/BatchCreateLogs`` (REST ``PATCH
/api/v2/workspaceagents/me/logs`` and the legacy ``PATCH me/startup-logs``).
Coder's rules: the server stamps the batch with its own time; each line is cut
to 1024 characters; the limit counts the bytes of the lines as sent (before
the cut); the batch that would cross the limit is refused whole and marks the
agent overflowed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from coder.agent.v2 import agent_pb2

from server.clock import Clock
from server.errors import InvalidArgument
from server.pubsub import AGENT_LOGS
from server.storage import logs as log_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

LEVELS = {
    agent_pb2.Log.Level.LEVEL_UNSPECIFIED: "info",  # Coder: unspecified means info
    agent_pb2.Log.Level.TRACE: "trace",
    agent_pb2.Log.Level.DEBUG: "debug",
    agent_pb2.Log.Level.INFO: "info",
    agent_pb2.Log.Level.WARN: "warn",
    agent_pb2.Log.Level.ERROR: "error",
}


def log_source_id(raw: bytes) -> uuid.UUID:
    if len(raw) != 16:
        raise InvalidArgument(
            "Invalid log source id.", detail=f"log source id must be 16 bytes, got {len(raw)}"
        )
    source = uuid.UUID(bytes=raw)
    # Coder: the nil UUID means the built-in "External" source.
    return log_store.EXTERNAL_SOURCE_ID if source.int == 0 else source


def prepare_batch(logs: Sequence[agent_pb2.Log]) -> tuple[list[log_store.NewLog], int]:
    """Validated rows (lines cut to 1024 characters) and the batch's size in
    bytes as sent, which is what the limit counts."""
    items: list[log_store.NewLog] = []
    append, levels, cut, new = items.append, LEVELS, log_store.MAX_LINE_CHARS, log_store.NewLog
    size = 0
    for log in logs:
        level = levels.get(log.level)
        if level is None:
            raise InvalidArgument(
                "Invalid log level provided.", detail=f'invalid log level: "{log.level}"'
            )
        output = log.output
        # UTF-8 bytes; an ASCII line is as long in bytes as in characters.
        size += len(output) if output.isascii() else len(output.encode())
        append(new(output[:cut], level))
    return items, size


def claim_batch(
    db: Database,
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    source_id: uuid.UUID,
    size: int,
    now: dt.datetime,
    limit_bytes: int,
    source_known: bool = False,
) -> bool:
    """Everything of one batch but its lines, inside the caller's
    transaction: the byte budget (or the overflow flag), the log source and
    the followers' notification. True when the limit refused the batch, whose
    lines must then not be stored."""
    key = str(agent_id)
    # On PostgreSQL the notification rides on the budget claim.
    notify = db.pubsub.sql_notification(AGENT_LOGS, key)
    claimed = log_store.claim_log_budget(
        conn, agent_id=agent_id, n=size, limit=limit_bytes, notify=notify
    )
    if not claimed:
        if log_store.mark_logs_overflowed(conn, agent_id=agent_id):
            # Followers learn of the overflow in-stream.
            db.pubsub.publish(conn, AGENT_LOGS, key)
        return True
    if source_id == log_store.EXTERNAL_SOURCE_ID and not source_known:
        log_store.insert_log_source_if_absent(
            conn,
            agent_id=agent_id,
            source_id=source_id,
            display_name=log_store.EXTERNAL_SOURCE_NAME,
            icon=log_store.EXTERNAL_SOURCE_ICON,
            now=now,
        )
    if notify is None:
        db.pubsub.publish(conn, AGENT_LOGS, key)
    return False


@dataclasses.dataclass
class NewBatch:
    """A validated batch of one agent, ready to store."""

    agent_id: uuid.UUID
    source_id: uuid.UUID
    items: Sequence[log_store.NewLog]
    size: int


def write_batches(
    db: Database,
    conn: sa.Connection,
    batches: Sequence[NewBatch],
    *,
    now: dt.datetime,
    limit_bytes: int,
    source_known: Callable[[NewBatch], bool] = lambda _batch: False,
) -> list[bool]:
    """Batches inside the caller's transaction: each is judged on its own
    (budget, overflow, source, notification), then the lines of every
    accepted one go in one statement (one COPY / executemany). Per batch:
    True when the limit refused it."""
    exceeded = [
        claim_batch(
            db,
            conn,
            agent_id=b.agent_id,
            source_id=b.source_id,
            size=b.size,
            now=now,
            limit_bytes=limit_bytes,
            source_known=source_known(b),
        )
        for b in batches
    ]
    accepted = [
        log_store.LogBatch(b.agent_id, b.source_id, b.items)
        for b, refused in zip(batches, exceeded, strict=True)
        if not refused
    ]
    if accepted:
        log_store.insert_log_batches(conn, accepted, created_at=now)
    return exceeded


def batch_create_logs(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    source_id: uuid.UUID,
    logs: Sequence[agent_pb2.Log],
    limit_bytes: int,
) -> bool:
    """Stores one batch in its own transaction; True when the limit refused
    it. (The servicer goes through LogWriter, which commits concurrent
    batches together.)"""
    if not logs:
        return False
    items, size = prepare_batch(logs)
    batch = NewBatch(caller.agent.id, source_id, items, size)
    with db.write() as conn:
        (exceeded,) = write_batches(db, conn, [batch], now=clock.now(), limit_bytes=limit_bytes)
    return exceeded
