"""WatchWorkspaceAgentMetadata: an agent's metadata as it changes, for the
watch-metadata doors (SSE ``GET /workspaceagents/{id}/watch-metadata`` and
WebSocket ``watch-metadata-ws``, which come with the facade's new front).

As Coder: the full list sorted by display order then key, sent at once and
then at most once a second when something changed, and every 5 s regardless
so that ages stay current. The agent need not be connected. Values are
written behind (within a second of the report), so the stream reads the
agent's rows once a second while someone watches instead of waiting for a
notification: the cost is per watcher, never per reporting agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb

from server.clock import Clock, as_utc
from server.prototime import to_timestamp
from server.storage import metadata as metadata_store
from server.storage.db import Database
from server.workspaceagents.agents import readable_agent

SEND_INTERVAL_SECONDS = 1.0
KEEPALIVE_SECONDS = 5.0


def metadata_messages(rows: list[Any], now: dt.datetime) -> list[cpb.WorkspaceAgentMetadata]:
    rows = sorted(rows, key=lambda r: (r.display_order, r.key))
    out = []
    for row in rows:
        collected = as_utc(row.collected_at)
        result = cpb.WorkspaceAgentMetadataResult(value=row.value, error=row.error)
        if collected is not None:
            result.collected_at.CopyFrom(to_timestamp(collected))
            result.age = int((now - collected).total_seconds())
        out.append(
            cpb.WorkspaceAgentMetadata(
                result=result,
                description=cpb.WorkspaceAgentMetadataDescription(
                    display_name=row.display_name,
                    key=row.key,
                    script=row.script,
                    interval=row.interval,
                    timeout=row.timeout,
                ),
            )
        )
    return out


async def watch_metadata(
    db: Database,
    clock: Clock,
    *,
    user: Any,
    request: cpb.WatchWorkspaceAgentMetadataRequest,
    interval: float = SEND_INTERVAL_SECONDS,
) -> AsyncIterator[cpb.WatchWorkspaceAgentMetadataResponse]:
    found = readable_agent(db, user=user, agent_id_text=request.agent_id)
    agent_id = found.agent.id
    last: tuple[Any, ...] | None = None
    last_sent = 0.0
    loop = asyncio.get_running_loop()
    while True:
        with db.read() as conn:
            rows = list(metadata_store.list_metadata_by_agent_id(conn, agent_id=agent_id))
        snapshot = tuple(tuple(r) for r in rows)
        now = loop.time()
        if snapshot != last or now - last_sent >= KEEPALIVE_SECONDS:
            last, last_sent = snapshot, now
            yield cpb.WatchWorkspaceAgentMetadataResponse(
                metadata=metadata_messages(rows, clock.now())
            )
        await asyncio.sleep(interval)
