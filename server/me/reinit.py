"""Reinitialization: tell a workspace's agents to start over (Coder sends this
when a prebuilt workspace is claimed by a user).

Serves ``agentplane.me.v1.MeService/WatchReinit`` (the source of the SSE
route ``GET me/reinit``): a ping at once — the agent knows the server is
listening — then a ping every keep-alive interval, and a reinitialization
event for every request made after the stream opened. With ``wait`` the
stream also reports a request made *before* it opened, as long as the
agent's build was the workspace's latest when it was made (Coder's durable
check: the agent has not been rebuilt since) — the claim of a prebuilt
workspace stores such a request for the claim build. ``wait`` on a
workspace that is not a prebuild (its first build was not started by the
prebuilds user) is refused with 409 before the stream starts: nothing will
ever reinitialize it, and Coder's agent stops asking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agentplane.me.v1 import me_pb2

from server.errors import Conflict
from server.me.wakeups import Wakeups, reinit_key
from server.storage import reinit as reinit_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database
from server.storage.workspaces import PREBUILDS_USER_ID

# Requests from another replica are found by re-reading on this timer.
REPOLL_SECONDS = 2.0

PING = me_pb2.WatchReinitResponse(ping=me_pb2.Ping())
# Coder documents the 409 but not its text (coder/coder#23108); ours.
NOT_A_PREBUILD = "This workspace is not a prebuilt workspace; it will never be reinitialized."
NOT_A_PREBUILD_DETAIL = (
    "Only a workspace created as a prebuild is reinitialized, when a user claims it. "
    "Stop waiting on me/reinit."
)


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
            if wait:
                initiator = reinit_store.first_build_initiator(conn, workspace_id=workspace_id)
                if initiator != PREBUILDS_USER_ID:
                    raise Conflict(NOT_A_PREBUILD, detail=NOT_A_PREBUILD_DETAIL)
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
