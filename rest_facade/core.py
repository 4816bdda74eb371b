"""The facade's channels to the core, with the caller's token passed through
as ``coder-session-token`` metadata.

``CoreClient`` (blocking, lazily opened) serves the Flask views on the
worker threads, with a deadline on every call; ``AsyncCoreClient``
(grpc.aio) serves the handlers of long-lived connections on the front's
event loop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from agentplane.agenttunnel.v1 import agent_conn_pb2_grpc
from agentplane.identity.v1 import identity_pb2_grpc
from agentplane.logs.v1 import logs_pb2_grpc
from agentplane.me.v1 import me_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc
from coder.agent.v2 import agent_pb2_grpc
from grpc_health.v1 import health_pb2_grpc

T = TypeVar("T")

# Coder's 4 MiB message cap, both ways.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.max_send_message_length", 4 << 20),
)

# Unary calls answer in milliseconds; the deadline only bounds a stuck core.
DEFAULT_TIMEOUT_SECONDS = 30.0
SESSION_TOKEN_METADATA = "coder-session-token"
REQUEST_ID_METADATA = "x-request-id"
# The request being served (set by the front for a view's thread and for a
# hand-off's task): passed to the core so both logs name the same request.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# What a gRPC metadata value may hold: printable ASCII.
_NOT_METADATA = re.compile(r"[^\x20-\x7e]")


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The caller's token as the core reads it, with the request's id when
    one is being served (REQUEST_ID). A token with characters gRPC
    metadata cannot carry (non-ASCII, control characters: possible in a
    cookie, a query parameter or a latin-1 header) goes with those replaced
    by "?", the same length: no valid token has them, so the core refuses it
    with the same 401 as any malformed token (grpc would otherwise fail the
    call before sending it: a 500)."""
    rid = REQUEST_ID.get()
    extra = ((REQUEST_ID_METADATA, rid),) if rid else ()
    if not token:
        return extra
    if not (token.isascii() and token.isprintable()):
        token = _NOT_METADATA.sub("?", token)
    return ((SESSION_TOKEN_METADATA, token), *extra)


class CoreClient:
    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: dict[type, Any] = {}

    def stub(self, factory: Callable[[grpc.Channel], T]) -> T:
        stub = self._stubs.get(factory)  # type: ignore[call-overload]
        if stub is not None:
            return stub
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
            stub = self._stubs.setdefault(factory, factory(self._channel))  # type: ignore[call-overload]
        return stub

    @property
    def agent(self) -> agent_pb2_grpc.AgentStub:
        return self.stub(agent_pb2_grpc.AgentStub)

    @property
    def workspace_agents(self) -> workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub:
        return self.stub(workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub)

    @property
    def logs(self) -> logs_pb2_grpc.LogsServiceStub:
        return self.stub(logs_pb2_grpc.LogsServiceStub)

    @property
    def me(self) -> me_pb2_grpc.MeServiceStub:
        return self.stub(me_pb2_grpc.MeServiceStub)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return self.stub(health_pb2_grpc.HealthStub)

    @property
    def identity(self) -> identity_pb2_grpc.InstanceIdentityServiceStub:
        return self.stub(identity_pb2_grpc.InstanceIdentityServiceStub)

    @property
    def agent_conn(self) -> agent_conn_pb2_grpc.AgentConnServiceStub:
        return self.stub(agent_conn_pb2_grpc.AgentConnServiceStub)

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
        return method(request, metadata=token_metadata(token), timeout=timeout or self.timeout)

    def stream(self, method: Callable[..., T], request: Any, *, token: str | None) -> T:
        """A server-streaming call with the caller's token and no deadline:
        it lives as long as the caller keeps it open (cancel it to end it)."""
        return method(request, metadata=token_metadata(token))

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stubs.clear()


class AsyncCoreClient:
    """The core over grpc.aio, for handlers on the front's event loop. The
    channel is opened on first use, on that loop."""

    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[Any, Any] = {}
        self._shared: dict[str, Any] = {}
        self._shared_locks: dict[str, asyncio.Lock] = {}

    def shared(self, name: str, make: Callable[[grpc.aio.Channel], T]) -> T:
        """One object per channel made by ``make(channel)`` (e.g. the dRPC
        bridge, whose multicallables every session reuses)."""
        if name not in self._shared:
            self._shared[name] = make(self.channel)
        return self._shared[name]  # type: ignore[no-any-return]

    async def shared_async(self, name: str, make: Callable[[grpc.aio.Channel], Any]) -> Any:
        """As shared(), for something made by a coroutine (made once even when
        several callers ask at the same time; a failure is not kept)."""
        if name in self._shared:
            return self._shared[name]
        lock = self._shared_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._shared:
                self._shared[name] = await make(self.channel)
        return self._shared[name]

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return self._channel

    def stub(self, factory: Callable[[Any], T]) -> T:
        stub = self._stubs.get(factory)
        if stub is None:
            stub = self._stubs[factory] = factory(self.channel)
        return stub

    @property
    def logs(self) -> logs_pb2_grpc.LogsServiceStub:
        return self.stub(logs_pb2_grpc.LogsServiceStub)

    @property
    def me(self) -> me_pb2_grpc.MeServiceStub:
        return self.stub(me_pb2_grpc.MeServiceStub)

    @property
    def workspace_agents(self) -> workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub:
        return self.stub(workspace_agents_pb2_grpc.WorkspaceAgentsServiceStub)

    @property
    def agent_conn(self) -> agent_conn_pb2_grpc.AgentConnServiceStub:
        return self.stub(agent_conn_pb2_grpc.AgentConnServiceStub)

    async def call(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        token: str | None,
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        return await method(
            request, metadata=token_metadata(token) + metadata, timeout=timeout or self.timeout
        )

    def stream(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        token: str | None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> T:
        """A server-streaming call without a deadline (cancel it to end it)."""
        return method(request, metadata=token_metadata(token) + metadata)

    async def close_shared(self) -> None:
        """Closes what shared() made that can be closed (the DERP relay)."""
        for obj in list(self._shared.values()):
            close = getattr(obj, "close", None)
            if close is not None and inspect.iscoroutinefunction(close):
                await close()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stubs.clear()
        self._shared.clear()
