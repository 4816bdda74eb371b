"""Routes served through the agent's tunnel (AgentConnService):

* ``GET /workspaceagents/{id}/listening-ports`` <-> ListListeningPorts
* ``GET /workspaceagents/{id}/containers`` (``label=k=v``, repeatable) <-> ListContainers
* ``DELETE /workspaceagents/{id}/containers/devcontainers/{dc}`` (204) <-> DeleteDevcontainer
* ``POST …/containers/devcontainers/{dc}/recreate`` (202) <-> RecreateDevcontainer
* ``GET /workspaceagents/{id}/pty-sessions`` (agentplane's, Coder #25058) <-> ListPtySessions

The WebSocket doors (``{id}/pty``, ``{id}/containers/watch``) and the
metadata watch arrive with the facade's new front.
"""

from __future__ import annotations

from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from flask import Blueprint, Response, request

from rest_facade import core
from rest_facade.coderjson import respond, sorted_map, timestamp
from rest_facade.errors import error_response
from rest_facade.parse import session_token

bp = Blueprint("agentconn", __name__)

# The core waits 30 s for the agent; the facade waits a little longer so
# that the core's own answer (408, 500) is what the user gets.
TUNNEL_CALL_TIMEOUT = 40.0


def container_json(c: tpb.Container) -> dict[str, Any]:
    """codersdk.WorkspaceAgentContainer."""
    return {
        "created_at": timestamp(c, "created_at"),
        "id": c.id,
        "image": c.image,
        "labels": sorted_map(c.labels),
        "name": c.name,
        "ports": [
            {"host_ip": p.host_ip, "host_port": p.host_port, "network": p.network, "port": p.port}
            for p in c.ports
        ],
        "running": c.running,
        "status": c.status,
        "volumes": sorted_map(c.volumes),
    }


def devcontainer_json(d: tpb.Devcontainer) -> dict[str, Any]:
    """codersdk.WorkspaceAgentDevcontainer (omitempty fields left out when empty)."""
    body: dict[str, Any] = {
        "config_path": d.config_path,
        "dirty": d.dirty,
        "id": d.id,
        "name": d.name,
        "status": d.status,
        "subagent_id": d.subagent_id if d.HasField("subagent_id") else None,
        "workspace_folder": d.workspace_folder,
    }
    if d.HasField("container"):
        body["container"] = container_json(d.container)
    if d.HasField("agent"):
        body["agent"] = {"directory": d.agent.directory, "id": d.agent.id, "name": d.agent.name}
    if d.error:
        body["error"] = d.error
    return dict(sorted(body.items()))


def containers_json(listing: tpb.ContainerList) -> dict[str, Any]:
    """codersdk.WorkspaceAgentListContainersResponse."""
    return {
        "containers": [container_json(c) for c in listing.containers],
        "devcontainers": [devcontainer_json(d) for d in listing.devcontainers],
        "warnings": list(listing.warnings),
    }


@bp.get("/workspaceagents/<agent:agent_id>/listening-ports")
def listening_ports(agent_id: str) -> Any:
    resp = core().call(
        core().agent_conn.ListListeningPorts,
        cpb.ListListeningPortsRequest(agent_id=agent_id),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond(
        {
            "ports": [
                {"network": p.network, "port": p.port, "process_name": p.process_name}
                for p in resp.ports
            ]
        }
    )


@bp.get("/workspaceagents/<agent:agent_id>/containers")
def list_containers(agent_id: str) -> Any:
    labels: dict[str, str] = {}
    for label in request.args.getlist("label"):
        # Coder splits on every "=": exactly one is allowed.
        parts = label.split("=")
        if len(parts) != 2:
            return error_response(
                400, "Invalid label format", "Labels must be in the format key=value"
            )
        labels[parts[0]] = parts[1]
    resp = core().call(
        core().agent_conn.ListContainers,
        cpb.ListContainersRequest(agent_id=agent_id, labels=labels),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond(containers_json(resp.list))


@bp.delete("/workspaceagents/<agent:agent_id>/containers/devcontainers/<devcontainer>")
def delete_devcontainer(agent_id: str, devcontainer: str) -> Any:
    core().call(
        core().agent_conn.DeleteDevcontainer,
        cpb.DeleteDevcontainerRequest(agent_id=agent_id, devcontainer_id=devcontainer),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return Response(status=204)


@bp.post("/workspaceagents/<agent:agent_id>/containers/devcontainers/<devcontainer>/recreate")
def recreate_devcontainer(agent_id: str, devcontainer: str) -> Any:
    resp = core().call(
        core().agent_conn.RecreateDevcontainer,
        cpb.RecreateDevcontainerRequest(agent_id=agent_id, devcontainer_id=devcontainer),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond({"detail": resp.detail, "message": resp.message}, 202)


def pty_session_json(s: tpb.PtySession) -> dict[str, Any]:
    return {
        "attached_clients": s.attached_clients,
        "command": s.command,
        "container": s.container,
        "created_at": timestamp(s, "created_at"),
        "height": s.height,
        "id": s.id,
        "last_attached_at": timestamp(s, "last_attached_at"),
        "width": s.width,
    }


@bp.get("/workspaceagents/<agent:agent_id>/pty-sessions")
def pty_sessions(agent_id: str) -> Any:
    """agentplane's own (Coder #25058): the agent's running terminals."""
    resp = core().call(
        core().agent_conn.ListPtySessions,
        cpb.ListPtySessionsRequest(agent_id=agent_id),
        token=session_token(),
        timeout=TUNNEL_CALL_TIMEOUT,
    )
    return respond({"sessions": [pty_session_json(s) for s in resp.sessions]})
