"""The ``coder.agent.v2.Agent`` servicer: resolve the calling agent, then
hand the request to its concern module. RPCs that later issues implement
answer UNIMPLEMENTED until then."""

from __future__ import annotations

from typing import Any

from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.agentapi.manifest import get_manifest
from server.auth import Authenticator
from server.config import Settings
from server.errors import map_servicer_errors, unimplemented_rpcs
from server.storage.db import Database
from server.tailnet.derpmap import DERPMapSource


@map_servicer_errors
class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(
        self, *, db: Database, settings: Settings, auth: Authenticator, derp: DERPMapSource
    ) -> None:
        self._db = db
        self._settings = settings
        self._auth = auth
        self._derp = derp

    async def GetManifest(self, request: agent_pb2.GetManifestRequest, context: Any) -> Any:
        caller = self._auth.agent(context)
        return get_manifest(self._db, self._settings, self._derp, caller=caller)


unimplemented_rpcs(AgentServicer, agent_pb2.DESCRIPTOR.services_by_name["Agent"])
