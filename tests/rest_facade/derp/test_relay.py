"""The embedded DERP relay with a spec-written client over loopback TCP:
login, packets between two clients, ping/pong, peer gone, bad frames, a
client that stops reading, idle timeout, the mesh hook, and the key from
the core."""

from __future__ import annotations

import asyncio
import contextlib
import json

import grpc
import pytest
from nacl.public import Box, PrivateKey, PublicKey

from rest_facade.derp.relay import DERPConfig, DERPRelay
from rest_facade.derp.serverkey import fetch_server_key
from rest_facade.wire.transport import StreamTransport
from server.derp.serverkey import get_server_key, new_private_key
from tests.conftest import ADMIN_TOKEN
from tests.rest_facade.derp.specclient import (
    CLIENT_INFO,
    DISCO_MAGIC,
    FORWARD_PACKET,
    HDR,
    NOTE_PREFERRED,
    PEER_GONE,
    PING,
    PONG,
    RECV_PACKET,
    SEND_PACKET,
    SpecDERPClient,
)
from tests.rest_facade.wire.asyncrun import run, wait_until


@contextlib.asynccontextmanager
async def relay_on_tcp(config: DERPConfig | None = None, *, key: bytes | None = None, remote=None):
    relay = DERPRelay(key or new_private_key(), config=config, remote=remote)
    reasons: list[str] = []
    tasks: set[asyncio.Task] = set()

    async def on_conn(reader, writer) -> None:
        tasks.add(asyncio.current_task())
        try:
            reasons.append(await relay.serve(StreamTransport(reader, writer)))
        finally:
            tasks.discard(asyncio.current_task())

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        yield relay, server.sockets[0].getsockname()[1], reasons
    finally:
        await relay.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        await server.wait_closed()


def test_login_and_packets_between_two_clients() -> None:
    async def main() -> None:
        async with relay_on_tcp() as (relay, port, _):
            a = await SpecDERPClient.connect(port)
            b = await SpecDERPClient.connect(port)
            assert a.server_key == relay.public_key
            assert a.server_info == {"version": 2}
            await wait_until(lambda: relay.num_clients == 2)
            await a.send(b.public, b"hello b")
            assert await b.recv() == (RECV_PACKET, a.public + b"hello b")
            await b.send(a.public, b"x" * 65536)  # the largest packet
            assert await a.recv() == (RECV_PACKET, b.public + b"x" * 65536)
            await a.send_frame(NOTE_PREFERRED, b"\x01")
            await a.send_frame(PING, b"12345678")
            assert await a.recv() == (PONG, b"12345678")
            # a sent to b, so b hears that a is gone.
            await a.close()
            assert await b.recv() == (PEER_GONE, a.public + b"\x00")
            await b.close()

    run(main)


def test_unknown_destination_and_disco_not_here() -> None:
    async def main() -> None:
        async with relay_on_tcp() as (relay, port, _):
            a = await SpecDERPClient.connect(port)
            nobody = bytes(PrivateKey.generate().public_key)
            await a.send(nobody, b"plain packet")  # dropped silently
            disco = DISCO_MAGIC + bytes(32) + bytes(24) + b"ping"
            await a.send(nobody, disco)
            assert await a.recv() == (PEER_GONE, nobody + b"\x01")
            assert relay.dropped == 2
            await a.close()

    run(main)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (HDR.pack(SEND_PACKET, 10) + b"k" * 10, "short send packet frame"),
        (HDR.pack(SEND_PACKET, 70000), "exceeds reader limit"),
        (HDR.pack(SEND_PACKET, 32 + 65537) + b"k" * (32 + 65537), "than max of 65536"),
        (HDR.pack(PING, 4) + b"1234", "short ping"),
        (HDR.pack(PING, 2000) + b"p" * 2000, "ping body too large"),
        (HDR.pack(NOTE_PREFERRED, 2) + b"\x01\x01", "wrong size"),
        (HDR.pack(FORWARD_PACKET, 64) + b"k" * 64, "insufficient permissions"),
        (HDR.pack(0xFF, 0xFFFFFFFF), "exceeds reader limit"),
        (HDR.pack(SEND_PACKET, 100)[:3], "truncated frame"),
    ],
)
def test_bad_frames_end_the_connection(payload: bytes, reason: str) -> None:
    async def main() -> None:
        async with relay_on_tcp() as (_relay, port, reasons):
            bystander = await SpecDERPClient.connect(port)
            bad = await SpecDERPClient.connect(port)
            bad.writer.write(payload)
            await bad.writer.drain()
            if reason == "truncated frame":
                bad.writer.write_eof()
            with pytest.raises(asyncio.IncompleteReadError):
                while True:
                    await bad.frame()
            await wait_until(lambda: len(reasons) == 1)
            assert reason in reasons[0]
            # The other client is unaffected.
            await bystander.send_frame(PING, b"abcdefgh")
            assert await bystander.recv() == (PONG, b"abcdefgh")
            await bad.close()
            await bystander.close()

    run(main)


