"""``GET /api/v2/workspaceagents/{id}`` <-> WorkspaceAgentsService/GetWorkspaceAgent, and
agentplane's own ``GET /api/v2/workspaceagents/{id}/diagnosis`` <->
WorkspaceAgentsService/GetWorkspaceAgentDiagnosis."""

from __future__ import annotations

from typing import Any

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from flask import Blueprint

from rest_facade import core
from rest_facade.coderjson import NANOS_PER_SECOND, go_float, respond, sorted_map, timestamp
from rest_facade.parse import session_token

bp = Blueprint("agents", __name__)


def app_json(app: pb.App) -> dict[str, Any]:
    return {
        "command": app.command,
        "display_name": app.display_name,
        "external": app.external,
        "group": app.group,
        "health": app.health,
        "healthcheck": {
            "interval": app.healthcheck.interval,
            "threshold": app.healthcheck.threshold,
            "url": app.healthcheck.url,
        },
        "hidden": app.hidden,
        "icon": app.icon,
        "id": app.id,
        "open_in": app.open_in,
        "sharing_level": app.sharing_level,
        "slug": app.slug,
        "statuses": [
            {
                "agent_id": s.agent_id,
                "app_id": s.app_id,
                "created_at": timestamp(s, "created_at"),
                # Still in the newest seed's JSON; Coder no longer stores them.
                "icon": "",
                "id": s.id,
                "message": s.message,
                "needs_user_attention": False,
                "state": s.state,
                "uri": s.uri,
                "workspace_id": s.workspace_id,
            }
            for s in app.statuses
        ],
        "subdomain": app.subdomain,
        "subdomain_name": app.subdomain_name,
        "tooltip": app.tooltip,
        "url": app.url,
    }


def agent_json(agent: pb.WorkspaceAgent) -> dict[str, Any]:
    """codersdk.WorkspaceAgent, every key of the newest seed. Unset times are
    null (Go's omitempty would drop them; null decodes the same in Coder's
    clients and keeps the shape stable)."""
    return {
        "api_version": agent.api_version,
        "apps": [app_json(a) for a in agent.apps],
        "architecture": agent.architecture,
        "connection_timeout_seconds": agent.connection_timeout_seconds,
        "created_at": timestamp(agent, "created_at"),
        "directory": agent.directory,
        "disconnected_at": timestamp(agent, "disconnected_at"),
        "display_apps": list(agent.display_apps),
        "environment_variables": sorted_map(agent.environment_variables),
        "expanded_directory": agent.expanded_directory,
        "first_connected_at": timestamp(agent, "first_connected_at"),
        "health": {"healthy": agent.health.healthy, "reason": agent.health.reason},
        "id": agent.id,
        "instance_id": agent.instance_id,
        "last_connected_at": timestamp(agent, "last_connected_at"),
        "latency": {
            name: {"latency_ms": go_float(lat.latency_ms), "preferred": lat.preferred}
            for name, lat in sorted(agent.latency.items())
        },
        "lifecycle_state": agent.lifecycle_state,
        "log_sources": [
            {
                "created_at": timestamp(s, "created_at"),
                "display_name": s.display_name,
                "icon": s.icon,
                "id": s.id,
                "workspace_agent_id": s.workspace_agent_id,
            }
            for s in agent.log_sources
        ],
        "logs_length": agent.logs_length,
        "logs_overflowed": agent.logs_overflowed,
        "name": agent.name,
        "operating_system": agent.operating_system,
        # Coder's uuid.NullUUID marshals as the UUID string or null.
        "parent_id": agent.parent_id if agent.HasField("parent_id") else None,
        "ready_at": timestamp(agent, "ready_at"),
        "resource_id": agent.resource_id,
        "scripts": [
            {
                "cron": s.cron,
                "display_name": s.display_name,
                "id": s.id,
                "log_path": s.log_path,
                "log_source_id": s.log_source_id,
                "run_on_start": s.run_on_start,
                "run_on_stop": s.run_on_stop,
                "script": s.script,
                "start_blocks_login": s.start_blocks_login,
                # Go time.Duration: nanoseconds.
                "timeout": s.timeout_seconds * NANOS_PER_SECOND,
            }
            for s in agent.scripts
        ],
        "started_at": timestamp(agent, "started_at"),
        "startup_script_behavior": agent.startup_script_behavior,
        "status": agent.status,
        "subsystems": list(agent.subsystems),
        "troubleshooting_url": agent.troubleshooting_url,
        "updated_at": timestamp(agent, "updated_at"),
        "version": agent.version,
    }


@bp.get("/workspaceagents/<agent:agent_id>")
def get_workspace_agent(agent_id: str) -> Any:
    resp = core().call(
        core().workspace_agents.GetWorkspaceAgent,
        pb.GetWorkspaceAgentRequest(id=agent_id),
        token=session_token(),
    )
    return respond(agent_json(resp.agent))


def diagnosis_json(d: pb.Diagnosis) -> dict[str, Any]:
    """agentplane's own shape (Coder has no such route)."""
    rejection = None
    if d.HasField("token_rejection"):
        r = d.token_rejection
        rejection = {
            "attempts": r.attempts,
            "build_number": r.build_number,
            "reason": r.reason,
            "rejected_at": timestamp(r, "rejected_at"),
        }
    netcheck = None
    if d.HasField("netcheck"):
        n = d.netcheck
        netcheck = {
            "ipv4": n.ipv4,
            "ipv6": n.ipv6,
            "preferred_derp": n.preferred_derp,
            "preferred_derp_name": n.preferred_derp_name,
            "reported_at": timestamp(n, "reported_at"),
            "udp": n.udp,
        }
    return {
        "agent_id": d.agent_id,
        "build_number": d.build_number,
        "created_at": timestamp(d, "created_at"),
        "disconnected_at": timestamp(d, "disconnected_at"),
        "failed_scripts": [
            {"display_name": f.display_name, "exit_code": f.exit_code, "status": f.status}
            for f in d.failed_scripts
        ],
        "first_connected_at": timestamp(d, "first_connected_at"),
        "last_connected_at": timestamp(d, "last_connected_at"),
        "last_connected_replica_id": d.last_connected_replica_id or None,
        "lifecycle_state": d.lifecycle_state,
        "netcheck": netcheck,
        "pending_scripts": list(d.pending_scripts),
        "state_seconds": d.state_seconds if d.HasField("state_since") else None,
        "state_since": timestamp(d, "state_since"),
        "status": d.status,
        "summary": d.summary,
        "token_rejection": rejection,
        "waiting_on": d.waiting_on,
    }


@bp.get("/workspaceagents/<agent:agent_id>/diagnosis")
def get_workspace_agent_diagnosis(agent_id: str) -> Any:
    """agentplane's answer to "why is my agent stuck?" (not a Coder route)."""
    resp = core().call(
        core().workspace_agents.GetWorkspaceAgentDiagnosis,
        pb.GetWorkspaceAgentDiagnosisRequest(id=agent_id),
        token=session_token(),
    )
    return respond(diagnosis_json(resp.diagnosis))
