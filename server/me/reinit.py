"""Reinitialization: tell a workspace's agents to start over (Coder sends this
when a prebuilt workspace is claimed by a user).

Serves ``agentplane.me.v1.MeService/WatchReinit`` (the source of the SSE
route ``GET me/reinit``): a ping at once — the agent knows the server is
listening — then a ping every keep-alive interval, and a reinitialization
event for every request made after the stream opened. With ``wait`` the
stream also reports a request made *before* it opened, as long as the
agent's build was the workspace's latest when it was made (Coder's durable
check: the agent has not been rebuilt since).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agentplane.me.v1 import me_pb2

from server.me.wakeups import Wakeups, reinit_key
from server.storage import reinit as reinit_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

# Requests from another replica are found by re-reading on this timer.
REPOLL_SECONDS = 2.0

PING = me_pb2.WatchReinitResponse(ping=me_pb2.Ping())


async def watch_reinit(
    db: Database,
    wakeups: Wakeups,
    *,
    caller: AgentInWorkspace,
    wait: bool,
    keepalive_seconds: float,
) -> AsyncIterator[me_pb2.WatchReinitResponse]:
    workspace_id = caller.workspace.id
    build = caller.build.build_number
    loop = asyncio.get_running_loop()
    # Subscribe before the first read, so no request slips between them.
    with wakeups.subscribe(reinit_key(workspace_id)) as sub:
        with db.read() as conn:
            after = 0 if wait else reinit_store.last_event_id(conn, workspace_id=workspace_id)
        yield PING
        last_ping = loop.time()
        while True:
            with db.read() as conn:
                events = reinit_store.list_events_after(
                    conn, workspace_id=workspace_id, after_id=after, min_build=build
                )
            for event in events:
                after = event.id
                yield me_pb2.WatchReinitResponse(
                    reinit=me_pb2.ReinitializationEvent(
                        workspace_id=str(event.workspace_id),
                        owner_id=str(event.owner_id),
                        reason=event.reason,
                    )
                )
            until_ping = keepalive_seconds - (loop.time() - last_ping)
            if until_ping <= 0:
                yield PING
                last_ping = loop.time()
                continue
            await sub.wait(min(REPOLL_SECONDS, until_ping))
