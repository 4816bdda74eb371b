"""Asking a workspace's agents to reinitialize. Serves
``agentplane.admin.v1.AdminService/ReinitWorkspace`` (CLI
``agentplane workspaces reinit``): the request is stored, then the agents'
``me/reinit`` streams wake up and send it."""

from __future__ import annotations

import dataclasses
import uuid

from server.admin.workspaces import resolve_workspace
from server.clock import Clock
from server.errors import FailedPrecondition
from server.me.wakeups import Wakeups, reinit_key
from server.storage import reinit as reinit_store
from server.storage import workspaces as ws_store
from server.storage.db import Database


@dataclasses.dataclass(frozen=True)
class ReinitRequested:
    workspace_id: uuid.UUID
    owner_id: uuid.UUID
    reason: str
    build_number: int


def reinit_workspace(
    db: Database, clock: Clock, wakeups: Wakeups, *, owner_ref: str, name: str
) -> ReinitRequested:
    with db.session() as session:
        workspace = resolve_workspace(session, owner_ref=owner_ref, name=name)
        latest = ws_store.get_latest_build(session, workspace_id=workspace.id)
        if latest is None:
            raise FailedPrecondition(f"Workspace {name!r} has no build to reinitialize.")
        reinit_store.insert_reinit_event(
            session.connection(),
            workspace_id=workspace.id,
            owner_id=workspace.owner_id,
            build_number=latest.build_number,
            reason=reinit_store.REASON_PREBUILD_CLAIMED,
            now=clock.now(),
        )
        result = ReinitRequested(
            workspace_id=workspace.id,
            owner_id=workspace.owner_id,
            reason=reinit_store.REASON_PREBUILD_CLAIMED,
            build_number=latest.build_number,
        )
    wakeups.publish(reinit_key(result.workspace_id))
    return result
