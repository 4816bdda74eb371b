"""The agent's connection to the core: one gRPC channel to the current
address, calls that retry while the server is unreachable, and the one
"token refused" outcome that ends the agent.

* ``call(method, request)`` retries UNAVAILABLE-like failures (the server is
  down, restarting, or its database is busy) with exponential backoff and
  jitter until it succeeds, and raises ``TokenRefused`` when the server
  refuses the token (UNAUTHENTICATED) or ``CallFailed`` for any other answer
  (retrying those would only repeat them).
* ``reconnect()`` (the tunnel's loop calls it when its stream breaks) drops
  the channel and moves on to the next ``--url``, so a replica that died is
  left for the next one, and so that gRPC's own reconnect backoff (up to two
  minutes) never delays us.
* The outage is said once on stderr (``cannot reach ...``) and its end once
  (``connected to ...``), not per failed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc
from coder.agent.v2 import agent_pb2_grpc

log = logging.getLogger("agentplane.agent")

# Coder's agent retries with 100 ms .. 10 s (coder/retry); jitter spreads a
# fleet of agents reconnecting after a server restart.
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
# Codes that mean "not now": the call may pass later or elsewhere.
RETRYABLE = frozenset(
    (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
    )
)
CALL_TIMEOUT = 30.0
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.max_send_message_length", 4 << 20),
)


class TokenRefused(Exception):
    """The server refused the agent token: the agent must stop."""


class CallFailed(Exception):
    """The server answered a call with an error that retrying would repeat."""

    def __init__(self, method: str, err: grpc.RpcError) -> None:
        super().__init__(f"{method}: {err.code().name}: {err.details()}")
        self.code = err.code()
        self.details = err.details() or ""


class Backoff:
    def __init__(self, start: float = BACKOFF_START, limit: float = BACKOFF_MAX) -> None:
        self._start = start
        self._limit = limit
        self._next = start

    def reset(self) -> None:
        self._next = self._start

    def delay(self) -> float:
        """The next wait: doubling up to the limit, with full jitter on the
        upper half (so no two agents retry in step)."""
        current = self._next
        self._next = min(self._limit, self._next * 2)
        return current / 2 + random.random() * current / 2


class Link:
    def __init__(self, urls: Sequence[str], token: str) -> None:
        if not urls:
            raise ValueError("at least one server address is needed")
        self.urls = list(urls)
        self._index = 0
        self.metadata = (("coder-session-token", token),)
        self._channel: grpc.aio.Channel | None = None
        self.agent: Any = None
        self.tunnel: Any = None
        self.refused = asyncio.Event()
        self.refusal = ""
        self._outage = False
        self._backoff = Backoff()
        # Set (and replaced) when an outage ends: calls waiting to retry go
        # at once instead of sleeping out their backoff.
        self._recovered = asyncio.Event()

    @property
    def url(self) -> str:
        return self.urls[self._index]

    def open(self) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.url, options=CHANNEL_OPTIONS)
            self.agent = agent_pb2_grpc.AgentStub(self._channel)
            self.tunnel = tpb_grpc.AgentTunnelServiceStub(self._channel)

    async def reconnect(self) -> None:
        """Drops the channel and turns to the next address (calls in flight on
        the old channel fail and retry on the new one)."""
        channel, self._channel = self._channel, None
        self._index = (self._index + 1) % len(self.urls)
        self.open()
        if channel is not None:
            await channel.close(grace=None)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None

    # -- outcomes ------------------------------------------------------------------
    def refuse(self, err: grpc.RpcError) -> TokenRefused:
        if not self.refused.is_set():
            self.refusal = err.details() or "the token was refused"
            self.refused.set()
        return TokenRefused(self.refusal)

    def unreachable(self, what: str, err: grpc.RpcError | str) -> None:
        if not self._outage:
            self._outage = True
            reason = err if isinstance(err, str) else f"{err.code().name}: {err.details()}"
            print(
                f"agentplane agent: cannot reach the server at {self.url} ({what}: {reason}); "
                "retrying with backoff",
                file=sys.stderr,
                flush=True,
            )

    def reachable(self) -> None:
        self._backoff.reset()
        if self._outage:
            self._outage = False
            print(f"agentplane agent: connected to {self.url}", file=sys.stderr, flush=True)
            recovered, self._recovered = self._recovered, asyncio.Event()
            recovered.set()

    async def _retry_after(self, delay: float) -> None:
        """Sleeps ``delay``, or less if the server is reached meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._recovered.wait(), delay)

    async def pause(self) -> None:
        await asyncio.sleep(self._backoff.delay())

    # -- calls ---------------------------------------------------------------------
    async def call(self, method: str, request: Any, *, timeout: float = CALL_TIMEOUT) -> Any:
        """``Agent/<method>(request)``, retried until the server answers."""
        backoff = Backoff()
        while True:
            self.open()
            try:
                response = await getattr(self.agent, method)(
                    request, metadata=self.metadata, timeout=timeout
                )
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    raise self.refuse(err) from None
                if code not in RETRYABLE:
                    raise CallFailed(method, err) from None
                self.unreachable(method, err)
                await self._retry_after(backoff.delay())
                continue
            self.reachable()
            return response
