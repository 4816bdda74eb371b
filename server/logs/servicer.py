"""The ``agentplane.logs.v1.LogsService`` servicer: resolve the caller (an
agent for PostLogSource, a user for reading), then the concern function."""

from __future__ import annotations

from typing import Any

from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc

from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.errors import map_servicer_errors
from server.logs.read import FollowCache, list_logs, watch_logs
from server.logs.sources import post_log_source
from server.storage.db import Database


@map_servicer_errors
class LogsServicer(logs_pb2_grpc.LogsServiceServicer):
    def __init__(
        self, *, db: Database, clock: Clock, settings: Settings, auth: Authenticator
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._auth = auth
        self._follow_cache = FollowCache()

    async def PostLogSource(self, request: logs_pb2.PostLogSourceRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            post_log_source,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )

    async def ListWorkspaceAgentLogs(
        self, request: logs_pb2.ListWorkspaceAgentLogsRequest, context: Any
    ) -> Any:
        user = self._auth.user(context)
        return list_logs(self._db, user=user, request=request)

    async def WatchWorkspaceAgentLogs(
        self, request: logs_pb2.WatchWorkspaceAgentLogsRequest, context: Any
    ) -> Any:
        user = self._auth.user(context)
        async for message in watch_logs(
            self._db,
            user=user,
            request=request,
            repoll_seconds=self._settings.log_follow_repoll_seconds,
            cache=self._follow_cache,
        ):
            yield message
