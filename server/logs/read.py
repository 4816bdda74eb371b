"""Reading an agent's logs: one page, or the backlog followed live.

Serves ``agentplane.logs.v1.LogsService/ListWorkspaceAgentLogs`` and
``/WatchWorkspaceAgentLogs`` (REST ``GET /api/v2/workspaceagents/{id}/logs``,
its ``?follow`` WebSocket/SSE forms and the legacy ``/startup-logs``).

A follower subscribes before it reads the backlog, so nothing stored in
between is missed; it then re-reads ``id > last sent`` whenever a batch is
announced and, in case a notification is lost, on a timer. Resuming with
``after`` = the last id seen gives no gaps and no duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from agentplane.logs.v1 import logs_pb2

from server.errors import InvalidArgument
from server.prototime import to_timestamp
from server.pubsub import AGENT_LOGS, WORKSPACE
from server.storage import agents as agent_store
from server.storage import logs as log_store
from server.storage.db import Database
from server.workspaceagents.agents import readable_agent

# Rows per page and per streamed message: keeps each message far below the
# 4 MiB gRPC cap (1024-character lines).
PAGE_SIZE = 1000

Event = logs_pb2.WatchWorkspaceAgentLogsResponse.Event


def log_message(row: Any) -> logs_pb2.Log:
    return logs_pb2.Log(
        id=row.id,
        created_at=to_timestamp(row.created_at),
        output=row.output,
        level=row.level,
        source_id=str(row.log_source_id),
    )


def _check_cursor(name: str, value: int) -> None:
    if value < 0:
        detail = f'Query param "{name}" must be an integer greater than or equal to zero.'
        raise InvalidArgument(detail, validations=[(name, detail)])


def list_logs(
    db: Database, *, user: Any, request: logs_pb2.ListWorkspaceAgentLogsRequest
) -> logs_pb2.ListWorkspaceAgentLogsResponse:
    found = readable_agent(db, user=user, agent_id_text=request.agent_id)
    _check_cursor("after", request.after)
    before = request.before if request.HasField("before") else None
    if before is not None:
        _check_cursor("before", before)
    limit = request.limit if 0 < request.limit <= PAGE_SIZE else PAGE_SIZE
    with db.read() as conn:
        rows = log_store.list_logs_page(
            conn, agent_id=found.agent.id, after=request.after, before=before, limit=limit + 1
        )
        state = log_store.get_log_state(conn, agent_id=found.agent.id)
    return logs_pb2.ListWorkspaceAgentLogsResponse(
        logs=[log_message(r) for r in rows[:limit]],
        more=len(rows) > limit,
        logs_overflowed=bool(state.logs_overflowed),
    )


def _page(db: Database, agent_id: uuid.UUID, after: int) -> list[Any]:
    with db.read() as conn:
        return log_store.list_logs_page(
            conn, agent_id=agent_id, after=after, before=None, limit=PAGE_SIZE
        )


@dataclasses.dataclass(frozen=True)
class _Tick:
    """What one wake-up of a follower found after its cursor."""

    messages: tuple[logs_pb2.WatchWorkspaceAgentLogsResponse, ...]
    last: int
    overflowed: bool
    replaced: bool
    # A full page was read: more may follow right away.
    more: bool = False


class FollowCache:
    """Followers of one agent share reads: after a notification, the first
    follower at a cursor reads and the others reuse its result. An entry is
    only reused by a follower woken by a notification the read started after
    (so it includes every row that notification announced)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[tuple[uuid.UUID, int], tuple[int, _Tick]] = {}
        self._max = max_entries

    def get(self, key: tuple[uuid.UUID, int], seq: int) -> _Tick | None:
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] >= seq else None

    def put(self, key: tuple[uuid.UUID, int], seq: int, tick: _Tick) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (seq, tick)


def _tick(db: Database, found: agent_store.AgentInWorkspace, after: int) -> _Tick:
    """At most one page: a follower far behind catches up over several ticks,
    yielding the event loop between them."""
    messages = []
    last = after
    rows = _page(db, found.agent.id, after)
    if rows:
        last = rows[-1].id
        messages.append(
            logs_pb2.WatchWorkspaceAgentLogsResponse(logs=[log_message(r) for r in rows])
        )
    with db.read() as conn:
        state = log_store.get_log_state(conn, agent_id=found.agent.id)
        head = agent_store.get_workspace_head(conn, workspace_id=found.workspace.id)
    replaced = head is None or head.deleted or head.latest_build_number != found.build.build_number
    return _Tick(
        tuple(messages),
        last,
        bool(state and state.logs_overflowed),
        replaced,
        more=len(rows) == PAGE_SIZE,
    )


async def watch_logs(
    db: Database,
    *,
    user: Any,
    request: logs_pb2.WatchWorkspaceAgentLogsRequest,
    repoll_seconds: float,
    cache: FollowCache,
) -> AsyncIterator[logs_pb2.WatchWorkspaceAgentLogsResponse]:
    found = readable_agent(db, user=user, agent_id_text=request.agent_id)
    _check_cursor("after", request.after)
    agent_id = found.agent.id
    # Subscribed before the backlog is read, so nothing committed in between
    # is missed.
    sub = db.pubsub.subscribe((AGENT_LOGS, str(agent_id)), (WORKSPACE, str(found.workspace.id)))
    try:
        # The backlog goes out a page at a time, yielding the loop between
        # pages, so a million-line backlog never stalls other calls.
        last = request.after
        while True:
            rows = _page(db, agent_id, last)
            complete = len(rows) < PAGE_SIZE
            if rows:
                last = rows[-1].id
            yield logs_pb2.WatchWorkspaceAgentLogsResponse(
                logs=[log_message(r) for r in rows], backlog=True, backlog_complete=complete
            )
            if complete:
                break
            await asyncio.sleep(0)
        told_overflow = False
        woken = True
        while True:
            seq = sub.sequence()
            tick = cache.get((agent_id, last), seq) if woken else None
            if tick is None:
                tick = _tick(db, found, last)
                cache.put((agent_id, last), seq, tick)
            for message in tick.messages:
                yield message
            last = tick.last
            if tick.overflowed and not told_overflow:
                told_overflow = True
                yield logs_pb2.WatchWorkspaceAgentLogsResponse(event=Event.EVENT_LOGS_OVERFLOWED)
            if tick.more:
                # Still catching up: read on after letting others run.
                woken = False
                await asyncio.sleep(0)
                continue
            if tick.replaced:
                # Anything stored before the replacement has been sent above.
                yield logs_pb2.WatchWorkspaceAgentLogsResponse(event=Event.EVENT_AGENT_REPLACED)
                return
            # A timer wake-up (no notification) always reads for itself: it is
            # how a lost notification is recovered.
            woken = await sub.wait(repoll_seconds)
    finally:
        sub.close()
