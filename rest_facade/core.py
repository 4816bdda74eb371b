"""The facade's channel to the core: lazily opened (after gunicorn forks),
one per process, with a deadline on every call and the caller's token passed
through as ``coder-session-token`` metadata."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from agentplane.identity.v1 import identity_pb2_grpc
from agentplane.logs.v1 import logs_pb2_grpc
from agentplane.me.v1 import me_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc
from coder.agent.v2 import agent_pb2_grpc
from grpc_health.v1 import health_pb2_grpc

T = TypeVar("T")

# Unary calls answer in milliseconds; the deadline only bounds a stuck core.
DEFAULT_TIMEOUT_SECONDS = 30.0
SESSION_TOKEN_METADATA = "coder-session-token"
# What a gRPC metadata value may hold: printable ASCII.
_NOT_METADATA = re.compile(r"[^\x20-\x7e]")


def _token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The caller's token as the core reads it. A token with characters gRPC
    metadata cannot carry (non-ASCII, control characters: possible in a
    cookie, a query parameter or a latin-1 header) goes with those replaced
    by "?", the same length: no valid token has them, so the core refuses it
    with the same 401 as any malformed token (grpc would otherwise fail the
    call before sending it: a 500)."""
    if not token:
        return ()
    if not (token.isascii() and token.isprintable()):
        token = _NOT_METADATA.sub("?", token)
    return ((SESSION_TOKEN_METADATA, token),)


class CoreClient:
    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: dict[type, Any] = {}

    def _stub(self, factory: Callable[[grpc.Channel], T]) -> T:
        stub = self._stubs.get(factory)  # type: ignore[call-overload]
        if stub is not None:
            return stub
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    self.address,
                    options=[
                        ("grpc.max_receive_message_length", 4 << 20),
                        ("grpc.max_send_message_length", 4 << 20),
                    ],
                )
            stub = self._stubs.setdefault(factory, factory(self._channel))  # type: ignore[call-overload]
        return stub

    @property
    def agent(self) -> agent_pb2_grpc.AgentStub:
        return self._stub(agent_pb2_grpc.AgentStub)

    @property
    def workspace_agents(self) -> workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub:
        return self._stub(workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub)

    @property
    def logs(self) -> logs_pb2_grpc.LogsServiceStub:
        return self._stub(logs_pb2_grpc.LogsServiceStub)

    @property
    def me(self) -> me_pb2_grpc.MeServiceStub:
        return self._stub(me_pb2_grpc.MeServiceStub)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return self._stub(health_pb2_grpc.HealthStub)

    @property
    def identity(self) -> identity_pb2_grpc.InstanceIdentityServiceStub:
        return self._stub(identity_pb2_grpc.InstanceIdentityServiceStub)

    def call(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        token: str | None,
        timeout: float | None = None,
    ) -> T:
        """A unary call with the caller's token, under a deadline (the
        client's default unless `timeout` is given)."""
        return method(request, metadata=_token_metadata(token), timeout=timeout or self.timeout)

    def stream(self, method: Callable[..., T], request: Any, *, token: str | None) -> T:
        """A server-streaming call with the caller's token and no deadline:
        it lives as long as the caller keeps it open (cancel it to end it)."""
        return method(request, metadata=_token_metadata(token))

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stubs.clear()
