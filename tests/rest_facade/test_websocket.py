"""Writing WebSocket frames with a deadline: a client that stops reading is
dropped, never holds the sending thread forever; frames go out whole."""

from __future__ import annotations

import socket
import types

import pytest
from simple_websocket import ConnectionClosed
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from rest_facade.websocket import send_text


def _pair(timeout: float) -> tuple[types.SimpleNamespace, socket.socket]:
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.settimeout(timeout)
    ws = types.SimpleNamespace(
        sock=server,
        ws=Connection(ConnectionType.SERVER),
        connected=True,
        close_reason=None,
        close_message=None,
    )
    return ws, client


def test_frames_arrive_whole_to_a_reading_client() -> None:
    """A frame larger than the socket buffers goes out whole while the
    client keeps reading (a single send() would have written part of it)."""
    import concurrent.futures

    ws, client = _pair(timeout=5)
    text = "x" * 200_000

    def read_one_message() -> str:
        reader = Connection(ConnectionType.CLIENT)
        got = ""
        while len(got) < len(text):
            reader.receive_data(client.recv(65536))
            for event in reader.events():
                assert isinstance(event, TextMessage)
                got += event.data
        return got

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            received = pool.submit(read_one_message)
            send_text(ws, text)
            assert received.result(timeout=30) == text
    finally:
        ws.sock.close()
        client.close()


def test_a_client_that_stops_reading_is_dropped() -> None:
    ws, client = _pair(timeout=0.2)
    try:
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                send_text(ws, "y" * 10_000)
        assert ws.connected is False
        with pytest.raises(ConnectionClosed):
            send_text(ws, "after")
    finally:
        ws.sock.close()
        client.close()
