"""yamux sessions: streams both ways, flow control, keepalive, GoAway, and
bad input from a raw peer writing frames by hand (spec.md's layout)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from rest_facade.wire.transport import memory_pipe
from rest_facade.wire.yamux import (
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    INITIAL_WINDOW,
    SessionClosed,
    StreamReset,
    YamuxConfig,
    YamuxSession,
)
from tests.rest_facade.wire.asyncrun import run, wait_until

# spec.md: version, type, flags, stream id, length; big endian.
H = struct.Struct(">BBHII")
DATA, WINDOW, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def frame(kind: int, flags: int, sid: int, length: int, payload: bytes = b"") -> bytes:
    return H.pack(0, kind, flags, sid, length) + payload


async def pair(config: YamuxConfig | None = None):
    a, b = memory_pipe()
    client = YamuxSession(a, client=True, config=config).start()
    server = YamuxSession(b, client=False, config=config).start()
    return client, server


class RawPeer:
    """The client side written by hand, to send what a library never would."""

    def __init__(self, transport) -> None:
        self.t = transport
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.t.write(data)

    async def frame(self) -> tuple[int, int, int, int, bytes] | None:
        while len(self.buf) < 12:
            chunk = await self.t.read()
            if not chunk:
                return None
            self.buf += chunk
        _v, kind, flags, sid, length = H.unpack_from(self.buf)
        size = 12 + (length if kind == DATA else 0)
        while len(self.buf) < size:
            chunk = await self.t.read()
            if not chunk:
                return None
            self.buf += chunk
        payload, self.buf = self.buf[12:size], self.buf[size:]
        return kind, flags, sid, length, payload

    async def frames_until_eof(self) -> list[tuple[int, int, int, int, bytes]]:
        out = []
        while (f := await self.frame()) is not None:
            out.append(f)
        return out


async def raw_server(config: YamuxConfig | None = None) -> tuple[RawPeer, YamuxSession]:
    a, b = memory_pipe()
    server = YamuxSession(b, client=False, config=config).start()
    return RawPeer(a), server


def test_streams_both_ways_and_half_close() -> None:
    async def main() -> None:
        client, server = await pair()
        out = await client.open_stream()
        await out.write(b"hello")
        inbound = await server.accept()
        assert inbound.id == 1
        assert await inbound.read() == b"hello"
        await out.close()
        assert await inbound.read() == b""
        # The other direction still works after the client's half-close.
        await inbound.write(b"back")
        await inbound.close()
        assert await out.read() == b"back"
        assert await out.read() == b""
        await wait_until(lambda: client.num_streams == 0 and server.num_streams == 0)
        # The server opens even ids.
        push = await server.open_stream()
        assert push.id == 2
        await push.write(b"x")
        assert await (await client.accept()).read() == b"x"
        await client.close()
        await server.wait_closed()
        assert server.close_reason == "connection closed by peer" or "GoAway" in server.close_reason

    run(main)


def test_large_write_is_flow_controlled_and_arrives_whole() -> None:
    async def main() -> None:
        client, server = await pair()
        data = bytes(range(256)) * 8192  # 2 MiB: eight windows
        out = await client.open_stream()
        writer = asyncio.create_task(out.write(data))
        inbound = await server.accept()
        got = bytearray()
        while len(got) < len(data):
            got += await inbound.read()
        await writer
        assert bytes(got) == data
        await client.close()
        await server.wait_closed()

    run(main)


def test_slow_reader_stalls_only_its_own_stream() -> None:
    async def main() -> None:
        client, server = await pair()
        slow = await server.open_stream()
        fast = await server.open_stream()
        slow_in = await client.accept()
        fast_in = await client.accept()
        # Fill the slow stream's window: the writer blocks, nobody reads.
        slow_writer = asyncio.create_task(slow.write(b"s" * (INITIAL_WINDOW + 1000)))
        await wait_until(lambda: slow._send_window == 0)
        assert not slow_writer.done()
        # The other stream carries a megabyte meanwhile.
        fast_writer = asyncio.create_task(fast.write(b"f" * (1 << 20)))
        got = 0
        while got < 1 << 20:
            got += len(await fast_in.read())
        await fast_writer
        assert not slow_writer.done()
        # Reading the slow stream reopens its window.
        got = 0
        while got < INITIAL_WINDOW + 1000:
            got += len(await slow_in.read())
        await slow_writer
        await server.close()
        await client.wait_closed()

    run(main)


def test_many_concurrent_streams() -> None:
    async def main() -> None:
        client, server = await pair()

        async def echo_all() -> None:
            while True:
                try:
                    s = await server.accept()
                except SessionClosed:
                    return
                data = b""
                while chunk := await s.read():
                    data += chunk
                await s.write(data[::-1])
                await s.close()

        echo = asyncio.create_task(echo_all())

        async def one(i: int) -> bytes:
            s = await client.open_stream()
            await s.write(f"message {i}".encode())
            await s.close()
            data = b""
            while chunk := await s.read():
                data += chunk
            return data

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert results == [f"message {i}".encode()[::-1] for i in range(100)]
        await client.close()
        await server.wait_closed()
        await echo

    run(main)


def test_ping_and_keepalive_timeout() -> None:
    async def main() -> None:
        client, server = await pair()
        assert await client.ping() >= 0
        await client.close()
        await server.wait_closed()

        # A peer that never answers pings: the keepalive gives up.
        config = YamuxConfig(keepalive_interval=0.05, keepalive_timeout=0.1)
        peer, server = await raw_server(config)
        kind, flags, sid, _value, _ = await peer.frame()
        assert (kind, flags, sid) == (PING, SYN, 0)
        await server.wait_closed()
        assert "keepalive timeout" in server.close_reason
        await peer.t.close()

    run(main)


def test_server_answers_pings() -> None:
    async def main() -> None:
        peer, server = await raw_server()
        await peer.send(frame(PING, SYN, 0, 0xDEADBEEF))
        assert await peer.frame() == (PING, ACK, 0, 0xDEADBEEF, b"")
        await server.close()
        frames = await peer.frames_until_eof()
        assert frames[-1][:4] == (GO_AWAY, 0, 0, GO_AWAY_NORMAL)

    run(main)


def test_close_sends_go_away_and_resets_open_streams() -> None:
    async def main() -> None:
        client, server = await pair()
        out = await client.open_stream()
        await out.write(b"x")
        inbound = await server.accept()
        reader = asyncio.create_task(inbound.read(10))
        assert await reader == b"x"
        waiting = asyncio.create_task(inbound.read())
        await server.close()
        with pytest.raises(StreamReset):
            await waiting
        await client.wait_closed()
        assert client.close_reason in ("connection closed by peer",) or client.remote_go_away
        with pytest.raises(SessionClosed):
            await client.open_stream()

    run(main)


def test_go_away_refuses_new_streams_only() -> None:
    async def main() -> None:
        client, server = await pair()
        old = await client.open_stream()
        old_in = await server.accept()
        await server.go_away()
        await wait_until(lambda: client.remote_go_away)
        with pytest.raises(SessionClosed):
            await client.open_stream()
        await old.write(b"still")
        assert await old_in.read() == b"still"
        await client.close()
        await server.wait_closed()

    run(main)


def test_accept_backlog_and_stream_limit_reset_extra_streams() -> None:
    async def main() -> None:
        peer, server = await raw_server(YamuxConfig(accept_backlog=2, keepalive_interval=None))
        for sid in (1, 3, 5):
            await peer.send(frame(WINDOW, SYN, sid, 0))
        assert await peer.frame() == (WINDOW, RST, 5, 0, b"")
        s1 = await server.accept()
        assert await peer.frame() == (WINDOW, ACK, 1, 0, b"")
        assert s1.id == 1 and not server.closed
        await server.close()
        await peer.t.close()

        peer, server = await raw_server(YamuxConfig(max_streams=1, keepalive_interval=None))
        await peer.send(frame(WINDOW, SYN, 1, 0) + frame(WINDOW, SYN, 3, 0))
        assert await peer.frame() == (WINDOW, RST, 3, 0, b"")
        await server.close()
        await peer.t.close()

    run(main)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (H.pack(1, DATA, SYN, 1, 0), "unsupported version 1"),
        (H.pack(0, 7, 0, 1, 0), "unknown frame type 7"),
        (frame(DATA, SYN, 1, INITIAL_WINDOW + 1), "oversize data frame"),
        (frame(WINDOW, SYN, 2, 0), "wrong id parity"),
        (frame(WINDOW, SYN, 3, 0) + frame(WINDOW, SYN, 3, 0), "stream id 3 duplicate"),
        (frame(WINDOW, SYN, 5, 0) + frame(WINDOW, SYN, 3, 0), "stream id 3 reused"),
        (frame(DATA, 0, 9, 1, b"x"), "never opened"),
        (frame(WINDOW, 0, 4, 0), "never opened"),
        (frame(DATA, 0, 0, 1, b"x"), "stream frame on stream 0"),
        (frame(PING, SYN, 1, 0), "ping on stream 1"),
        (frame(GO_AWAY, 0, 3, 0), "go away on stream 3"),
        (frame(WINDOW, SYN | FIN, 1, 0) + frame(WINDOW, FIN, 1, 0), "second FIN"),
        (frame(WINDOW, SYN | FIN, 1, 0) + frame(DATA, 0, 1, 1, b"x"), "after its FIN"),
        (frame(WINDOW, SYN, 1, (1 << 32) - 1), "window overflow"),
        (b"GET / HTTP/1.1\r\n\r\n", "unsupported version 71"),
    ],
)
def test_bad_input_ends_the_session_with_a_protocol_error(raw: bytes, reason: str) -> None:
    async def main() -> None:
        peer, server = await raw_server()
        await peer.send(raw)
        frames = await peer.frames_until_eof()
        await server.wait_closed()
        assert reason in server.close_reason, server.close_reason
        assert server.close_code == GO_AWAY_PROTOCOL_ERROR
        assert frames[-1][:4] == (GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)

    run(main)


def test_window_violation() -> None:
    async def main() -> None:
        peer, server = await raw_server()
        chunk = b"z" * INITIAL_WINDOW
        # A full window is allowed; one byte more (nobody read) is not.
        await peer.send(frame(DATA, SYN, 1, len(chunk), chunk) + frame(DATA, 0, 1, 1, b"!"))
        await peer.frames_until_eof()
        await server.wait_closed()
        assert "window exceeded" in server.close_reason
        assert server.close_code == GO_AWAY_PROTOCOL_ERROR

    run(main)


def test_truncated_frame_and_clean_eof() -> None:
    async def main() -> None:
        peer, server = await raw_server()
        await peer.send(frame(WINDOW, SYN, 1, 0)[:7])
        await peer.t.close()
        await server.wait_closed()
        assert "ended inside a frame" in server.close_reason

        peer, server = await raw_server()
        await peer.t.close()
        await server.wait_closed()
        assert server.close_reason == "connection closed by peer"
        assert server.close_code == GO_AWAY_NORMAL

    run(main)


def test_frames_for_closed_streams_are_dropped() -> None:
    async def main() -> None:
        peer, server = await raw_server(YamuxConfig(keepalive_interval=None))
        await peer.send(frame(WINDOW, SYN, 1, 0))
        s = await server.accept()
        s.reset()
        # The ACK the accept owed rides on the RST.
        assert (await peer.frame())[:3] == (WINDOW, RST | ACK, 1)
        # Late data for the reset stream is read and dropped.
        await peer.send(frame(DATA, 0, 1, 3, b"abc"))
        await peer.send(frame(PING, SYN, 0, 7))
        assert await peer.frame() == (PING, ACK, 0, 7, b"")
        assert not server.closed
        await server.close()
        await peer.t.close()

    run(main)


def test_peer_that_stops_reading_is_dropped() -> None:
    async def main() -> None:
        a, b = memory_pipe(capacity=64 << 10)
        config = YamuxConfig(write_timeout=0.2, keepalive_interval=None)
        server = YamuxSession(b, client=False, config=config).start()
        peer = RawPeer(a)
        await peer.send(frame(WINDOW, SYN, 1, 0) + frame(WINDOW, 0, 1, 1 << 30))
        s = await server.accept()
        # The peer never reads: the writes pile up, then the session ends.
        with pytest.raises((StreamReset, SessionClosed)):
            while True:
                await s.write(b"w" * 65536)
        await server.wait_closed()
        assert "not reading" in server.close_reason
        assert server.close_code == GO_AWAY_INTERNAL_ERROR
        await a.close()

    run(main)


def test_remote_go_away_with_error_ends_the_session() -> None:
    async def main() -> None:
        peer, server = await raw_server()
        await peer.send(frame(GO_AWAY, 0, 0, GO_AWAY_INTERNAL_ERROR))
        await server.wait_closed()
        assert server.close_reason == "peer sent GoAway: internal error"
        await peer.t.close()

    run(main)


def test_ack_rides_on_the_first_frame_or_comes_alone() -> None:
    async def main() -> None:
        peer, server = await raw_server(YamuxConfig(keepalive_interval=None))
        await peer.send(frame(WINDOW, SYN, 1, 0) + frame(WINDOW, SYN, 3, 0))
        quick = await server.accept()
        await quick.write(b"answer")
        assert await peer.frame() == (DATA, ACK, 1, 6, b"answer")
        # A stream with nothing to say gets its ACK alone, shortly.
        await server.accept()
        assert await peer.frame() == (WINDOW, ACK, 3, 0, b"")
        await server.close()
        await peer.t.close()

    run(main)
