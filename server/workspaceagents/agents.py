"""GetWorkspaceAgent: one agent as Coder's ``codersdk.WorkspaceAgent`` shows it.

Serves ``agentplane.workspaceagents.v1.WorkspaceAgentsService/GetWorkspaceAgent``
(REST ``GET /api/v2/workspaceagents/{id}``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb

from server.auth import can_read_workspace
from server.clock import Clock
from server.errors import InvalidArgument, resource_not_found
from server.prototime import to_timestamp
from server.storage import agents as agent_store
from server.storage import appstatus
from server.storage.agentviews import AgentChildren
from server.storage.db import Database
from server.storage.prepared import remember
from server.tailnet.nodes import region_latency
from server.workspaceagents.status import connection_status, health

# Display apps Coder exposes on the agent object.
_VISIBLE_DISPLAY_APPS = (
    "vscode",
    "vscode_insiders",
    "web_terminal",
    "ssh_helper",
    "port_forwarding_helper",
)


def parse_agent_id(text: str) -> uuid.UUID:
    """Coder's path-parameter rule: a malformed id is a 400 naming the value."""
    try:
        return uuid.UUID(text)
    except ValueError:
        # The detail mirrors Go's uuid.Parse wording, which Coder passes on.
        detail = (
            f"invalid UUID length: {len(text)}"
            if len(text) not in (32, 36, 38, 45)
            else "invalid UUID format"
        )
        raise InvalidArgument(f'Invalid UUID "{text}".', detail=detail) from None


def readable_agent(db: Database, *, user: Any, agent_id_text: str) -> agent_store.AgentInWorkspace:
    """The agent if this user may read it; a missing and a forbidden agent
    are the same 404, so ids cannot be probed."""
    agent_id = parse_agent_id(agent_id_text)
    with db.read() as conn:
        found = agent_store.get_agent_in_workspace(conn, agent_id=agent_id)
    if found is None or not can_read_workspace(user, found.workspace.owner_id):
        raise resource_not_found()
    return found


def status_message(status: Any) -> pb.AppStatus:
    return pb.AppStatus(
        id=str(status.id),
        created_at=to_timestamp(status.created_at),
        agent_id=str(status.agent_id),
        app_id=str(status.app_id),
        workspace_id=str(status.workspace_id),
        state=status.state,
        message=status.message,
        uri=status.uri,
    )


def app_message(app: Any, statuses: Sequence[Any] = ()) -> pb.App:
    return pb.App(
        id=str(app.id),
        url=app.url,
        external=app.external,
        slug=app.slug,
        display_name=app.display_name,
        command=app.command,
        icon=app.icon,
        subdomain=app.subdomain,
        sharing_level=app.sharing_level,
        health=app.health,
        group=app.display_group,
        hidden=app.hidden,
        open_in=app.open_in,
        tooltip=app.tooltip,
        healthcheck=pb.Healthcheck(
            url=app.healthcheck_url,
            interval=app.healthcheck_interval,
            threshold=app.healthcheck_threshold,
        ),
        statuses=[status_message(st) for st in statuses],
    )


def children_message(children: AgentChildren, statuses: Sequence[Any] = ()) -> pb.WorkspaceAgent:
    """The part of the agent message built from its children: apps (with
    their statuses, newest first), scripts and log sources. Built once per
    agent revision and merged into each reply."""
    blocking = any(s.run_on_start and s.start_blocks_login for s in children.scripts)
    by_app: dict[uuid.UUID, list[Any]] = {}
    for status in statuses:
        by_app.setdefault(status.app_id, []).append(status)
    return pb.WorkspaceAgent(
        apps=[app_message(a, by_app.get(a.id, ())) for a in children.apps],
        log_sources=[
            pb.LogSource(
                id=str(s.id),
                workspace_agent_id=str(s.workspace_agent_id),
                created_at=to_timestamp(s.created_at),
                display_name=s.display_name,
                icon=s.icon,
            )
            for s in children.log_sources
        ],
        scripts=[
            pb.Script(
                id=str(s.id),
                log_source_id=str(s.log_source_id),
                log_path=s.log_path,
                script=s.script,
                cron=s.cron,
                run_on_start=s.run_on_start,
                run_on_stop=s.run_on_stop,
                start_blocks_login=s.start_blocks_login,
                timeout_seconds=s.timeout_seconds,
                display_name=s.display_name,
            )
            for s in children.scripts
        ],
        startup_script_behavior="blocking" if blocking else "non-blocking",
    )


