"""Provisioning workspaces: a build turns a spec into resources and agents.

Builds are synchronous here (Coder's provisioner job runs Terraform; ours only
writes rows), so a build is visible exactly when its transaction commits and
its job status is ``succeeded``. A new build makes every agent of older builds
stop authenticating, because agent auth checks for the latest build.
"""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa

from server.admin.spec import NAME_RE, AgentSpec, WorkspaceSpec, parse_spec
from server.admin.users import resolve_user
from server.auth import hash_agent_token, new_agent_token
from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound
from server.pubsub import WORKSPACE, WORKSPACE_OWNER
from server.storage import resourcemonitors
from server.storage import users as user_store
from server.storage import workspaces as ws_store
from server.storage.agents import AUTH_TOKEN, WorkspaceAgent
from server.storage.apps import WorkspaceApp
from server.storage.db import Database
from server.storage.logs import WorkspaceAgentLogSource
from server.storage.metadata import WorkspaceAgentMetadatum
from server.storage.scripts import WorkspaceAgentScript


@dataclasses.dataclass(frozen=True)
class ProvisionedAgent:
    id: uuid.UUID
    name: str
    resource_id: uuid.UUID
    parent_id: uuid.UUID | None
    # The only time the token exists in clear: handed back once, stored hashed.
    auth_token: str | None
    auth_instance_id: str | None


@dataclasses.dataclass(frozen=True)
class BuildResult:
    workspace_id: uuid.UUID
    build_id: uuid.UUID
    build_number: int
    transition: str
    agents: tuple[ProvisionedAgent, ...]


# Agents of a build by (parent's name, name), e.g. to carry their tokens over.
AgentKey = tuple[str, str]


def _insert_agent(
    session: sa.orm.Session,
    clock: Clock,
    spec: AgentSpec,
    *,
    resource_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    parent_name: str = "",
    reuse_tokens: dict[AgentKey, str] | None = None,
) -> list[ProvisionedAgent]:
    now = clock.now()
    reused = (reuse_tokens or {}).get((parent_name, spec.name))
    token = new_agent_token() if spec.auth == AUTH_TOKEN and reused is None else None
    agent = WorkspaceAgent(
        created_at=now,
        updated_at=now,
        name=spec.name,
        resource_id=resource_id,
        parent_id=parent_id,
        auth_kind=spec.auth,
        auth_token_hash=hash_agent_token(token) if token else reused,
        auth_instance_id=spec.instance_id,
        architecture=spec.architecture,
        operating_system=spec.os,
        environment_variables=dict(spec.env),
        directory=spec.directory,
        connection_timeout_seconds=spec.connection_timeout_seconds,
        troubleshooting_url=spec.troubleshooting_url,
        motd_file=spec.motd_file,
        display_apps=list(spec.display_apps),
        display_order=spec.order,
    )
    session.add(agent)
    session.flush()
    for app in spec.apps:
        hc = app.healthcheck
        session.add(
            WorkspaceApp(
                created_at=now,
                agent_id=agent.id,
                slug=app.slug,
                display_name=app.display_name,
                icon=app.icon,
                command=app.command,
                url=app.url,
                external=app.external,
                subdomain=app.subdomain,
                healthcheck_url=hc.url if hc else "",
                healthcheck_interval=hc.interval if hc else 0,
                healthcheck_threshold=hc.threshold if hc else 0,
                # Coder: an app with a healthcheck starts initializing, else disabled.
                health="initializing" if hc else "disabled",
                sharing_level=app.sharing_level,
                display_order=app.order,
                hidden=app.hidden,
                open_in=app.open_in,
                display_group=app.group,
                tooltip=app.tooltip,
            )
        )
    for script in spec.scripts:
        # Every script logs under a source of its own, as Coder provisions them.
        source_id = uuid.uuid4()
        session.add(
            WorkspaceAgentLogSource(
                workspace_agent_id=agent.id,
                id=source_id,
                created_at=now,
                display_name=script.display_name,
                icon=script.icon,
            )
        )
        session.add(
            WorkspaceAgentScript(
                workspace_agent_id=agent.id,
                log_source_id=source_id,
                log_path=script.log_path,
                script=script.script,
                cron=script.cron,
                start_blocks_login=script.start_blocks_login,
                run_on_start=script.run_on_start,
                run_on_stop=script.run_on_stop,
                timeout_seconds=script.timeout_seconds,
                display_name=script.display_name,
                created_at=now,
            )
        )
    for item in spec.metadata:
        session.add(
            WorkspaceAgentMetadatum(
                workspace_agent_id=agent.id,
                key=item.key,
                display_name=item.display_name,
                script=item.script,
                interval=item.interval,
                timeout=item.timeout,
                display_order=item.order,
            )
        )
    if spec.resources_monitoring is not None:
        session.add_all(
            resourcemonitors.monitors_for(
                agent_id=agent.id,
                memory=spec.resources_monitoring.memory,
                volumes=spec.resources_monitoring.volumes,
                now=now,
            )
        )
    out = [
        ProvisionedAgent(
            id=agent.id,
            name=agent.name,
            resource_id=resource_id,
            parent_id=parent_id,
            auth_token=str(token) if token else None,
            auth_instance_id=spec.instance_id,
        )
    ]
    for child in spec.children:
        out.extend(
            _insert_agent(
                session,
                clock,
                child,
                resource_id=resource_id,
                parent_id=agent.id,
                parent_name=spec.name,
                reuse_tokens=reuse_tokens,
            )
        )
    return out