@pytest.mark.parametrize(
    ("make_info", "reason"),
    [
        (lambda c, skey: HDR.pack(SEND_PACKET, 40) + b"k" * 40, "bad frame type 0x4"),
        (lambda c, skey: HDR.pack(CLIENT_INFO, 10) + b"k" * 10, "short client info"),
        (
            lambda c, skey: HDR.pack(CLIENT_INFO, 32 + 24 + 40) + c.public + b"n" * 64,
            "cannot open the box",
        ),
        (
            lambda c, skey: _info_frame(c, skey, b"not json"),
            "not JSON",
        ),
        (
            lambda c, skey: _info_frame(c, skey, b"[1, 2]"),
            "not a JSON object",
        ),
        (lambda c, skey: HDR.pack(CLIENT_INFO, (256 << 10) + 1), "exceeds reader limit"),
    ],
)
def test_bad_logins(make_info, reason: str) -> None:
    async def main() -> None:
        async with relay_on_tcp() as (relay, port, reasons):
            c = await SpecDERPClient.connect(port, login=False)
            _kind, payload = await c.frame()
            c.writer.write(make_info(c, payload[8:40]))
            await c.writer.drain()
            with pytest.raises(asyncio.IncompleteReadError):
                await c.frame()
            await wait_until(lambda: len(reasons) == 1)
            assert reason in reasons[0], reasons
            assert relay.num_clients == 0
            await c.close()

    run(main)


def _info_frame(c: SpecDERPClient, server_key: bytes, body: bytes) -> bytes:
    sealed = Box(c.key, PublicKey(server_key)).encrypt(body)
    payload = c.public + bytes(sealed)
    return HDR.pack(CLIENT_INFO, len(payload)) + payload


def test_login_timeout() -> None:
    async def main() -> None:
        async with relay_on_tcp(DERPConfig(handshake_timeout=0.2)) as (_, port, reasons):
            c = await SpecDERPClient.connect(port, login=False)
            await c.frame()
            with pytest.raises(asyncio.IncompleteReadError):
                await c.frame()
            assert reasons == ["login timed out after 0.2s"]
            await c.close()

    run(main)


def test_a_client_that_stops_reading_loses_packets_not_the_sender() -> None:
    async def main() -> None:
        config = DERPConfig(queue_depth=16, write_timeout=30)
        async with relay_on_tcp(config) as (relay, port, _):
            sender = await SpecDERPClient.connect(port)
            stuck = await SpecDERPClient.connect(port)
            other = await SpecDERPClient.connect(port)
            # 8 MiB towards a client that never reads: the socket buffers
            # fill, the relay's queue drops, the sender is never held up.
            for i in range(128):
                await sender.send(stuck.public, i.to_bytes(4, "big") + b"z" * 65000)
            await sender.send(other.public, b"after the flood")
            assert await other.recv() == (RECV_PACKET, sender.public + b"after the flood")
            assert relay.dropped > 0
            # The stuck client reads at last: the freshest packets survived
            # (head drop), in order.
            last = -1
            received = 0
            while received < 128 - relay.dropped:
                kind, payload = await stuck.recv()
                assert kind == RECV_PACKET
                n = int.from_bytes(payload[32:36], "big")
                assert n > last
                last = n
                received += 1
            assert last == 127
            for c in (sender, stuck, other):
                await c.close()

    run(main)


