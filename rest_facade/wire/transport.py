"""The byte transport beneath Coder's wire protocols (yamux sessions, DERP
connections): an ordered, reliable byte stream, whatever carries it (a TCP
socket, a raw HTTP upgrade, the binary messages of a WebSocket).

``ByteTransport`` is the interface: ``read()`` returns the next bytes (any
amount, ``b""`` at end of stream), ``write(data)`` sends them (returning when
the carrier has taken them, so a peer that stops reading eventually stalls
the writer), ``close()`` ends the stream. A transport may also offer
``async session_closed(code, reason)``: a yamux session calls it instead
of ``close()`` at its end, with its GoAway code and reason (so a WebSocket
can close with a matching status and reason). ``StreamTransport`` adapts
asyncio's StreamReader/StreamWriter; ``memory_pipe`` joins two in-memory
ends (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol

# How much one read() of a socket asks for: large enough that a burst of
# small frames costs one call.
READ_CHUNK = 256 << 10


class ByteTransport(Protocol):
    async def read(self) -> bytes:
        """The next bytes received; ``b""`` once the stream has ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Sends ``data``; raises ``ConnectionError`` once the stream is gone."""
        ...

    async def close(self) -> None:
        """Ends the stream (idempotent)."""
        ...


class StreamTransport:
    """asyncio streams as a ByteTransport."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("transport closed")
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class MemoryTransport:
    """One end of an in-memory pipe. ``capacity`` bounds the bytes in flight
    towards the peer: a writer waits while the peer has not read them (the
    back-pressure a socket gives)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._eof = False
        self.peer: MemoryTransport | None = None

    async def read(self) -> bytes:
        while not self._inbox:
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._inbox.popleft()
        self._inbox_bytes -= len(data)
        if self._inbox_bytes < self._capacity:
            self._writable.set()
        return data

    async def write(self, data: bytes) -> None:
        peer = self.peer
        assert peer is not None
        while True:
            if self._eof or peer._eof:
                raise ConnectionResetError("pipe closed")
            if peer._inbox_bytes < peer._capacity:
                break
            peer._writable.clear()
            await peer._writable.wait()
        if data:
            peer._inbox.append(bytes(data))
            peer._inbox_bytes += len(data)
            peer._readable.set()

    async def close(self) -> None:
        for end in (self, self.peer):
            if end is not None:
                end._eof = True
                end._readable.set()
                end._writable.set()


def memory_pipe(capacity: int = 1 << 20) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports (closing either ends both)."""
    a, b = MemoryTransport(capacity), MemoryTransport(capacity)
    a.peer, b.peer = b, a
    return a, b


# A WebSocket's close codes for a yamux session's GoAway codes (normal,
# protocol error, internal error), as Coder's websocket.NetConn closes.
_GOAWAY_CLOSE = {0: 1000, 1: 1002, 2: 1011}


class WebSocketTransport:
    """A binary WebSocket (the front's ``serving.websocket.WebSocket``) as a
    ByteTransport: each binary message is a piece of the byte stream (Coder
    carries yamux this way). A text message is a protocol violation (1003),
    as for coder/websocket's binary NetConn."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        from rest_facade.serving.websocket import UNSUPPORTED_DATA, ConnectionClosed

        try:
            message = await self._ws.receive()
        except ConnectionClosed:
            return b""
        if isinstance(message, str):
            await self._ws.close(UNSUPPORTED_DATA, "expected binary messages")
            return b""
        return message

    async def write(self, data: bytes) -> None:
        from rest_facade.serving.websocket import ConnectionClosed

        try:
            await self._ws.send_bytes(bytes(data))
        except ConnectionClosed as err:
            raise ConnectionResetError(str(err)) from None

    async def close(self) -> None:
        await self._ws.close(1000, "")

    async def session_closed(self, code: int | None, reason: str) -> None:
        await self._ws.close(_GOAWAY_CLOSE.get(code or 0, 1011), reason)
