"""The ``agentplane.workspaceagents.v1.WorkspaceAgentsService`` servicer:
resolve the calling user, then the concern function."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc

from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.errors import map_servicer_errors
from server.storage.db import Database
from server.tailnet.derpmap import DERPMapSource
from server.workspaceagents.agents import add_latency, get_workspace_agent
from server.workspaceagents.connection import get_connection_info
from server.workspaceagents.diagnosis import get_workspace_agent_diagnosis


@map_servicer_errors
class WorkspaceAgentsServicer(pb_grpc.WorkspaceAgentsServiceServicer):
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        auth: Authenticator,
        derp: DERPMapSource,
        tailnet_node: Callable[[uuid.UUID], bytes | None] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._auth = auth
        self._derp = derp
        self._inactive = dt.timedelta(seconds=settings.agent_inactive_timeout_seconds)
        # The agent's latest tailnet node, for `latency` (coordinator).
        self._tailnet_node = tailnet_node

    async def GetWorkspaceAgent(self, request: pb.GetWorkspaceAgentRequest, context: Any) -> Any:
        user = self._auth.user(context)
        agent = get_workspace_agent(
            self._db,
            self._clock,
            user=user,
            agent_id_text=request.id,
            inactive_timeout=self._inactive,
            fallback_troubleshooting_url=self._settings.agent_fallback_troubleshooting_url,
        )
        if self._tailnet_node is not None:
            add_latency(agent, self._tailnet_node(uuid.UUID(agent.id)), self._derp)
        return pb.GetWorkspaceAgentResponse(agent=agent)

    async def GetConnectionInfo(self, request: pb.GetConnectionInfoRequest, context: Any) -> Any:
        user = self._auth.user(context)
        return get_connection_info(
            self._db, self._settings, self._derp, user=user, agent_id_text=request.agent_id
        )

    async def GetWorkspaceAgentDiagnosis(
        self, request: pb.GetWorkspaceAgentDiagnosisRequest, context: Any
    ) -> Any:
        user = self._auth.user(context)
        diagnosis = get_workspace_agent_diagnosis(
            self._db,
            self._clock,
            user=user,
            agent_id_text=request.id,
            inactive_timeout=self._inactive,
            derp=self._derp,
        )
        return pb.GetWorkspaceAgentDiagnosisResponse(diagnosis=diagnosis)