def test_idle_client_is_pinged_then_dropped() -> None:
    async def main() -> None:
        config = DERPConfig(idle_timeout=0.4, keepalive_interval=0.1)
        async with relay_on_tcp(config) as (_, port, reasons):
            lively = await SpecDERPClient.connect(port)
            silent = await SpecDERPClient.connect(port)
            # The lively one answers pings and stays; the silent one goes.
            kinds = []
            while True:
                kind, payload = await silent.recv(skip_keepalive=False)
                kinds.append(kind)
                if kind == PING:
                    break
            kind, payload = await lively.recv()
            assert kind == PING
            await lively.send_frame(PONG, payload)
            with pytest.raises(asyncio.IncompleteReadError):
                while True:
                    await silent.frame()
            await wait_until(lambda: len(reasons) == 1)
            assert reasons[0].startswith("idle timeout")
            assert 6 in kinds  # keep-alives came first
            await lively.send_frame(PING, b"stillhere"[:8])
            assert (await lively.recv())[0] in (PONG, PING)
            await lively.close()
            await silent.close()

    run(main)


def test_same_key_again_replaces_the_old_connection() -> None:
    async def main() -> None:
        async with relay_on_tcp() as (relay, port, reasons):
            first = await SpecDERPClient.connect(port)
            second = await SpecDERPClient.connect(port, login=False)
            second.key = first.key
            second.public = first.public
            await second.login()
            with pytest.raises(asyncio.IncompleteReadError):
                await first.frame()
            await wait_until(lambda: len(reasons) == 1)
            assert reasons == ["replaced by a newer connection with the same key"]
            assert relay.is_connected(first.public)
            await first.close()
            await second.close()

    run(main)


class FakeMesh:
    """A RemoteRoutes that knows one key lives on another replica."""

    def __init__(self, remote_key: bytes) -> None:
        self.remote_key = remote_key
        self.forwarded: list[tuple[bytes, bytes, bytes]] = []
        self.events: list[tuple[str, bytes]] = []

    def forwarder(self, dst: bytes):
        return self if dst == self.remote_key else None

    def forward(self, src: bytes, dst: bytes, packet: bytes) -> None:
        self.forwarded.append((src, dst, packet))

    def client_connected(self, key: bytes) -> None:
        self.events.append(("connected", key))

    def client_gone(self, key: bytes) -> None:
        self.events.append(("gone", key))


def test_the_mesh_hook() -> None:
    elsewhere = bytes(PrivateKey.generate().public_key)
    mesh = FakeMesh(elsewhere)

    async def main() -> None:
        async with relay_on_tcp(remote=mesh) as (relay, port, _):
            a = await SpecDERPClient.connect(port)
            await a.send(elsewhere, b"to the other replica")
            await wait_until(lambda: len(mesh.forwarded) == 1)
            assert mesh.forwarded == [(a.public, elsewhere, b"to the other replica")]
            # And back: a packet the other replica forwards here.
            assert relay.deliver(elsewhere, a.public, b"from afar")
            assert await a.recv() == (RECV_PACKET, elsewhere + b"from afar")
            assert not relay.deliver(elsewhere, bytes(32), b"nobody")
            await a.close()
            await wait_until(lambda: len(mesh.events) == 2)
            assert mesh.events == [("connected", a.public), ("gone", a.public)]

    run(main)


def test_the_relay_uses_the_deployments_key_from_the_core(db, clock, core) -> None:
    private, public = get_server_key(db, clock)

    async def main() -> None:
        async with grpc.aio.insecure_channel(core.address) as channel:
            key = await fetch_server_key(channel, admin_token=ADMIN_TOKEN)
            with pytest.raises(grpc.aio.AioRpcError):
                await fetch_server_key(channel, admin_token="wrong")
        assert key == private
        # Two replicas, one key: a client sees the same server key on both.
        async with relay_on_tcp(key=key) as (_r1, p1, _), relay_on_tcp(key=key) as (_r2, p2, _):
            c1 = await SpecDERPClient.connect(p1)
            c2 = await SpecDERPClient.connect(p2)
            assert c1.server_key == c2.server_key == public
            await c1.close()
            await c2.close()

    run(main)


def test_client_info_is_read_as_json_object() -> None:
    async def main() -> None:
        async with relay_on_tcp() as (relay, port, _):
            c = await SpecDERPClient.connect(port, info={"version": 2, "meshKey": "nope"})
            await wait_until(lambda: relay.num_clients == 1)
            assert json.loads(json.dumps(c.server_info)) == {"version": 2}
            await c.close()

    run(main)
