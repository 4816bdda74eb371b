"""The ``agentplane.me.v1.MeService`` servicer: resolve the calling agent,
then the concern function. Calls that wait (the external-auth long-poll, the
reinit stream) hold the agent's session open while they do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.agentapi.sessions import AgentSessions
from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.errors import map_servicer_errors
from server.me.externalauth import get_external_auth
from server.me.gitsshkey import get_git_ssh_key
from server.me.reinit import watch_reinit
from server.me.wakeups import Wakeups
from server.storage.db import Database


@map_servicer_errors
class MeServicer(me_pb2_grpc.MeServiceServicer):
    def __init__(
        self,
        *,
        db: Database,
        auth: Authenticator,
        clock: Clock,
        settings: Settings,
        sessions: AgentSessions,
        wakeups: Wakeups,
    ) -> None:
        self._db = db
        self._auth = auth
        self._clock = clock
        self._settings = settings
        self._sessions = sessions
        self._wakeups = wakeups

    async def WhoAmI(self, request: me_pb2.WhoAmIRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return me_pb2.WhoAmIResponse(
            agent_id=str(caller.agent.id), workspace_id=str(caller.workspace.id)
        )

    async def GetGitSSHKey(self, request: me_pb2.GetGitSSHKeyRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return get_git_ssh_key(self._db, caller=caller)

    async def GetExternalAuth(self, request: me_pb2.GetExternalAuthRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        with (
            self._sessions.hold(caller, stream=False)
            if request.listen
            else contextlib.nullcontext()
        ):
            return await get_external_auth(
                self._db,
                self._clock,
                self._wakeups,
                caller=caller,
                request=request,
                access_url=self._settings.effective_access_url,
                listen_timeout=self._settings.external_auth_listen_timeout_seconds,
            )

    async def HoldConnection(
        self, request: me_pb2.HoldConnectionRequest, context: Any
    ) -> AsyncIterator[me_pb2.HoldConnectionResponse]:
        caller = await self._auth.agent(context)
        with self._sessions.hold(caller):
            yield me_pb2.HoldConnectionResponse()
            while True:
                await asyncio.sleep(self._settings.sse_keepalive_seconds)
                # Coder's monitor ends a session whose build is outdated.
                await self._auth.agent(context)
                yield me_pb2.HoldConnectionResponse()

    async def WatchReinit(
        self, request: me_pb2.WatchReinitRequest, context: Any
    ) -> AsyncIterator[me_pb2.WatchReinitResponse]:
        caller = await self._auth.agent(context)
        with self._sessions.hold(caller):
            async for item in watch_reinit(
                self._db,
                self._wakeups,
                caller=caller,
                wait=request.wait,
                keepalive_seconds=self._settings.sse_keepalive_seconds,
            ):
                yield item
