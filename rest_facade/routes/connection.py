"""``GET /api/v2/workspaceagents/{id}/connection`` and
``GET /api/v2/workspaceagents/connection`` <-> WorkspaceAgentsService/GetConnectionInfo."""

from __future__ import annotations

from typing import Any

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from flask import Blueprint

from rest_facade import core
from rest_facade.coderjson import derp_map, respond
from rest_facade.parse import session_token

bp = Blueprint("connection", __name__)


def _connection(agent_id: str) -> Any:
    resp = core().call(
        core().workspace_agents.GetConnectionInfo,
        pb.GetConnectionInfoRequest(agent_id=agent_id),
        token=session_token(),
    )
    return respond(
        {
            "derp_force_websockets": resp.derp_force_websockets,
            "derp_map": derp_map(resp.derp_map),
            "disable_direct_connections": resp.disable_direct_connections,
            "hostname_suffix": resp.hostname_suffix,
        }
    )


@bp.get("/workspaceagents/connection")
def deployment_connection() -> Any:
    return _connection("")


@bp.get("/workspaceagents/<agent:agent_id>/connection")
def agent_connection(agent_id: str) -> Any:
    return _connection(agent_id)
