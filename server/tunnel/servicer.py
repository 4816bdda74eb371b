"""The ``agentplane.agenttunnel.v1.AgentTunnelService`` servicer: the agent's
side of the tunnel.

The agent authenticates with its token and says hello; from then on the
stream is the agent's tunnel (``server/tunnel/tunnel.py``), registered on this
replica, and it keeps the agent connected (as Coder's RPC connection does).
When a newer build replaces the agent (or its workspace is deleted) the
tunnel ends with the same UNAUTHENTICATED a refused token gets, so the old
agent stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc

from server.agentapi.sessions import AgentSessions
from server.auth import Authenticator
from server.errors import DomainError, InvalidArgument, map_servicer_errors
from server.pubsub import WORKSPACE
from server.storage.db import Database
from server.tunnel.registry import TunnelRegistry
from server.tunnel.tunnel import AgentTunnel

log = logging.getLogger(__name__)

# The agent must say hello this soon after opening the stream.
HELLO_TIMEOUT_SECONDS = 10.0
# Besides build notifications, the agent's token is re-checked this often
# (a lost notification delays the end of a replaced agent's tunnel, no more).
RECHECK_SECONDS = 60.0
# Coder's agents may ask for up to this idle timeout; more is clamped.
MAX_PTY_IDLE_TIMEOUT = 7 * 24 * 3600


@map_servicer_errors
class AgentTunnelServicer(tpb_grpc.AgentTunnelServiceServicer):
    def __init__(
        self,
        *,
        db: Database,
        auth: Authenticator,
        sessions: AgentSessions,
        registry: TunnelRegistry,
    ) -> None:
        self._db = db
        self._auth = auth
        self._sessions = sessions
        self._registry = registry

    async def Tunnel(
        self, request_iterator: AsyncIterator[tpb.TunnelRequest], context: Any
    ) -> AsyncIterator[tpb.TunnelResponse]:
        caller = await self._auth.agent(context)
        frames = aiter(request_iterator)
        try:
            hello = await asyncio.wait_for(anext(frames), HELLO_TIMEOUT_SECONDS)
        except (TimeoutError, StopAsyncIteration):
            raise InvalidArgument("The agent must open its tunnel with a hello.") from None
        if hello.WhichOneof("frame") != "hello":
            raise InvalidArgument("The agent must open its tunnel with a hello.")
        tunnel = AgentTunnel(
            caller.agent.id,
            version=hello.hello.version,
            pty_idle_timeout=min(hello.hello.pty_idle_timeout_seconds, MAX_PTY_IDLE_TIMEOUT),
        )
        refused: list[DomainError] = []
        sub = self._db.pubsub.subscribe((WORKSPACE, str(caller.workspace.id)))
        reader = asyncio.create_task(self._read(frames, tunnel))
        watcher = asyncio.create_task(self._watch_build(context, sub, tunnel, refused))
        self._registry.register(tunnel)
        try:
            with self._sessions.hold(caller):
                # The first frame (id 0, empty) tells the agent its tunnel is open.
                yield tpb.TunnelResponse()
                while (frame := await tunnel.next_outgoing()) is not None:
                    yield frame
            if refused:
                raise refused[0]
        finally:
            tunnel.close("the tunnel ended")
            self._registry.unregister(tunnel)
            sub.close()
            for task in (reader, watcher):
                task.cancel()
            for task in (reader, watcher):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self, frames: AsyncIterator[tpb.TunnelRequest], tunnel: AgentTunnel) -> None:
        try:
            async for frame in frames:
                tunnel.dispatch(frame)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.debug("agent %s tunnel read ended: %s", tunnel.agent_id, err)
        tunnel.close("the agent closed its tunnel")

    async def _watch_build(
        self, context: Any, sub: Any, tunnel: AgentTunnel, refused: list[DomainError]
    ) -> None:
        """Ends the tunnel once the agent's token stops authenticating (a new
        build, a deleted workspace): woken by the workspace's notifications,
        and on a slow timer in case one is lost."""
        while tunnel.closed_reason is None:
            # Jittered: a fleet of agents that connected together (after a
            # restart) must not all re-check in the same instant.
            await sub.wait(RECHECK_SECONDS * (0.5 + random.random()))
            try:
                await self._auth.agent(context)
            except DomainError as err:
                refused.append(err)
                tunnel.close("the agent's build is no longer the workspace's latest")
                return
            except Exception:
                log.warning("could not re-check agent %s's token", tunnel.agent_id, exc_info=True)
