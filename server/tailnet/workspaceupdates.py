"""A user's workspaces and agents as a stream of changes
(``coder.tailnet.v2.Tailnet/WorkspaceUpdates``, used by Coder Desktop): a
full snapshot first, then only what changed — a workspace appearing,
changing name or status (Coder's enum, from its latest build), going away;
agents appearing and going with builds.

Changes are noticed through the owner's notifications (``WORKSPACE_OWNER``,
published with every workspace created or built, on any replica) and a
30 s re-read, so a lost notification costs latency only.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from coder.tailnet.v2 import tailnet_pb2

from server.pubsub import WORKSPACE_OWNER
from server.storage import workspaces as ws_store
from server.storage.db import Database

Status = tailnet_pb2.Workspace.Status
RESYNC_SECONDS = 30.0

# Coder's ConvertWorkspaceStatus: (job status, transition) -> status.
_RUNNING_JOB = {"start": Status.STARTING, "stop": Status.STOPPING, "delete": Status.DELETING}
_SUCCEEDED_JOB = {"start": Status.RUNNING, "stop": Status.STOPPED, "delete": Status.DELETED}


def workspace_status(job_status: str, transition: str) -> int:
    if job_status == "pending":
        return Status.PENDING
    if job_status == "running":
        return _RUNNING_JOB.get(transition, Status.FAILED)
    if job_status == "succeeded":
        return _SUCCEEDED_JOB.get(transition, Status.FAILED)
    if job_status == "canceling":
        return Status.CANCELING
    if job_status == "canceled":
        return Status.CANCELED
    # failed, and (as in Coder) anything unexpected.
    return Status.FAILED


@dataclasses.dataclass(frozen=True)
class OwnedWorkspace:
    name: str
    status: int
    agents: frozenset[tuple[uuid.UUID, str]]


Snapshot = dict[uuid.UUID, OwnedWorkspace]


def read_snapshot(db: Database, *, owner_id: uuid.UUID) -> Snapshot:
    with db.read() as conn:
        rows = ws_store.list_workspaces_and_agents_by_owner(conn, owner_id=owner_id)
    return {
        ws_id: OwnedWorkspace(name, workspace_status(job, transition), frozenset(agents))
        for ws_id, name, job, transition, agents in rows
    }


def _agent(agent: tuple[uuid.UUID, str], ws_id: uuid.UUID) -> tailnet_pb2.Agent:
    return tailnet_pb2.Agent(id=agent[0].bytes, name=agent[1], workspace_id=ws_id.bytes)


def produce_update(old: Snapshot, new: Snapshot) -> tailnet_pb2.WorkspaceUpdate | None:
    """What changed from ``old`` to ``new`` (Coder's produceUpdate); None
    when nothing did."""
    out = tailnet_pb2.WorkspaceUpdate()
    for ws_id, ws in new.items():
        before = old.get(ws_id)
        if before is None or (before.name, before.status) != (ws.name, ws.status):
            out.upserted_workspaces.add(id=ws_id.bytes, name=ws.name, status=ws.status)
        added = ws.agents - before.agents if before else ws.agents
        removed = before.agents - ws.agents if before else frozenset()
        out.upserted_agents.extend(_agent(a, ws_id) for a in sorted(added, key=_order))
        out.deleted_agents.extend(_agent(a, ws_id) for a in sorted(removed, key=_order))
    for ws_id, ws in old.items():
        if ws_id not in new:
            out.deleted_workspaces.add(id=ws_id.bytes, name=ws.name, status=ws.status)
            out.deleted_agents.extend(_agent(a, ws_id) for a in sorted(ws.agents, key=_order))
    if not (
        out.upserted_workspaces
        or out.upserted_agents
        or out.deleted_workspaces
        or out.deleted_agents
    ):
        return None
    return out


def _order(agent: tuple[uuid.UUID, str]) -> tuple[str, str]:
    return agent[1], str(agent[0])


async def follow_workspaces(db: Database, *, owner_id: uuid.UUID) -> AsyncIterator[Any]:
    """The snapshot (always sent, even empty), then each change."""
    # Subscribed before the first read, so nothing between is missed.
    with db.pubsub.subscribe((WORKSPACE_OWNER, str(owner_id))) as sub:
        previous = read_snapshot(db, owner_id=owner_id)
        yield produce_update({}, previous) or tailnet_pb2.WorkspaceUpdate()
        while True:
            await sub.wait(RESYNC_SECONDS)
            latest = read_snapshot(db, owner_id=owner_id)
            update = produce_update(previous, latest)
            previous = latest
            if update is not None:
                yield update
