"""An asyncio WebSocket client for the doors that carry a byte stream in
binary messages (me/rpc, {id}/coordinate, /tailnet, /derp): after the
handshake it looks like asyncio's StreamReader / StreamWriter, so the
spec-written yamux and DERP clients run over it unchanged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage


class Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class MessageWriter:
    """Each write() is one binary message."""

    def __init__(self, ws: WSClient) -> None:
        self._ws = ws

    def write(self, data: bytes) -> None:
        self._ws.send_bytes(data)

    async def drain(self) -> None:
        await self._ws.writer.drain()

    def is_closing(self) -> bool:
        return self._ws.writer.is_closing()

    def close(self) -> None:
        self._ws.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._ws.writer.wait_closed()


class WSClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.raw_reader = reader
        self.writer = writer
        self.conn = Connection(ConnectionType.CLIENT)
        self.stream = asyncio.StreamReader()
        self.texts: asyncio.Queue[str] = asyncio.Queue()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(self.conn.send(BytesMessage(data=bytes(data))))

    def send_text(self, text: str) -> None:
        self.writer.write(self.conn.send(TextMessage(data=text)))

    def send_raw(self, data: bytes) -> None:
        """Bytes that are not a frame (garbage after the upgrade)."""
        self.writer.write(data)

    async def _read_loop(self) -> None:
        parts: list[bytes] = []
        text: list[str] = []
        try:
            while data := await self.raw_reader.read(65536):
                self.conn.receive_data(data)
                for event in self.conn.events():
                    if isinstance(event, BytesMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            self.stream.feed_data(b"".join(parts))
                            parts = []
                    elif isinstance(event, TextMessage):
                        text.append(event.data)
                        if event.message_finished:
                            self.texts.put_nowait("".join(text))
                            text = []
                    elif isinstance(event, Ping):
                        self.writer.write(self.conn.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        self.close_code, self.close_reason = event.code, event.reason
                        with contextlib.suppress(Exception):
                            self.writer.write(self.conn.send(event.response()))
                        return
        except (ConnectionError, OSError):
            return
        finally:
            self.stream.feed_eof()
            self.closed.set()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(self.conn.send(CloseConnection(code=1000)))
        self.writer.close()

    async def aclose(self) -> None:
        self.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def connect(
    base: str,
    path: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    subprotocol: str | None = None,
) -> WSClient:
    """Opens a WebSocket (raises Refused with the JSON answer otherwise)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if token:
        lines.append(f"Coder-Session-Token: {token}")
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length)
        writer.close()
        raise Refused(status, json.loads(body) if body else None)
    return WSClient(reader, writer)
