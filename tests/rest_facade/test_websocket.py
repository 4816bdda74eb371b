"""The front's WebSocket (rest_facade/serving/websocket.py) over real
sockets: whole frames to slow readers, pings that never split a frame, a
client that stops reading or answering pings is dropped, the message cap."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from rest_facade.serving.websocket import ConnectionClosed, WebSocket

Handler = Callable[[WebSocket], Awaitable[Any]]


class Harness:
    """A WebSocket server side on its own loop thread; the test drives a
    raw client socket with wsproto's client half."""

    def __init__(self, handler: Handler, **options: Any) -> None:
        self.handler = handler
        self.options = options
        self.result: asyncio.Future[Any] | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> socket.socket:
        self.result = self.loop.create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ws = WebSocket(reader, writer, **self.options)
            try:
                value = await self.handler(ws)
                self.result.set_result(value)
            except BaseException as err:  # handed to the test
                self.result.set_exception(err)
            finally:
                await ws.aclose()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return client

    def outcome(self, timeout: float = 30) -> Any:
        assert self.result is not None
        return asyncio.run_coroutine_threadsafe(self._wait(), self.loop).result(timeout)

    async def _wait(self) -> Any:
        return await self.result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.client.close()

        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(handler: Handler, **options: Any) -> Harness:
        made.append(Harness(handler, **options))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _client_events(sock: socket.socket, until: Callable[[list], bool], delay: float = 0.0) -> list:
    conn = Connection(ConnectionType.CLIENT)
    events: list = []
    while not until(events):
        data = sock.recv(8192)
        conn.receive_data(data or None)
        for event in conn.events():
            if isinstance(event, Ping):
                sock.sendall(conn.send(event.response()))
            events.append(event)
        if not data:
            break
        if delay:
            threading.Event().wait(delay)  # a slow reader, not synchronisation
    return events


def _text(events: list) -> str:
    return "".join(e.data for e in events if isinstance(e, TextMessage))


def test_a_large_frame_reaches_a_slow_reader_whole(harness) -> None:
    text = "x" * 300_000

    async def handler(ws: WebSocket) -> None:
        await ws.send_text(text)

    h = harness(handler, write_timeout=5)
    events = _client_events(h.client, lambda ev: len(_text(ev)) >= len(text), delay=0.001)
    assert _text(events) == text
    h.outcome()


def test_pings_never_split_a_frame(harness) -> None:
    """Pings go out between large frames written to a slow reader; each
    frame is one write on the transport, so every frame still arrives whole,
    in order, with the pings between them."""
    frames = [str(i) * 20_000 for i in range(5)]

    async def handler(ws: WebSocket) -> None:
        for frame in frames:
            await ws.send_text(frame)
            # Room for the pinger between frames too (not synchronisation).
            await asyncio.sleep(0.6)

    h = harness(handler, ping_interval=0.5, write_timeout=10)
    conn = Connection(ConnectionType.CLIENT)
    got: list[str] = []
    current = ""
    pings = 0
    while len(got) < len(frames):
        data = h.client.recv(8192)
        assert data
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, Ping):
                pings += 1
                h.client.sendall(conn.send(event.response()))
            elif isinstance(event, TextMessage):
                current += event.data
                if event.message_finished:
                    got.append(current)
                    current = ""
        threading.Event().wait(0.001)  # a slow reader, not synchronisation
    assert got == frames
    assert pings > 0
    h.outcome()


def test_a_client_that_stops_reading_is_dropped(harness) -> None:
    async def handler(ws: WebSocket) -> str:
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(1000):
                await ws.send_text("y" * 65536)
        return info.value.reason

    h = harness(handler, write_timeout=0.5)
    assert h.outcome() == "write timed out"


def test_a_peer_that_never_answers_pings_is_closed(harness) -> None:
    async def handler(ws: WebSocket) -> tuple[int | None, str]:
        await ws.wait_closed()
        return ws.close_code, ws.close_reason

    # The client reads nothing and so never answers a ping.
    h = harness(handler, ping_interval=0.1)
    assert h.outcome() == (1001, "Ping failed")


def test_messages_are_assembled_and_capped(harness) -> None:
    async def handler(ws: WebSocket) -> list:
        got = [await ws.receive()]
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        return [got, info.value.code]

    h = harness(handler, max_message_bytes=1000)
    conn = Connection(ConnectionType.CLIENT)
    h.client.sendall(conn.send(BytesMessage(data=b"ab", message_finished=False)))
    h.client.sendall(conn.send(BytesMessage(data=b"cd", message_finished=True)))
    h.client.sendall(conn.send(BytesMessage(data=b"z" * 2000)))
    got, code = h.outcome()
    assert got == [b"abcd"] and code == 1009
    events = _client_events(h.client, lambda ev: any(isinstance(e, CloseConnection) for e in ev))
    assert [e.code for e in events if isinstance(e, CloseConnection)] == [1009]


def test_one_way_sockets_close_on_data(harness) -> None:
    async def handler(ws: WebSocket) -> tuple[int | None, str]:
        await ws.wait_closed()
        return ws.close_code, ws.close_reason

    h = harness(handler, one_way=True)
    conn = Connection(ConnectionType.CLIENT)
    h.client.sendall(conn.send(TextMessage(data="hi")))
    assert h.outcome() == (1008, "unexpected data message")
