"""The ``agentplane.agenttunnel.v1.AgentConnService`` servicer: resolve the
calling user, then the concern function (ports, containers, pty, metadata);
every one that needs the agent reaches it through ``AgentDialer``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_conn_pb2_grpc as cpb_grpc

from server.agentconn import containers, metadata, ports
from server.agentconn import pty as pty_concern
from server.auth import Authenticator
from server.clock import Clock
from server.errors import map_servicer_errors
from server.storage.db import Database
from server.tunnel.dialer import AgentDialer


@map_servicer_errors
class AgentConnServicer(cpb_grpc.AgentConnServiceServicer):
    def __init__(
        self, *, db: Database, clock: Clock, auth: Authenticator, dialer: AgentDialer
    ) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth
        self._dialer = dialer

    async def ListListeningPorts(self, request: cpb.ListListeningPortsRequest, context: Any) -> Any:
        user = self._auth.user(context)
        return await ports.list_listening_ports(
            self._db, self._dialer, user=user, agent_id_text=request.agent_id
        )

    async def ListContainers(self, request: cpb.ListContainersRequest, context: Any) -> Any:
        user = self._auth.user(context)
        return await containers.list_containers(self._dialer, user=user, request=request)

    async def WatchContainers(
        self, request: cpb.WatchContainersRequest, context: Any
    ) -> AsyncIterator[cpb.WatchContainersResponse]:
        user = self._auth.user(context)
        async for message in containers.watch_containers(self._dialer, user=user, request=request):
            yield message

    async def DeleteDevcontainer(self, request: cpb.DeleteDevcontainerRequest, context: Any) -> Any:
        user = self._auth.user(context)
        return await containers.delete_devcontainer(self._dialer, user=user, request=request)

    async def RecreateDevcontainer(
        self, request: cpb.RecreateDevcontainerRequest, context: Any
    ) -> Any:
        user = self._auth.user(context)
        return await containers.recreate_devcontainer(self._dialer, user=user, request=request)

    async def Pty(
        self, request_iterator: AsyncIterator[cpb.PtyRequest], context: Any
    ) -> AsyncIterator[cpb.PtyResponse]:
        user = self._auth.user(context)
        async for message in pty_concern.pty(
            self._dialer, user=user, requests=aiter(request_iterator), peer=context.peer()
        ):
            yield message

    async def ListPtySessions(self, request: cpb.ListPtySessionsRequest, context: Any) -> Any:
        user = self._auth.user(context)
        return await pty_concern.list_pty_sessions(self._dialer, user=user, request=request)

    async def WatchWorkspaceAgentMetadata(
        self, request: cpb.WatchWorkspaceAgentMetadataRequest, context: Any
    ) -> AsyncIterator[cpb.WatchWorkspaceAgentMetadataResponse]:
        user = self._auth.user(context)
        async for message in metadata.watch_metadata(
            self._db, self._clock, user=user, request=request
        ):
            yield message
