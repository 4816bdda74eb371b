"""Real Coordinate streams for tests: requests go out as the test sends
them, a thread collects what the server sends, and the test waits on what
it expects (with a deadline) instead of sleeping."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc

from server.tailnet.policies import service_addresses

Req = tpb.CoordinateRequest
Update = tpb.CoordinateResponse.PeerUpdate
NODE, DISCONNECTED, LOST, RFH = (
    Update.NODE,
    Update.DISCONNECTED,
    Update.LOST,
    Update.READY_FOR_HANDSHAKE,
)
WAIT = 10.0
_END = object()


def agent_address(agent_id: str | uuid.UUID) -> str:
    """The agent's service address (Tailscale prefix) as a /128."""
    addresses = sorted(str(a) for a in service_addresses(uuid.UUID(str(agent_id))))
    tailscale = next(a for a in addresses if a.startswith("fd7a:115c:a1e0:") and "49d6" not in a)
    return f"{tailscale}/128"


def agent_node(agent_id: str | uuid.UUID, n: int = 1, **fields: Any) -> tpb.Node:
    return tpb.Node(
        id=n,
        preferred_derp=fields.pop("preferred_derp", 999),
        addresses=[agent_address(agent_id)],
        endpoints=[f"10.0.0.{n % 250}:41641"],
        **fields,
    )


def client_node(n: int = 1, **fields: Any) -> tpb.Node:
    return tpb.Node(
        id=1000 + n,
        preferred_derp=999,
        addresses=[f"fd7a:115c:a1e0::{n:x}/128"],
        endpoints=[f"192.168.0.{n % 250}:41641"],
        **fields,
    )


def update_self(node: tpb.Node) -> tpb.CoordinateRequest:
    return Req(update_self=Req.UpdateSelf(node=node))


def add_tunnel(peer: str | uuid.UUID | bytes) -> tpb.CoordinateRequest:
    return Req(add_tunnel=Req.Tunnel(id=_id_bytes(peer)))


def remove_tunnel(peer: str | uuid.UUID | bytes) -> tpb.CoordinateRequest:
    return Req(remove_tunnel=Req.Tunnel(id=_id_bytes(peer)))


def disconnect() -> tpb.CoordinateRequest:
    return Req(disconnect=Req.Disconnect())


def ready_for_handshake(*peers: str | uuid.UUID | bytes) -> tpb.CoordinateRequest:
    return Req(ready_for_handshake=[Req.ReadyForHandshake(id=_id_bytes(p)) for p in peers])


def _id_bytes(peer: str | uuid.UUID | bytes) -> bytes:
    if isinstance(peer, bytes):
        return peer
    return uuid.UUID(str(peer)).bytes


def md(token: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return (
        ("coder-session-token", token),
        *((k.replace("_", "-"), v) for k, v in extra.items()),
    )


class Coordination:
    """One Coordinate stream."""

    def __init__(
        self,
        channel: grpc.Channel,
        metadata: tuple[tuple[str, str], ...],
        *,
        read: bool = True,
        raw: bool = False,
    ) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self._responses: queue.Queue[Any] = queue.Queue()
        self.history: list[tpb.CoordinateResponse] = []
        self.ended: grpc.RpcError | object | None = _END
        if raw:
            # Bytes go out as they are (malformed messages).
            method = channel.stream_stream(
                "/coder.tailnet.v2.Tailnet/Coordinate",
                request_serializer=lambda b: b,
                response_deserializer=tpb.CoordinateResponse.FromString,
            )
        else:
            method = tgrpc.TailnetStub(channel).Coordinate
        self.call = method(self._outgoing(), metadata=metadata)
        self._reader: threading.Thread | None = None
        if read:
            self.start_reading()

    def _outgoing(self) -> Any:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item

    def start_reading(self) -> None:
        def read() -> None:
            try:
                for response in self.call:
                    self._responses.put(response)
                self._responses.put(None)
            except grpc.RpcError as err:
                self._responses.put(err)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    # -- sending ------------------------------------------------------------
    def send(self, *requests: Any) -> Coordination:
        for request in requests:
            self._requests.put(request)
        return self

    def close_sending(self) -> None:
        """Half-closes the stream (no disconnect message)."""
        self._requests.put(_END)

    def cancel(self) -> None:
        self.call.cancel()

    # -- receiving ----------------------------------------------------------
    def next(self, timeout: float = WAIT) -> tpb.CoordinateResponse:
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing received within {timeout} s") from None
        if item is None or isinstance(item, grpc.RpcError):
            self.ended = item
            raise AssertionError(f"the stream ended: {item!r}")
        self.history.append(item)
        return item

    def poll(self) -> list[tpb.CoordinateResponse]:
        """What has arrived so far, without waiting."""
        got = []
        while True:
            try:
                item = self._responses.get_nowait()
            except queue.Empty:
                return got
            if item is None or isinstance(item, grpc.RpcError):
                self.ended = item
                raise AssertionError(f"the stream ended: {item!r}")
            self.history.append(item)
            got.append(item)

    def next_update(self, timeout: float = WAIT) -> tpb.CoordinateResponse.PeerUpdate:
        """The next response, which must carry exactly one peer update."""
        response = self.next(timeout)
        assert len(response.peer_updates) == 1, response
        return response.peer_updates[0]

    def wait_for(
        self, predicate: Callable[[tpb.CoordinateResponse], bool], timeout: float = WAIT
    ) -> tpb.CoordinateResponse:
        deadline = time.monotonic() + timeout
        while True:
            response = self.next(max(0.01, deadline - time.monotonic()))
            if predicate(response):
                return response

    def wait_update(
        self, about: str | uuid.UUID, kind: int, timeout: float = WAIT
    ) -> tpb.CoordinateResponse.PeerUpdate:
        """Skips to the update of ``kind`` about ``about``."""
        peer = _id_bytes(about)
        response = self.wait_for(
            lambda r: any(u.id == peer and u.kind == kind for u in r.peer_updates), timeout
        )
        return next(u for u in response.peer_updates if u.id == peer and u.kind == kind)

    def end(self, timeout: float = WAIT) -> grpc.RpcError | None:
        """Waits for the stream to end; its error (None: ended OK). Anything
        still unread must not be there."""
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the stream did not end within {timeout} s") from None
        assert item is None or isinstance(item, grpc.RpcError), f"unexpected response {item}"
        self.ended = item
        return item

    def end_after_updates(self, timeout: float = WAIT) -> tuple[list[Any], grpc.RpcError | None]:
        """Everything received until the stream ends, and how it ended."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._responses.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the stream did not end within {timeout} s ({len(got)} received)"
                ) from None
            if item is None or isinstance(item, grpc.RpcError):
                self.ended = item
                return got, item
            got.append(item)

    def close(self) -> None:
        self.close_sending()
        self.cancel()


def peer_id_of(update: tpb.CoordinateResponse.PeerUpdate) -> uuid.UUID:
    return uuid.UUID(bytes=update.id)
