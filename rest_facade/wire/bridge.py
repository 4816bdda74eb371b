"""The dRPC door's bridge to the core: every dRPC call of
``coder.agent.v2.Agent`` and ``coder.tailnet.v2.Tailnet`` becomes the same
call on the core's gRPC channel, message bytes passed through undecoded (the
protobuf payloads are the same on both wires), so behaviour, errors and
limits are the core's. Served for ``me/rpc`` (both services) and
``{id}/coordinate`` / ``/tailnet`` (Tailnet only).

The caller's credentials and the negotiated API version go with every call
as gRPC metadata (``coder-session-token``, ``coder-api-version``); the core
authenticates each call as it does for gRPC agents. A gRPC status becomes a
dRPC error with the status message as its text and the gRPC code as its
drpcerr code: UNIMPLEMENTED is 12 on both wires, which is what Coder's
clients test for (``drpcerr.Code(err) == drpcerr.Unimplemented``); the other
codes Coder's server sends as 0, and its clients read only the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable, Sequence

import grpc
from coder.agent.v2 import agent_pb2
from coder.tailnet.v2 import tailnet_pb2
from google.protobuf.descriptor import ServiceDescriptor

from rest_facade.wire.apiversion import API_VERSION_METADATA
from rest_facade.wire.drpc import DRPCError, Handler, RPCKind, ServerCall

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["Agent"]
TAILNET_SERVICE = tailnet_pb2.DESCRIPTOR.services_by_name["Tailnet"]
SESSION_TOKEN_METADATA = "coder-session-token"
# Unary calls answer in milliseconds; the deadline only bounds a stuck core.
UNARY_TIMEOUT_SECONDS = 30.0
# What a gRPC metadata value may hold: printable ASCII.
_NOT_METADATA = re.compile(r"[^\x20-\x7e]")


def rpc_kinds(services: Iterable[ServiceDescriptor]) -> dict[str, RPCKind]:
    """dRPC method name (``/coder.agent.v2.Agent/GetManifest``) -> its kind."""
    kinds = {}
    for service in services:
        for method in service.methods:
            if method.client_streaming and method.server_streaming:
                kind = RPCKind.BIDI
            elif method.client_streaming:
                kind = RPCKind.CLIENT_STREAM
            elif method.server_streaming:
                kind = RPCKind.SERVER_STREAM
            else:
                kind = RPCKind.UNARY
            kinds[f"/{service.full_name}/{method.name}"] = kind
    return kinds


def call_metadata(
    *, token: str | None, api_version: str | None, extra: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """The metadata every bridged call carries. A token with characters
    metadata cannot hold goes with them replaced (no valid token has them,
    so the core refuses it with its usual 401-class error)."""
    metadata: list[tuple[str, str]] = []
    if token:
        metadata.append((SESSION_TOKEN_METADATA, _NOT_METADATA.sub("?", token)))
    if api_version:
        metadata.append((API_VERSION_METADATA, api_version))
    metadata.extend(extra)
    return tuple(metadata)


def drpc_error(err: grpc.aio.AioRpcError) -> DRPCError:
    return DRPCError(err.code().value[0], err.details() or err.code().name)


class CoreBridge:
    """Builds dRPC handlers that call the core over ``channel`` (a
    ``grpc.aio`` channel on the serving event loop)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        services: Iterable[ServiceDescriptor] = (AGENT_SERVICE, TAILNET_SERVICE),
        unary_timeout: float = UNARY_TIMEOUT_SECONDS,
    ) -> None:
        self._timeout = unary_timeout
        self._calls: dict[str, tuple[RPCKind, object]] = {}
        for path, kind in rpc_kinds(services).items():
            if kind is RPCKind.UNARY:
                factory = channel.unary_unary
            elif kind is RPCKind.SERVER_STREAM:
                factory = channel.unary_stream
            elif kind is RPCKind.CLIENT_STREAM:
                factory = channel.stream_unary
            else:
                factory = channel.stream_stream
            # No serializers: bytes in, bytes out.
            self._calls[path] = (kind, factory(path))

    @property
    def rpcs(self) -> list[str]:
        return sorted(self._calls)

    def handlers(self, metadata: Sequence[tuple[str, str]]) -> dict[str, Handler]:
        """The handlers of one session: every call carries ``metadata``."""
        md = tuple(metadata)
        out: dict[str, Handler] = {}
        for path, (kind, multicallable) in self._calls.items():
            if kind is RPCKind.UNARY:
                out[path] = self._unary(multicallable, md)
            elif kind is RPCKind.SERVER_STREAM:
                out[path] = self._server_stream(multicallable, md)
            elif kind is RPCKind.CLIENT_STREAM:
                out[path] = self._client_stream(multicallable, md)
            else:
                out[path] = self._bidi(multicallable, md)
        return out

    def _unary(self, multicallable: object, md: tuple[tuple[str, str], ...]) -> Handler:
        timeout = self._timeout

        async def handle(call: ServerCall) -> None:
            request = await call.recv_one()
            try:
                response = await multicallable(request, metadata=md, timeout=timeout)  # type: ignore[operator]
            except grpc.aio.AioRpcError as err:
                raise drpc_error(err) from None
            await call.send(response)

        return handle

    @staticmethod
    def _server_stream(multicallable: object, md: tuple[tuple[str, str], ...]) -> Handler:
        async def handle(call: ServerCall) -> None:
            request = await call.recv_one()
            grpc_call = multicallable(request, metadata=md)  # type: ignore[operator]
            try:
                while True:
                    response = await grpc_call.read()
                    if response is grpc.aio.EOF:
                        return
                    # Waits while the client's window is shut: a slow reader
                    # slows only its own call (and gRPC holds the core back).
                    await call.send(response)
            except grpc.aio.AioRpcError as err:
                raise drpc_error(err) from None
            finally:
                grpc_call.cancel()

        return handle

    @staticmethod
    def _client_stream(multicallable: object, md: tuple[tuple[str, str], ...]) -> Handler:
        async def handle(call: ServerCall) -> None:
            grpc_call = multicallable(metadata=md)  # type: ignore[operator]
            pump = asyncio.get_running_loop().create_task(_pump_requests(call, grpc_call))
            try:
                response = await grpc_call
            except grpc.aio.AioRpcError as err:
                raise drpc_error(err) from None
            finally:
                await _stop(pump)
                grpc_call.cancel()
            await call.send(response)

        return handle

    @staticmethod
    def _bidi(multicallable: object, md: tuple[tuple[str, str], ...]) -> Handler:
        async def handle(call: ServerCall) -> None:
            grpc_call = multicallable(metadata=md)  # type: ignore[operator]
            pump = asyncio.get_running_loop().create_task(_pump_requests(call, grpc_call))
            try:
                while True:
                    response = await grpc_call.read()
                    if response is grpc.aio.EOF:
                        break
                    await call.send(response)
            except grpc.aio.AioRpcError as err:
                raise drpc_error(err) from None
            finally:
                await _stop(pump)
                grpc_call.cancel()

        return handle


async def _pump_requests(call: ServerCall, grpc_call: object) -> None:
    """The client's messages into the gRPC call, then its half-close."""
    while (message := await call.recv()) is not None:
        await grpc_call.write(message)  # type: ignore[attr-defined]
    await grpc_call.done_writing()  # type: ignore[attr-defined]


async def _stop(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
