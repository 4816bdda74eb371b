"""The one place the core reaches an agent through its tunnel, with one
timeout and one error table.

``AgentDialer.dial(user=..., agent_id_text=...)`` does, in Coder's order:

1. the agent the user may reach (the workspace's owner or a deployment
   owner; anyone else gets the same 404 as a missing agent);
2. its connection status must be ``connected``, else 400
   ``Agent state is "<status>", it must be in the "connected" state.``;
3. its tunnel: ``_locate`` looks on this replica. With several replicas the
   tunnel may be held by another one; the replica registry
   (``server/replicas.py``, another branch) will slot in there and forward
   the request to the replica that holds it. Until then a connected agent
   without a tunnel here gets Coder's 500 ``Internal error dialing workspace
   agent.``;
4. the request, answered within ``REQUEST_TIMEOUT_SECONDS`` (Coder's 30 s);
   what goes wrong is mapped by ``failure(operation, what)`` from ``ERRORS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
from typing import Any

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

from server.clock import Clock
from server.errors import (
    Conflict,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Timeout,
    Unavailable,
)
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database
from server.tunnel.registry import TunnelRegistry
from server.tunnel.tunnel import AgentTunnel, TunnelBusy, TunnelClosed
from server.workspaceagents.agents import readable_agent
from server.workspaceagents.status import connection_status

# Coder: "If the agent is unreachable, the request will hang. Assume that if
# we don't get a response after 30s that the agent is unreachable."
REQUEST_TIMEOUT_SECONDS = 30.0


class Operation(enum.Enum):
    LISTENING_PORTS = "listening_ports"
    CONTAINERS = "containers"
    WATCH_CONTAINERS = "watch_containers"
    DELETE_DEVCONTAINER = "delete_devcontainer"
    RECREATE_DEVCONTAINER = "recreate_devcontainer"
    PTY = "pty"
    PTY_SESSIONS = "pty_sessions"


class What(enum.Enum):
    TIMEOUT = "timeout"  # no answer within the timeout
    FAILED = "failed"  # the agent answered with a failure, or the tunnel broke


# (operation, what) -> (error class, message, detail or None for the cause).
# Coder's texts where Coder has them (coderd/workspaceagents.go); Coder's
# listening-ports answers a timeout with its generic 500, containers with 408.
ERRORS: dict[tuple[Operation, What], tuple[type[DomainError], str, str | None]] = {
    (Operation.LISTENING_PORTS, What.TIMEOUT): (
        Internal,
        "Internal error fetching listening ports.",
        "context deadline exceeded",
    ),
    (Operation.LISTENING_PORTS, What.FAILED): (
        Internal,
        "Internal error fetching listening ports.",
        None,
    ),
    (Operation.CONTAINERS, What.TIMEOUT): (
        Timeout,
        "Failed to fetch containers from agent.",
        "Request timed out.",
    ),
    (Operation.CONTAINERS, What.FAILED): (Internal, "Internal error fetching containers.", None),
    (Operation.WATCH_CONTAINERS, What.TIMEOUT): (
        Timeout,
        "Failed to fetch containers from agent.",
        "Request timed out.",
    ),
    (Operation.WATCH_CONTAINERS, What.FAILED): (
        Internal,
        "Internal error watching agent's containers.",
        None,
    ),
    (Operation.DELETE_DEVCONTAINER, What.TIMEOUT): (
        Timeout,
        "Failed to delete devcontainer from agent.",
        "Request timed out.",
    ),
    (Operation.DELETE_DEVCONTAINER, What.FAILED): (
        Internal,
        "An internal error occurred deleting the devcontainer.",
        None,
    ),
    (Operation.RECREATE_DEVCONTAINER, What.TIMEOUT): (
        Timeout,
        "Failed to recreate devcontainer from agent.",
        "Request timed out.",
    ),
    (Operation.RECREATE_DEVCONTAINER, What.FAILED): (
        Internal,
        "An internal error occurred recreating the devcontainer.",
        None,
    ),
    (Operation.PTY, What.TIMEOUT): (
        Timeout,
        "Failed to open a terminal on the agent.",
        "Request timed out.",
    ),
    (Operation.PTY, What.FAILED): (
        Internal,
        "Internal error in the workspace agent's terminal.",
        None,
    ),
    (Operation.PTY_SESSIONS, What.TIMEOUT): (
        Timeout,
        "Failed to fetch terminal sessions from agent.",
        "Request timed out.",
    ),
    (Operation.PTY_SESSIONS, What.FAILED): (
        Internal,
        "Internal error fetching terminal sessions.",
        None,
    ),
}

# What the agent says went wrong, where that is the user's answer rather
# than an internal error (an unknown devcontainer, a busy one, bad terminal
# parameters): relayed with the agent's own message, as Coder relays the
# agent's 404/409.
_RELAYED = {
    tpb.Failure.Kind.KIND_NOT_FOUND: NotFound,
    tpb.Failure.Kind.KIND_CONFLICT: Conflict,
    tpb.Failure.Kind.KIND_INVALID: InvalidArgument,
}

DIAL_ERROR = "Internal error dialing workspace agent."


def failure(operation: Operation, what: What, cause: str = "") -> DomainError:
    cls, message, detail = ERRORS[(operation, what)]
    return cls(message, detail=cause if detail is None else detail)


@dataclasses.dataclass
class AgentConnection:
    """A reachable agent: its row (as the user may see it) and its tunnel."""

    found: AgentInWorkspace
    tunnel: AgentTunnel
    timeout: float

    async def call(self, operation: Operation, **request: Any) -> tpb.TunnelRequest:
        """One unary request: the agent's answer frame, or the mapped error."""
        handle = self.start(operation, **request)
        try:
            return await self.first_answer(operation, handle)
        finally:
            handle.close()

    def start(self, operation: Operation, **request: Any) -> Any:
        try:
            return self.tunnel.start(**request)
        except TunnelClosed as err:
            raise Internal(DIAL_ERROR, detail=str(err)) from None
        except TunnelBusy as err:
            raise Unavailable(
                "agentplane: too many requests are open on this agent's tunnel; try again.",
                detail=str(err),
            ) from None

    async def first_answer(self, operation: Operation, handle: Any) -> tpb.TunnelRequest:
        try:
            frame = await asyncio.wait_for(handle.next(), self.timeout)
        except TimeoutError:
            raise failure(operation, What.TIMEOUT) from None
        except TunnelClosed as err:
            raise failure(operation, What.FAILED, str(err)) from None
        return check_frame(operation, frame)


