"""The embedded DERP relay: Tailscale's DERP protocol (``frames``) served on
any byte transport (the front hands it the connection after ``GET /derp``
upgraded, with ``Upgrade: DERP`` or to a binary WebSocket), routing packets
between the clients connected here and, through ``RemoteRoutes``, to clients
connected to other replicas.

``DERPRelay(private_key)`` holds the routing table; ``await
relay.serve(transport)`` runs one client connection to its end and returns
why it ended. The private key must be the deployment's (``serverkey``): every
replica presents the same one.

Limits (``DERPConfig``): the login must finish within ``handshake_timeout``;
a packet above ``max_packet_bytes`` (derp.MaxPacketSize) ends the
connection; each client has a send queue of ``queue_depth`` packets and
``queue_bytes`` bytes: when it is full the oldest packet is dropped (a slow
reader loses packets, it never holds up the sender); a write the transport
does not take within ``write_timeout`` ends the connection; a client silent
for ``idle_timeout / 2`` is pinged and, silent for ``idle_timeout``, dropped.
Keep-alives go out every ``keepalive_interval``. A second connection with the
same key replaces the first (which is closed). Mesh frames (forward packet,
watch connections, close peer) need a mesh key, which this relay does not
take: they end the connection, as Tailscale's does for clients without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from rest_facade.derp import frames as f
from rest_facade.wire.transport import ByteTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DERPConfig:
    # Coder raised Tailscale's 32 to 512 for throughput (derp_server.go).
    queue_depth: int = 512
    queue_bytes: int = 4 << 20
    max_packet_bytes: int = f.MAX_PACKET_SIZE
    # Tailscale's: 10 s for the login, keep-alive every 60 s.
    handshake_timeout: float = 10.0
    keepalive_interval: float = 60.0
    idle_timeout: float = 120.0
    write_timeout: float = 10.0
    # PEER_GONE "not here" answers per client per second (Tailscale's 3/s).
    not_here_per_second: float = 3.0


class PacketForwarder(Protocol):
    def forward(self, src: bytes, dst: bytes, packet: bytes) -> None:
        """Takes a packet for ``dst`` to its replica; never waits (drops
        when it cannot keep up)."""
        ...


class RemoteRoutes(Protocol):
    """The hook for several replicas: where a key not connected here is."""

    def forwarder(self, dst: bytes) -> PacketForwarder | None:
        """Is ``dst`` connected to another replica? Then the way there."""
        ...

    def client_connected(self, key: bytes) -> None:
        """``key`` is now connected here (announce it to the others)."""
        ...

    def client_gone(self, key: bytes) -> None:
        """``key`` is no longer connected here."""
        ...


class _Closed(Exception):
    pass


class _Client:
    """One connected client: its queues, its writer, its liveness."""

    def __init__(
        self, relay: DERPRelay, key: bytes, transport: ByteTransport, info: dict, conn: int
    ) -> None:
        self.relay = relay
        self.key = key
        self.transport = transport
        self.info = info
        self.conn = conn
        self.packets: deque[bytes] = deque()
        self.packet_bytes = 0
        self.control: deque[bytes] = deque()
        self.pong_pending = False
        self.wake = asyncio.Event()
        self.preferred = False
        self.closed = False
        self.close_reason = ""
        self.last_rx = time.monotonic()
        self.pinged_at = 0.0
        self.dropped = 0
        self.sent_to: set[bytes] = set()
        self.not_here_budget = relay.config.not_here_per_second
        self.not_here_at = time.monotonic()

    # -- queues (called from other clients' readers: never wait) ---------------
    def enqueue_packet(self, src: bytes, packet: bytes) -> None:
        if self.closed:
            self.relay.dropped += 1
            return
        data = f.frame(f.RECV_PACKET, src + packet)
        config = self.relay.config
        while self.packets and (
            len(self.packets) >= config.queue_depth
            or self.packet_bytes + len(data) > config.queue_bytes
        ):
            # Head drop: the freshest packets are the useful ones.
            old = self.packets.popleft()
            self.packet_bytes -= len(old)
            self.dropped += 1
            self.relay.dropped += 1
        self.packets.append(data)
        self.packet_bytes += len(data)
        self.wake.set()

    def enqueue_control(self, data: bytes) -> None:
        if not self.closed:
            self.control.append(data)
            self.wake.set()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.wake.set()

    # -- writer ----------------------------------------------------------------
    async def write_loop(self) -> None:
        timeout = self.relay.config.write_timeout
        try:
            while True:
                while not self.packets and not self.control:
                    if self.closed:
                        return
                    self.wake.clear()
                    await self.wake.wait()
                if self.closed:
                    return
                batch = bytearray()
                while self.control:
                    batch += self.control.popleft()
                self.pong_pending = False
                while self.packets and len(batch) < 256 << 10:
                    data = self.packets.popleft()
                    self.packet_bytes -= len(data)
                    batch += data
                try:
                    async with asyncio.timeout(timeout):
                        await self.transport.write(bytes(batch))
                except TimeoutError:
                    self.close(f"write timed out after {timeout:g}s (the client is not reading)")
                    return
        except (ConnectionError, OSError) as err:
            self.close(f"connection lost while writing: {err}")
        finally:
            # Unblock the reader (it may be waiting on the transport).
            with contextlib.suppress(Exception):
                await self.transport.close()

    # -- liveness ----------------------------------------------------------
    async def watchdog(self) -> None:
        config = self.relay.config
        tick = min(config.idle_timeout / 4, config.keepalive_interval)
        next_keepalive = time.monotonic() + config.keepalive_interval
        while not self.closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            silent = now - self.last_rx
            if silent >= config.idle_timeout:
                self.close(f"idle timeout ({config.idle_timeout:g}s without a frame)")
                with contextlib.suppress(Exception):
                    await self.transport.close()
                return
            if silent >= config.idle_timeout / 2 and self.pinged_at < self.last_rx:
                self.pinged_at = now
                self.enqueue_control(f.frame(f.PING, os.urandom(f.PING_LEN)))
            if now >= next_keepalive:
                next_keepalive = now + config.keepalive_interval
                self.enqueue_control(f.frame(f.KEEP_ALIVE))


class DERPRelay:
    def __init__(
        self,
        private_key: bytes,
        *,
        config: DERPConfig | None = None,
        remote: RemoteRoutes | None = None,
    ) -> None:
        self._private = PrivateKey(private_key)
        self.public_key = bytes(self._private.public_key)
        self.config = config or DERPConfig()
        self.remote = remote
        self._clients: dict[bytes, _Client] = {}
        self._conns = 0
        self.dropped = 0
        self._closing = False

    @property
    def public_key_hex(self) -> str:
        """For the upgrade response's ``Derp-Public-Key`` header."""
        return self.public_key.hex()

    def is_connected(self, key: bytes) -> bool:
        return key in self._clients

    @property
    def num_clients(self) -> int:
        return len(self._clients)

    # -- one connection --------------------------------------------------------
    async def serve(self, transport: ByteTransport, *, remote_addr: str = "") -> str:
        """Runs one client connection until it ends (and the transport is
        closed); returns why it ended."""
        try:
            return await self._serve(transport, remote_addr)
        finally:
            with contextlib.suppress(Exception):
                await transport.close()

    async def _serve(self, transport: ByteTransport, remote_addr: str) -> str:
        reader = _FrameReader(transport)
        try:
            if self._closing:
                return "relay closing"
            await transport.write(f.frame(f.SERVER_KEY, f.MAGIC + self.public_key))
            try:
                key, info, box = await asyncio.wait_for(
                    self._login(reader), self.config.handshake_timeout
                )
            except TimeoutError:
                return f"login timed out after {self.config.handshake_timeout:g}s"
            except _Closed as err:
                return str(err)
            sealed = box.encrypt(json.dumps({"version": f.PROTOCOL_VERSION}).encode())
            await transport.write(f.frame(f.SERVER_INFO, bytes(sealed)))
        except (ConnectionError, OSError) as err:
            return f"connection lost during login: {err}"
        self._conns += 1
        client = _Client(self, key, transport, info, self._conns)
        self._register(client)
        loop = asyncio.get_running_loop()
        writer = loop.create_task(client.write_loop(), name="derp-write")
        watchdog = loop.create_task(client.watchdog(), name="derp-watchdog")
        try:
            await self._read_loop(client, reader)
        except _Closed as err:
            client.close(str(err))
        except (ConnectionError, OSError) as err:
            client.close(f"connection lost while reading: {err}")
        finally:
            client.close(client.close_reason or "closed")
            self._unregister(client)
            watchdog.cancel()
            await asyncio.gather(writer, watchdog, return_exceptions=True)
        log.debug("derp client %s (%s) gone: %s", key.hex()[:8], remote_addr, client.close_reason)
        return client.close_reason

    async def _login(self, reader: _FrameReader) -> tuple[bytes, dict, Box]:
        kind, payload = await reader.read_frame(f.MAX_CLIENT_INFO_LEN)
        if kind != f.CLIENT_INFO:
            raise _Closed(f"bad frame type 0x{kind:X} during login, want 0x2")
        if len(payload) < f.KEY_LEN + f.NONCE_LEN:
            raise _Closed("short client info")
        key = payload[: f.KEY_LEN]
        box = Box(self._private, PublicKey(key))
        try:
            info = json.loads(box.decrypt(payload[f.KEY_LEN :]))
        except CryptoError:
            raise _Closed("client info: cannot open the box with the client's key") from None
        except ValueError:
            raise _Closed("client info: not JSON") from None
        if not isinstance(info, dict):
            raise _Closed("client info: not a JSON object")
        return key, info, box

    async def _read_loop(self, client: _Client, reader: _FrameReader) -> None:
        config = self.config
        limit = config.max_packet_bytes + 2 * f.KEY_LEN
        while not client.closed:
            kind, payload = await reader.read_frame(limit)
            client.last_rx = time.monotonic()
            if kind == f.SEND_PACKET:
                if len(payload) < f.KEY_LEN:
                    raise _Closed("short send packet frame")
                if len(payload) - f.KEY_LEN > config.max_packet_bytes:
                    raise _Closed(
                        f"data packet longer ({len(payload) - f.KEY_LEN}) than max of "
                        f"{config.max_packet_bytes}"
                    )
                self._route(client, payload[: f.KEY_LEN], payload[f.KEY_LEN :])
            elif kind == f.PING:
                if len(payload) < f.PING_LEN:
                    raise _Closed(f"short ping: {len(payload)}")
                if len(payload) > f.MAX_PING_LEN:
                    raise _Closed(f"ping body too large: {len(payload)}")
                # One pong in flight at most: a client pinging faster is ignored.
                if not client.pong_pending:
                    client.pong_pending = True
                    client.enqueue_control(f.frame(f.PONG, payload[: f.PING_LEN]))
            elif kind == f.NOTE_PREFERRED:
                if len(payload) != 1:
                    raise _Closed("frameNotePreferred wrong size")
                client.preferred = payload != b"\x00"
            elif kind in (f.FORWARD_PACKET, f.WATCH_CONNS, f.CLOSE_PEER):
                raise _Closed("insufficient permissions")
            # Anything else (a pong, a keep-alive, a frame type from a newer
            # protocol) was read whole and is ignored, as Tailscale does.

    def _route(self, src: _Client, dst: bytes, packet: bytes) -> None:
        target = self._clients.get(dst)
        if target is not None:
            src.sent_to.add(dst)
            target.enqueue_packet(src.key, packet)
            return
        forwarder = self.remote.forwarder(dst) if self.remote is not None else None
        if forwarder is not None:
            forwarder.forward(src.key, dst, packet)
            return
        self.dropped += 1
        if f.looks_like_disco(packet) and self._allow_not_here(src):
            src.enqueue_control(f.frame(f.PEER_GONE, dst + bytes([f.PEER_GONE_NOT_HERE])))

    def _allow_not_here(self, client: _Client) -> bool:
        rate = self.config.not_here_per_second
        now = time.monotonic()
        client.not_here_budget = min(
            rate, client.not_here_budget + (now - client.not_here_at) * rate
        )
        client.not_here_at = now
        if client.not_here_budget >= 1:
            client.not_here_budget -= 1
            return True
        return False

    # -- packets from other replicas -------------------------------------------
    def deliver(self, src: bytes, dst: bytes, packet: bytes) -> bool:
        """A packet another replica forwarded here; False when ``dst`` is not
        connected here (the packet is dropped)."""
        target = self._clients.get(dst)
        if target is None or len(packet) > self.config.max_packet_bytes:
            self.dropped += 1
            return False
        target.enqueue_packet(src, packet)
        return True

    # -- the table -------------------------------------------------------------
    def _register(self, client: _Client) -> None:
        old = self._clients.get(client.key)
        self._clients[client.key] = client
        if old is not None:
            old.close("replaced by a newer connection with the same key")
        elif self.remote is not None:
            self.remote.client_connected(client.key)

    def _unregister(self, client: _Client) -> None:
        if self._clients.get(client.key) is not client:
            return
        del self._clients[client.key]
        if self.remote is not None:
            self.remote.client_gone(client.key)
        gone = f.frame(f.PEER_GONE, client.key + bytes([f.PEER_GONE_DISCONNECTED]))
        for peer_key in client.sent_to:
            peer = self._clients.get(peer_key)
            if peer is not None:
                peer.enqueue_control(gone)

    async def close(self) -> None:
        """Ends every connection (their ``serve`` calls return)."""
        self._closing = True
        for client in list(self._clients.values()):
            client.close("relay closing")


class _FrameReader:
    def __init__(self, transport: ByteTransport) -> None:
        self._transport = transport
        self._buf = bytearray()

    async def read_frame(self, limit: int) -> tuple[int, bytes]:
        while len(self._buf) < f.FRAME_HEADER_LEN:
            await self._fill()
        kind, length = f.FRAME_HEADER.unpack_from(self._buf)
        if length > limit:
            raise _Closed(f"frame header size {length} exceeds reader limit of {limit}")
        end = f.FRAME_HEADER_LEN + length
        while len(self._buf) < end:
            await self._fill()
        payload = bytes(self._buf[f.FRAME_HEADER_LEN : end])
        del self._buf[:end]
        return kind, payload

    async def _fill(self) -> None:
        chunk = await self._transport.read()
        if not chunk:
            raise _Closed("connection closed by client" if not self._buf else "truncated frame")
        self._buf += chunk