def insert_build(
    session: sa.orm.Session,
    clock: Clock,
    *,
    workspace: ws_store.Workspace,
    number: int,
    transition: str,
    spec: WorkspaceSpec,
    spec_json: str,
    initiator_id: uuid.UUID,
    prebuild_claim: bool = False,
    reuse_tokens: dict[AgentKey, str] | None = None,
) -> BuildResult:
    now = clock.now()
    build = ws_store.WorkspaceBuild(
        workspace_id=workspace.id,
        build_number=number,
        transition=transition,
        spec_json=spec_json,
        created_at=now,
        initiator_id=initiator_id,
        prebuild_claim=prebuild_claim,
    )
    session.add(build)
    session.flush()
    agents: list[ProvisionedAgent] = []
    # A stopped or deleted workspace has no running resources, hence no agents.
    if transition == "start":
        for res in spec.resources:
            resource = ws_store.WorkspaceResource(
                build_id=build.id, name=res.name, type=res.type, created_at=now
            )
            session.add(resource)
            session.flush()
            for agent_spec in res.agents:
                agents.extend(
                    _insert_agent(
                        session,
                        clock,
                        agent_spec,
                        resource_id=resource.id,
                        parent_id=None,
                        reuse_tokens=reuse_tokens,
                    )
                )
    workspace.updated_at = now
    if transition == "delete":
        workspace.deleted = True
    session.add(workspace)
    return BuildResult(
        workspace_id=workspace.id,
        build_id=build.id,
        build_number=number,
        transition=transition,
        agents=tuple(agents),
    )


def check_workspace_name(name: str, field: str = "name") -> None:
    if not name or len(name) > 64 or not NAME_RE.match(name):
        raise InvalidArgument(
            "Validation failed.",
            validations=[(field, "must be 1-64 letters, digits and inner hyphens")],
        )


def name_taken(owner: user_store.User, name: str) -> Conflict:
    return Conflict(
        f"Workspace {name!r} of {owner.username!r} already exists.",
        detail="Start a new build of it (agentplane workspaces build), or choose another name.",
    )


def create_workspace(
    db: Database,
    clock: Clock,
    *,
    owner_ref: str,
    name: str,
    spec_json: str,
    owner: user_store.User | None = None,
) -> BuildResult:
    """A workspace and its first build, started by its owner (``owner``:
    already resolved, e.g. the prebuilds user)."""
    check_workspace_name(name)
    spec = parse_spec(spec_json)
    now = clock.now()
    with db.session() as session:
        owner = owner or resolve_user(session, owner_ref)
        if ws_store.get_workspace_by_owner_and_name(session, owner_id=owner.id, name=name):
            raise name_taken(owner, name)
        workspace = ws_store.Workspace(owner_id=owner.id, name=name, created_at=now, updated_at=now)
        session.add(workspace)
        try:
            session.flush()
        except sa.exc.IntegrityError:
            raise name_taken(owner, name) from None
        # The owner's workspace-update streams (Tailnet/WorkspaceUpdates).
        db.pubsub.publish(session, WORKSPACE_OWNER, str(owner.id))
        return insert_build(
            session,
            clock,
            workspace=workspace,
            number=1,
            transition="start",
            spec=spec,
            spec_json=spec_json,
            initiator_id=owner.id,
        )


def resolve_workspace(session: sa.orm.Session, *, owner_ref: str, name: str) -> ws_store.Workspace:
    """A live (not deleted) workspace by owner username/id and name, or
    NotFound — saying so when the name belonged to a deleted workspace."""
    owner = resolve_user(session, owner_ref)
    workspace = ws_store.get_workspace_by_owner_and_name(session, owner_id=owner.id, name=name)
    if workspace is not None:
        return workspace
    if ws_store.get_workspace_by_owner_and_name(
        session, owner_id=owner.id, name=name, deleted=True
    ):
        raise NotFound(
            f"Workspace {name!r} of {owner.username!r} was deleted.",
            detail="A deleted workspace is not built again; "
            "agentplane workspaces create can make a new one with this name.",
        )
    raise NotFound(f"Workspace {name!r} of {owner.username!r} not found.")


def build_workspace(
    db: Database,
    clock: Clock,
    *,
    owner_ref: str,
    name: str,
    spec_json: str,
    transition: str,
) -> BuildResult:
    transition = transition or "start"
    if transition not in ws_store.TRANSITIONS:
        raise InvalidArgument(
            "Validation failed.",
            validations=[("transition", f"must be one of: {', '.join(ws_store.TRANSITIONS)}")],
        )
    spec = parse_spec(spec_json) if spec_json else None
    with db.session() as session:
        workspace = resolve_workspace(session, owner_ref=owner_ref, name=name)
        latest = ws_store.get_latest_build(session, workspace_id=workspace.id)
        number = (latest.build_number if latest else 0) + 1
        if spec is None:
            spec_json = latest.spec_json if latest else '{"resources": []}'
            spec = parse_spec(spec_json)
        try:
            result = insert_build(
                session,
                clock,
                workspace=workspace,
                number=number,
                transition=transition,
                spec=spec,
                spec_json=spec_json,
                initiator_id=workspace.owner_id,
            )
            session.flush()
        except sa.exc.IntegrityError:
            raise Conflict(
                f"Another build of {name!r} was created at the same time; try again."
            ) from None
        # Followers of the replaced agents end their streams; the owner's
        # workspace-update streams re-read.
        db.pubsub.publish(session, WORKSPACE, str(workspace.id))
        db.pubsub.publish(session, WORKSPACE_OWNER, str(workspace.owner_id))
        return result
