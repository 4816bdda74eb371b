"""Writing WebSocket frames: each write goes out whole and alone (frames from
the library's ping thread never land inside a data frame), a slow client
still gets a large frame, and a client that stops reading is dropped."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import types

import pytest
from simple_websocket import ConnectionClosed
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Ping, TextMessage

from rest_facade.websocket import FrameSocket, send_text


def _pair(write_timeout: float) -> tuple[types.SimpleNamespace, socket.socket]:
    """A server side shaped like simple_websocket's (wsproto connection +
    the socket it writes to) over a real socket pair with small buffers."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock = FrameSocket(server, write_timeout)
    conn = Connection(ConnectionType.SERVER)
    ws = types.SimpleNamespace(
        sock=sock, ws=conn, connected=True, close_reason=None, close_message=None
    )
    ws.send = lambda text: sock.send(conn.send(TextMessage(data=text)))
    return ws, client


def _read_messages(client: socket.socket, total_chars: int, delay: float = 0.0) -> list:
    reader = Connection(ConnectionType.CLIENT)
    events: list = []
    got = 0
    while got < total_chars:
        data = client.recv(8192)
        assert data, "connection closed early"
        reader.receive_data(data)
        for event in reader.events():
            events.append(event)
            if isinstance(event, TextMessage):
                got += len(event.data)
        if delay:
            threading.Event().wait(delay)  # a slow reader, not synchronisation
    return events


def test_a_large_frame_reaches_a_slow_reader_whole() -> None:
    ws, client = _pair(write_timeout=2)
    text = "x" * 300_000
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            received = pool.submit(_read_messages, client, len(text), 0.001)
            send_text(ws, text)
            events = received.result(timeout=60)
        assert "".join(e.data for e in events if isinstance(e, TextMessage)) == text
    finally:
        ws.sock.close()
        client.close()


def test_pings_from_another_thread_never_split_a_frame() -> None:
    ws, client = _pair(write_timeout=5)
    text = "y" * 200_000
    pings_done = threading.Event()

    def pinger() -> None:
        try:
            for _ in range(300):
                ws.sock.send(Connection(ConnectionType.SERVER).send(Ping()))
        finally:
            pings_done.set()

    def reader() -> list:
        events = _read_messages(client, 2 * len(text))
        # Keep draining until the pinger is through (its frames are tiny
        # but each takes room in the socket's buffer).
        decoder = Connection(ConnectionType.CLIENT)
        client.settimeout(0.05)
        while not pings_done.is_set():
            try:
                decoder.receive_data(client.recv(8192))
            except TimeoutError:
                continue
        return events

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            received = pool.submit(reader)
            pings = pool.submit(pinger)
            send_text(ws, text)
            send_text(ws, text)
            pings.result(timeout=60)
            events = received.result(timeout=60)
        # A ping inside a data frame would have broken the decoding above.
        texts = [e for e in events if isinstance(e, TextMessage)]
        assert "".join(e.data for e in texts) == 2 * text
    finally:
        ws.sock.close()
        client.close()


def test_a_client_that_stops_reading_is_dropped() -> None:
    ws, client = _pair(write_timeout=0.2)
    try:
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                send_text(ws, "z" * 10_000)
        assert ws.connected is False
        with pytest.raises(ConnectionClosed):
            send_text(ws, "after")
    finally:
        ws.sock.close()
        client.close()
