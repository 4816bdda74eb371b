"""GetConnectionInfo: how a client reaches an agent (DERP map and switches).

Serves ``agentplane.workspaceagents.v1.WorkspaceAgentsService/GetConnectionInfo``
(REST ``GET /api/v2/workspaceagents/{id}/connection`` and, without an agent,
``GET /api/v2/workspaceagents/connection``).
"""

from __future__ import annotations

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb

from server.config import Settings
from server.storage.db import Database
from server.storage.users import User
from server.tailnet.derpmap import DERPMapSource
from server.workspaceagents.agents import readable_agent


def get_connection_info(
    db: Database, settings: Settings, derp: DERPMapSource, *, user: User, agent_id_text: str
) -> pb.GetConnectionInfoResponse:
    if agent_id_text:
        # The agent only gates access; the answer is deployment-wide, as in Coder.
        readable_agent(db, user=user, agent_id_text=agent_id_text)
    return pb.GetConnectionInfoResponse(
        derp_map=derp.proto(),
        derp_force_websockets=settings.derp_force_websockets,
        disable_direct_connections=settings.disable_direct_connections,
        hostname_suffix=settings.hostname_suffix,
    )