def check_frame(operation: Operation, frame: tpb.TunnelRequest) -> tpb.TunnelRequest:
    if frame.WhichOneof("frame") == "failure":
        relayed = _RELAYED.get(frame.failure.kind)
        if relayed is not None:
            raise relayed(frame.failure.message, detail=frame.failure.detail)
        cause = frame.failure.message
        if frame.failure.detail:
            cause = f"{cause}: {frame.failure.detail}"
        raise failure(operation, What.FAILED, cause)
    return frame


class AgentDialer:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        registry: TunnelRegistry,
        *,
        inactive_timeout: dt.timedelta,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._registry = registry
        self._inactive = inactive_timeout
        self.timeout = timeout

    def reachable_agent(self, *, user: Any, agent_id_text: str) -> AgentInWorkspace:
        """Steps 1 and 2: the agent, if this user may reach it and it is connected."""
        found = readable_agent(self._db, user=user, agent_id_text=agent_id_text)
        status = connection_status(
            found.agent, now=self._clock.now(), inactive_timeout=self._inactive
        ).status
        if status != "connected":
            raise FailedPrecondition(
                f'Agent state is "{status}", it must be in the "connected" state.'
            )
        return found

    def dial(self, *, user: Any, agent_id_text: str) -> AgentConnection:
        found = self.reachable_agent(user=user, agent_id_text=agent_id_text)
        return AgentConnection(found, self._locate(found), self.timeout)

    def _locate(self, found: AgentInWorkspace) -> AgentTunnel:
        """The agent's tunnel. Several replicas: here the replica registry
        will find the replica holding it (``last_connected_replica_id``) and
        return a forwarding tunnel with the same interface."""
        tunnel = self._registry.get(found.agent.id)
        if tunnel is None or tunnel.closed_reason is not None:
            raise Internal(
                DIAL_ERROR,
                detail="the agent holds no tunnel to this server (an older or foreign agent, "
                "or its tunnel is on another replica)",
            )
        return tunnel
