"""Prebuilt workspaces, as far as reinitialization needs them: created ahead
of a user, owned by the prebuilds system user (Coder's), then claimed by a
user. Serves ``agentplane.admin.v1.AdminService/CreatePrebuild`` and
``/ClaimPrebuild`` (CLI ``agentplane workspaces prebuild`` and ``claim``).

A claim is Coder's claim build: the workspace changes owner (and maybe
name), a new build starts for the user, and that build's agents take over
the running agents' tokens (Coder passes them down so the machine need not
be replaced), so the agent process keeps authenticating — and its
``me/reinit`` stream gets the ``prebuild_claimed`` event, stored so that a
stream opened later with ``wait=true`` still finds it (the durable check).
"""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa

from server.admin.spec import parse_spec
from server.admin.users import generate_git_ssh_key, resolve_user
from server.admin.workspaces import (
    AgentKey,
    BuildResult,
    check_workspace_name,
    create_workspace,
    insert_build,
    name_taken,
)
from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound
from server.me.wakeups import Wakeups, reinit_key
from server.pubsub import WORKSPACE
from server.storage import reinit as reinit_store
from server.storage import users as user_store
from server.storage import workspaces as ws_store
from server.storage.agents import WorkspaceAgent
from server.storage.db import Database


@dataclasses.dataclass(frozen=True)
class Claimed:
    build: BuildResult
    owner_id: uuid.UUID


def ensure_prebuilds_user(db: Database, clock: Clock) -> user_store.User:
    """The prebuilds system user (Coder's id and name), created on first use."""
    with db.session() as session:
        user = user_store.get_user_by_id(session, user_id=ws_store.PREBUILDS_USER_ID)
        if user is not None:
            return user
        now = clock.now()
        private, public = generate_git_ssh_key()
        user = user_store.User(
            id=ws_store.PREBUILDS_USER_ID,
            username=ws_store.PREBUILDS_USERNAME,
            created_at=now,
            updated_at=now,
        )
        user_store.insert_user(
            session,
            user=user,
            ssh_key=user_store.GitSSHKey(
                user_id=user.id,
                private_key=private,
                public_key=public,
                created_at=now,
                updated_at=now,
            ),
        )
    return user


def create_prebuild(db: Database, clock: Clock, *, name: str, spec_json: str) -> BuildResult:
    owner = ensure_prebuilds_user(db, clock)
    return create_workspace(db, clock, owner_ref="", name=name, spec_json=spec_json, owner=owner)


def claim_prebuild(
    db: Database,
    clock: Clock,
    wakeups: Wakeups,
    *,
    name: str,
    owner_ref: str,
    new_name: str = "",
) -> Claimed:
    new_name = new_name or name
    check_workspace_name(new_name, "new_name")
    agents = WorkspaceAgent.__table__
    with db.session() as session:
        owner = resolve_user(session, owner_ref)
        if owner.id == ws_store.PREBUILDS_USER_ID:
            raise InvalidArgument("The prebuilds user cannot claim a prebuild.")
        workspace = ws_store.get_workspace_by_owner_and_name(
            session, owner_id=ws_store.PREBUILDS_USER_ID, name=name
        )
        if workspace is None:
            raise NotFound(f"Prebuilt workspace {name!r} not found.")
        if ws_store.get_workspace_by_owner_and_name(session, owner_id=owner.id, name=new_name):
            raise name_taken(owner, new_name)
        latest = ws_store.get_latest_build(session, workspace_id=workspace.id)
        if latest is None or latest.transition != "start":
            raise Conflict(
                f"Prebuilt workspace {name!r} is not running (its latest build is "
                f"{latest.transition if latest else 'missing'}); only a running one is claimed."
            )
        # The running agents' tokens go to the claim build's agents of the
        # same name (a token authenticates one agent row at a time).
        running = session.execute(
            sa.select(agents.c.id, agents.c.name, agents.c.parent_id, agents.c.auth_token_hash)
            .select_from(agents.join(ws_store.WorkspaceResource.__table__))
            .where(
                ws_store.WorkspaceResource.__table__.c.build_id == latest.id,
                agents.c.auth_token_hash.is_not(None),
            )
        ).all()
        names = {row.id: row.name for row in running}
        tokens: dict[AgentKey, str] = {
            (names.get(row.parent_id, "") if row.parent_id else "", row.name): row.auth_token_hash
            for row in running
        }
        session.execute(
            sa.update(agents)
            .where(agents.c.id.in_([row.id for row in running]))
            .values(auth_token_hash=None)
        )
        workspace.owner_id = owner.id
        workspace.name = new_name
        try:
            result = insert_build(
                session,
                clock,
                workspace=workspace,
                number=latest.build_number + 1,
                transition="start",
                spec=parse_spec(latest.spec_json),
                spec_json=latest.spec_json,
                initiator_id=owner.id,
                prebuild_claim=True,
                reuse_tokens=tokens,
            )
            session.flush()
        except sa.exc.IntegrityError:
            raise Conflict(
                f"Prebuilt workspace {name!r} was claimed or rebuilt at the same time; try again."
            ) from None
        reinit_store.insert_reinit_event(
            session.connection(),
            workspace_id=workspace.id,
            owner_id=owner.id,
            build_number=result.build_number,
            reason=reinit_store.REASON_PREBUILD_CLAIMED,
            now=clock.now(),
        )
        db.pubsub.publish(session, WORKSPACE, str(workspace.id))
    wakeups.publish(reinit_key(result.workspace_id))
    return Claimed(build=result, owner_id=owner.id)
