"""dRPC over yamux with local handlers: the four call shapes, metadata,
errors, the 4 MiB cap, malformed packets, cancellation and timeouts; the
server is checked with both the module's own client and the spec client."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rest_facade.wire.drpc import (
    MAX_MESSAGE_BYTES,
    DRPCClient,
    DRPCError,
    ServerCall,
    decode_metadata,
    encode_metadata,
    serve_session,
)
from rest_facade.wire.transport import StreamTransport, memory_pipe
from rest_facade.wire.yamux import StreamReset, YamuxSession
from tests.rest_facade.wire.asyncrun import run
from tests.rest_facade.wire.specclient import (
    CLOSE_SEND,
    INVOKE,
    MESSAGE,
    SpecDRPCClient,
    SpecError,
    SpecYamuxClient,
    drpc_frame,
)


def make_handlers(state: dict) -> dict:
    async def echo(call: ServerCall) -> None:
        await call.send(await call.recv_one())

    async def count(call: ServerCall) -> None:
        n = int(await call.recv_one())
        for i in range(n):
            await call.send(str(i).encode())

    async def total(call: ServerCall) -> None:
        acc = 0
        while (msg := await call.recv()) is not None:
            acc += int(msg)
        await call.send(str(acc).encode())

    async def upper(call: ServerCall) -> None:
        while (msg := await call.recv()) is not None:
            await call.send(msg.upper())

    async def whoami(call: ServerCall) -> None:
        await call.send(call.metadata.get("token", "").encode())

    async def fail(call: ServerCall) -> None:
        raise DRPCError(12, "Unimplemented")

    async def crash(call: ServerCall) -> None:
        raise RuntimeError("secret detail")

    async def hang(call: ServerCall) -> None:
        state["hang_started"].set()
        try:
            await asyncio.Event().wait()
        finally:
            state["hang_cancelled"].set()

    async def big(call: ServerCall) -> None:
        await call.send(b"x" * (MAX_MESSAGE_BYTES + 1))

    return {
        f"/t.T/{f.__name__}": f for f in (echo, count, total, upper, whoami, fail, crash, hang, big)
    }


@contextlib.asynccontextmanager
async def served(state: dict | None = None):
    state = state if state is not None else {}
    state.setdefault("hang_started", asyncio.Event())
    state.setdefault("hang_cancelled", asyncio.Event())
    a, b = memory_pipe()
    server = asyncio.create_task(serve_session(b, make_handlers(state), invoke_timeout=0.3))
    session = YamuxSession(a, client=True).start()
    try:
        yield session, state
    finally:
        await session.close()
        ended = await server
        assert ended.closed


def test_the_four_call_shapes_and_metadata() -> None:
    async def main() -> None:
        async with served() as (session, _):
            client = DRPCClient(session, metadata={"token": "t-1"})
            assert await client.unary("/t.T/echo", b"hi") == b"hi"
            assert await client.unary("/t.T/echo", b"") == b""
            assert await client.unary("/t.T/whoami", b"") == b"t-1"
            stream = await client.server_stream("/t.T/count", b"5")
            assert [m async for m in stream] == [b"0", b"1", b"2", b"3", b"4"]
            await stream.close()
            call = await client.call("/t.T/total")
            for n in (1, 2, 3):
                await call.send(str(n).encode())
            await call.close_send()
            assert await call.recv() == b"6"
            assert await call.recv() is None
            await call.close()
            bidi = await client.call("/t.T/upper")
            await bidi.send(b"a")
            assert await bidi.recv() == b"A"
            await bidi.send(b"b")
            assert await bidi.recv() == b"B"
            await bidi.close_send()
            assert await bidi.recv() is None
            await bidi.close()

    run(main)


def test_big_messages_split_into_frames_and_the_cap() -> None:
    async def main() -> None:
        async with served() as (session, _):
            client = DRPCClient(session)
            payload = bytes(range(256)) * 4096  # 1 MiB: sixteen 64 KiB frames
            assert await client.unary("/t.T/echo", payload) == payload
            near = b"y" * MAX_MESSAGE_BYTES
            assert await client.unary("/t.T/echo", near) == near
            # One byte over the cap: that stream is reset, the session lives.
            with pytest.raises((DRPCError, StreamReset)):
                await client.unary("/t.T/echo", near + b"!")
            with pytest.raises(DRPCError) as err:
                await client.unary("/t.T/big", b"")
            assert "over the" in err.value.message
            assert await client.unary("/t.T/echo", b"still") == b"still"

    run(main)


def test_errors() -> None:
    async def main() -> None:
        async with served() as (session, _):
            client = DRPCClient(session)
            with pytest.raises(DRPCError) as err:
                await client.unary("/t.T/fail", b"")
            assert (err.value.code, err.value.message) == (12, "Unimplemented")
            with pytest.raises(DRPCError) as err:
                await client.unary("/t.T/crash", b"")
            assert (err.value.code, err.value.message) == (0, "internal error")
            with pytest.raises(DRPCError) as err:
                await client.unary("/x.Y/z", b"")
            assert err.value.message == 'protocol error: unknown rpc: "/x.Y/z"'
            # A unary call without its request (close-send straight away).
            call = await client.call("/t.T/echo")
            await call.close_send()
            with pytest.raises(DRPCError) as err:
                await call.recv()
            assert err.value.message == "EOF"
            await call.close()

    run(main)


def test_closing_the_stream_cancels_the_handler() -> None:
    async def main() -> None:
        state: dict = {}
        async with served(state) as (session, _):
            client = DRPCClient(session)
            call = await client.call("/t.T/hang")
            await call.send(b"")
            await state["hang_started"].wait()
            await call.close()
            await asyncio.wait_for(state["hang_cancelled"].wait(), 5)

    run(main)


def test_a_stream_without_invoke_is_reset_after_the_timeout() -> None:
    async def main() -> None:
        async with served() as (session, _):
            stream = await session.open_stream()
            with pytest.raises(StreamReset):
                await stream.read()
            assert not session.closed

    run(main)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 12,  # a varint that never ends
        drpc_frame(MESSAGE, 1, 1, b"x"),  # a message before any invoke
        drpc_frame(INVOKE, 1, 2, b"/t.T/echo") + drpc_frame(MESSAGE, 1, 1, b"x"),  # ids back
        drpc_frame(INVOKE, 1, 1, b"/t.T/echo", done=False) + drpc_frame(MESSAGE, 1, 1, b"x"),
        drpc_frame(INVOKE, 1, 1, b"/t.T/echo")
        + bytes([MESSAGE << 1 | 1, 1, 2, 0x81, 0x80, 0x80, 3]),
    ],
)
def test_malformed_packets_reset_only_their_stream(garbage: bytes) -> None:
    async def main() -> None:
        async with served() as (session, _):
            stream = await session.open_stream()
            await stream.write(garbage)
            with pytest.raises(StreamReset):
                while await stream.read():
                    pass
            assert await DRPCClient(session).unary("/t.T/echo", b"ok") == b"ok"

    run(main)


def test_metadata_encoding_round_trips_and_rejects_garbage() -> None:
    pairs = {"coder-session-token": "abc", "": "", "k" * 300: "v" * 300}
    assert decode_metadata(encode_metadata(pairs)) == pairs
    from rest_facade.wire.drpc import ProtocolError

    for bad in (b"\x12\x00", b"\x0a\x05\x0a", b"\x0a\x02\x1a\x00"):
        with pytest.raises(ProtocolError):
            decode_metadata(bad)


def test_spec_client_against_the_server_over_tcp() -> None:
    async def main() -> None:
        ended: list = []

        async def on_conn(reader, writer) -> None:
            ended.append(await serve_session(StreamTransport(reader, writer), make_handlers({})))

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        yamux = await SpecYamuxClient.connect("127.0.0.1", port)
        client = SpecDRPCClient(yamux, metadata={"token": "spec"})
        assert await client.unary("/t.T/echo", b"hello") == b"hello"
        assert await client.unary("/t.T/whoami", b"") == b"spec"
        call = await client.server_stream("/t.T/count", b"3")
        assert [await call.recv() for _ in range(4)] == [b"0", b"1", b"2", None]
        await call.stream.close()
        with pytest.raises(SpecError) as err:
            await client.unary("/t.T/fail", b"")
        assert err.value.code == 12
        # Two RPCs in turn on one yamux stream (drpc stream ids 1, then 2).
        stream = await yamux.open()
        for sid, word in ((1, b"one"), (2, b"two")):
            await stream.write(
                drpc_frame(INVOKE, sid, 1, b"/t.T/echo")
                + drpc_frame(MESSAGE, sid, 2, word)
                + drpc_frame(CLOSE_SEND, sid, 3)
            )
            got = b""
            while word not in got:
                got += await stream.read()
        await stream.close()
        await yamux.close()
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(_until(lambda: len(ended) == 1), 5)
        assert ended[0].close_reason == "connection closed by peer"

    run(main)


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