def _static_message(
    found: agent_store.AgentInWorkspace, children: pb.WorkspaceAgent
) -> pb.WorkspaceAgent:
    """Everything of the agent message that does not depend on the time of
    the call (connection status, health and disconnected_at do)."""
    agent = found.agent
    msg = pb.WorkspaceAgent(
        id=str(agent.id),
        created_at=to_timestamp(agent.created_at),
        updated_at=to_timestamp(agent.updated_at),
        first_connected_at=to_timestamp(agent.first_connected_at),
        last_connected_at=to_timestamp(agent.last_connected_at),
        started_at=to_timestamp(agent.started_at),
        ready_at=to_timestamp(agent.ready_at),
        lifecycle_state=agent.lifecycle_state,
        name=agent.name,
        resource_id=str(agent.resource_id),
        instance_id=agent.auth_instance_id or "",
        architecture=agent.architecture,
        environment_variables=agent.environment_variables,
        operating_system=agent.operating_system,
        logs_length=agent.logs_length,
        logs_overflowed=agent.logs_overflowed,
        directory=agent.directory,
        expanded_directory=agent.expanded_directory,
        version=agent.version,
        api_version=agent.api_version,
        connection_timeout_seconds=agent.connection_timeout_seconds,
        troubleshooting_url=agent.troubleshooting_url,
        subsystems=agent.subsystems,
        display_apps=[d for d in agent.display_apps if d in _VISIBLE_DISPLAY_APPS],
    )
    msg.MergeFrom(children)
    if agent.parent_id is not None:
        msg.parent_id = str(agent.parent_id)
    return msg


# The static part per (agent row, children) object pair. The row lookup
# memoises rows by their stored values (storage.prepared), so an unchanged
# agent comes back as the same row object and its message is reused; any
# change is a new row object and a new message. Bounded, oldest out. Not used
# where rows are never memoised (PostgreSQL: psycopg hands JSON back as
# dicts, which cannot key the row memo), as it could only cost memory there.
_STATIC_MEMO: dict[int, tuple[Any, Any, pb.WorkspaceAgent]] = {}
_STATIC_MEMO_SIZE = 4096


def _static_message_memo(
    found: agent_store.AgentInWorkspace, children: pb.WorkspaceAgent
) -> pb.WorkspaceAgent:
    key = id(found.agent)
    hit = _STATIC_MEMO.get(key)
    # The entry holds the row, so its id cannot be reused while it is here.
    if hit is not None and hit[0] is found.agent and hit[1] is children:
        return hit[2]
    msg = _static_message(found, children)
    remember(_STATIC_MEMO, key, (found.agent, children, msg), size=_STATIC_MEMO_SIZE)
    return msg


def build_agent_message(
    found: agent_store.AgentInWorkspace,
    children: pb.WorkspaceAgent,
    *,
    now: dt.datetime,
    inactive_timeout: dt.timedelta,
    memo: bool = True,
    fallback_troubleshooting_url: str = "",
) -> pb.WorkspaceAgent:
    agent = found.agent
    conn = connection_status(agent, now=now, inactive_timeout=inactive_timeout)
    healthy, reason = health(conn.status, agent.lifecycle_state)
    msg = pb.WorkspaceAgent()
    msg.CopyFrom(
        _static_message_memo(found, children) if memo else _static_message(found, children)
    )
    msg.status = conn.status
    msg.health.healthy = healthy
    msg.health.reason = reason
    if conn.disconnected_at is not None:
        msg.disconnected_at.CopyFrom(to_timestamp(conn.disconnected_at))
    if not msg.troubleshooting_url:
        # Coder's --agent-fallback-troubleshooting-url, for a template without one.
        msg.troubleshooting_url = fallback_troubleshooting_url
    return msg


def get_workspace_agent(
    db: Database,
    clock: Clock,
    *,
    user: Any,
    agent_id_text: str,
    inactive_timeout: dt.timedelta,
    fallback_troubleshooting_url: str = "",
) -> pb.WorkspaceAgent:
    agent_id = parse_agent_id(agent_id_text)
    with db.read() as conn:
        found = agent_store.get_agent_in_workspace(conn, agent_id=agent_id)
        if found is None or not can_read_workspace(user, found.workspace.owner_id):
            raise resource_not_found()
        # App statuses change with the agent's revision too (their writers bump
        # it), so they are read only when the cached view is rebuilt.
        children = db.agent_views.derived(
            conn,
            found.agent,
            "workspace_agent",
            lambda ch: children_message(
                ch, appstatus.list_newest_statuses_by_agent(conn, agent_id=agent_id)
            ),
        )
    return build_agent_message(
        found,
        children,
        now=clock.now(),
        inactive_timeout=inactive_timeout,
        memo=not db.is_postgres,
        fallback_troubleshooting_url=fallback_troubleshooting_url,
    )


def add_latency(msg: pb.WorkspaceAgent, node: bytes | None, derp: Any) -> None:
    """coderd's ``latency``: from the agent's latest tailnet node, its DERP
    latencies keyed by region name (none while the agent has no node)."""
    if node is None:
        return
    for name, (ms, preferred) in region_latency(node, derp.proto().regions).items():
        msg.latency[name].latency_ms = ms
        msg.latency[name].preferred = preferred
