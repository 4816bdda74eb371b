"""One ``coder.tailnet.v2.Tailnet/Coordinate`` stream: who is calling, as
which peer, under which policy; then requests in, responses out.

The caller is named by metadata alone, so the REST/WebSocket doors (and a
dRPC door) bridge onto this RPC unchanged:

* ``coder-session-token``: an agent token (the peer is the agent, under
  ``AgentPolicy``) or a user API key;
* ``agent-id`` (users only): the client coordinates with this one agent
  (``ClientPolicy``; REST ``{id}/coordinate``); the agent must be one the
  user may read, else NOT_FOUND as for a missing agent. Without it the
  client is user-scoped (``UserPolicy``; REST ``/tailnet``);
* ``resume-token`` (users only): keep the peer id the token names; without
  one the server assigns a new id. An invalid or expired token is
  UNAUTHENTICATED ``Invalid resume token``.

Once the caller is accepted the stream sends initial metadata
``tailnet-peer-id: <uuid>`` (its peer id), before any response; a refusal
before that is the RPC's status, so a door can answer HTTP before upgrading.
A policy refusal later ends the stream with Coder's message as the status
message. Responses are sent pre-encoded (see ``add_tailnet_service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf import message

from server.agentapi.sessions import AgentSessions
from server.auth import Authenticator
from server.errors import (
    DomainError,
    Internal,
    InvalidArgument,
    LimitExceeded,
    Unavailable,
    database_busy,
    to_status,
)
from server.storage.db import Database
from server.tailnet.coordinator import Coordinator, CoordinatorClosed, Peer
from server.tailnet.policies import AgentPolicy, ClientPolicy, UserPolicy
from server.tailnet.resume import ResumeTokens
from server.workspaceagents.agents import readable_agent

log = logging.getLogger(__name__)


def caller_identity(user: Any, agent: Any) -> str:
    """Who a resume token is issued to (and who may present it)."""
    if agent is not None:
        return f"agent:{agent.agent.id}"
    return f"user:{user.id}"


# Initial metadata of an accepted Coordinate stream: the caller's peer id.
PEER_ID_METADATA = "tailnet-peer-id"
MALFORMED_REQUEST = "The request could not be read as a coder.tailnet.v2.CoordinateRequest."
# What a peer that stopped reading is told, when it reads again.
FAILED_UPDATE = "failed update: this peer stopped reading its responses; reconnect"


def _kicker(context: Any) -> Callable[[], None]:
    """Ends the stream from outside its handler: the handler is stuck
    writing to a peer that does not read, and grpc only ends a call when it
    is aborted (cancelling the handler's task leaves the call open)."""

    def kick() -> None:
        async def abort() -> None:
            with contextlib.suppress(Exception):
                await context.abort_with_status(to_status(LimitExceeded(FAILED_UPDATE)))

        # Held until done: the loop keeps only weak references to tasks.
        task = asyncio.get_running_loop().create_task(abort())
        _kicks.add(task)
        task.add_done_callback(_kicks.discard)

    return kick


_kicks: set[asyncio.Task[None]] = set()


class CoordinateService:
    def __init__(
        self,
        *,
        db: Database,
        auth: Authenticator,
        coordinator: Coordinator,
        resume: ResumeTokens,
        sessions: AgentSessions | None,
        prepare: Callable[[uuid.UUID], Any] | None = None,
    ) -> None:
        self._db = db
        self._auth = auth
        self._coordinator = coordinator
        self._resume = resume
        self._sessions = sessions
        # PostgreSQL: read what other replicas hold about a new peer first.
        self._prepare = prepare

    def peer_id_for(self, user: Any, resume_token: str | None) -> uuid.UUID:
        """A client's peer id: its resume token's subject, or a new one."""
        if resume_token:
            resumed = self._resume.verify(resume_token, owner=caller_identity(user, None))
            if resumed is not None:
                return resumed
        return uuid.uuid4()

    async def serve(self, requests: Any, context: Any) -> AsyncIterator[bytes]:
        user, agent = await self._auth.user_or_agent(context)
        agent_id_text, resume_token = self._auth.tailnet_metadata(context)
        hold: Any = contextlib.nullcontext()
        if agent is not None:
            peer_id, name = agent.agent.id, agent.agent.name
            policy: Any = AgentPolicy(peer_id)
            if self._sessions is not None:
                # An open Coordinate stream is an agent's live connection.
                hold = self._sessions.hold(agent)
        else:
            if agent_id_text is not None:
                target = readable_agent(self._db, user=user, agent_id_text=agent_id_text)
                policy = ClientPolicy(target.agent.id)
            else:
                policy = UserPolicy(self._db, user)
            peer_id, name = self.peer_id_for(user, resume_token), "client"
        coordinator = self._coordinator
        with hold:
            try:
                peer = coordinator.connect(peer_id, name, policy, kick=_kicker(context))
            except CoordinatorClosed:
                raise Unavailable("The coordinator is shutting down; reconnect.") from None
            reader: asyncio.Task[None] | None = None
            try:
                if self._prepare is not None:
                    await self._prepare(peer_id)
                # Accepted: the caller learns its peer id, and a door knows
                # it may upgrade (an error before this is the RPC's status).
                await context.send_initial_metadata(((PEER_ID_METADATA, str(peer_id)),))
                coordinator.start(peer)
                reader = asyncio.create_task(self._read(peer, requests))
                while (item := await peer.outbox.get()) is not None:
                    yield item
            finally:
                if reader is not None:
                    reader.cancel()
                coordinator.lost(peer)
        if peer.error is not None:
            raise peer.error

    async def _read(self, peer: Peer, requests: Any) -> None:
        coordinator = self._coordinator
        try:
            async for request in requests:
                try:
                    coordinator.handle(peer, request)
                except DomainError as err:
                    coordinator.fail(peer, err)
                    return
                except Exception as exc:
                    if database_busy(exc):
                        error: DomainError = Unavailable("The database is busy; reconnect.")
                    else:
                        log.exception("tailnet: handling a request of %s failed", peer.id)
                        error = Internal("An internal error occurred.")
                    coordinator.fail(peer, error)
                    return
                if not coordinator.is_current(peer):
                    return
        except asyncio.CancelledError:
            raise
        except message.DecodeError:
            coordinator.fail(peer, InvalidArgument(MALFORMED_REQUEST))
            return
        except Exception as exc:
            # The stream broke (cancelled, reset): the peer is lost, as when
            # it just ends.
            log.debug("tailnet: stream of %s ended: %r", peer.id, exc)
        coordinator.lost(peer)
