"""A WebSocket on the front's event loop (wsproto does the framing).

One task per socket reads it: it answers pings, sends a ping of its own
every ``ping_interval`` (Coder's ``httpapi.Heartbeat``: 15 s) and closes a
peer that has not answered one by the next (``Ping failed``), takes the
close handshake, and queues whole messages for the handler (a bounded
queue: a peer that sends faster than the handler reads is slowed by TCP, not
buffered). Writes go out whole, one at a time, and fail when the peer takes
nothing for ``write_timeout`` seconds (Coder gives a frame 10 s), which ends
the socket: a client that stops reading holds nothing of the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

log = logging.getLogger(__name__)
T = TypeVar("T")

PING_INTERVAL_SECONDS = 15.0
WRITE_TIMEOUT_SECONDS = 10.0
# Coder's read limit for WebSocket messages.
MAX_MESSAGE_BYTES = 4 << 20
READ_CHUNK = 64 << 10
# Messages read ahead of the handler before the socket stops being read.
QUEUE_MESSAGES = 16

# RFC 6455 close codes the server uses.
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
# A close reason fits in a control frame (125 bytes, 2 for the code).
MAX_REASON_BYTES = 123


class ConnectionClosed(Exception):
    """The socket is closed (by either side); ``code`` and ``reason`` are the
    close frame's when there was one."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed: {code} {reason}".strip())
        self.code = code
        self.reason = reason


def close_reason(text: str) -> str:
    """Cut to what a close frame carries, on a character boundary."""
    data = text.encode()[:MAX_REASON_BYTES]
    return data.decode(errors="ignore")


class WebSocket:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        initial: bytes = b"",
        ping_interval: float = PING_INTERVAL_SECONDS,
        write_timeout: float = WRITE_TIMEOUT_SECONDS,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        one_way: bool = False,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = Connection(ConnectionType.SERVER)
        self._ping_interval = ping_interval
        self._write_timeout = write_timeout
        self._max = max_message_bytes
        self._one_way = one_way
        self._messages: asyncio.Queue[str | bytes | None] = asyncio.Queue(QUEUE_MESSAGES)
        self._write_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._awaiting_pong = False
        self._initial = initial
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name="ws-read")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- sending --------------------------------------------------------

    async def send_text(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(BytesMessage(data=data))

    async def _send(self, event: Any) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_code or GOING_AWAY, self.close_reason)
        await self._write(self._ws.send(event))

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            if self._writer.is_closing():
                self._lost(GOING_AWAY, "connection lost")
                raise ConnectionClosed(GOING_AWAY, "connection lost")
            self._writer.write(data)
            try:
                async with asyncio.timeout(self._write_timeout):
                    await self._writer.drain()
            except (TimeoutError, ConnectionError) as err:
                # Part of a frame may be out: nothing more can go on it.
                reason = "write timed out" if isinstance(err, TimeoutError) else "connection lost"
                self._lost(INTERNAL_ERROR, reason)
                raise ConnectionClosed(INTERNAL_ERROR, reason) from None

    # -- receiving ------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next whole message; ConnectionClosed once the socket is done."""
        if self.closed and self._messages.empty():
            raise ConnectionClosed(self.close_code or GOING_AWAY, self.close_reason)
        message = await self._messages.get()
        if message is None:
            # Leave the marker for any other waiter.
            with contextlib.suppress(asyncio.QueueFull):
                self._messages.put_nowait(None)
            raise ConnectionClosed(self.close_code or GOING_AWAY, self.close_reason)
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def _read_loop(self) -> None:
        parts: list[Any] = []
        size = 0
        try:
            if self._initial:
                self._ws.receive_data(self._initial)
                self._initial = b""
                parts, size = await self._handle_events(parts, size)
            while not self.closed:
                try:
                    async with asyncio.timeout(self._ping_interval):
                        data = await self._reader.read(READ_CHUNK)
                except TimeoutError:
                    if self._awaiting_pong:
                        await self.close(GOING_AWAY, "Ping failed")
                        return
                    self._awaiting_pong = True
                    await self._write(self._ws.send(Ping(b"agentplane")))
                    continue
                self._ws.receive_data(data or None)
                parts, size = await self._handle_events(parts, size)
                if not data:
                    self._lost(GOING_AWAY, "connection lost")
        except ConnectionClosed:
            pass
        except RemoteProtocolError as err:
            await self._fail(PROTOCOL_ERROR, str(err))
        except (ConnectionError, OSError):
            self._lost(GOING_AWAY, "connection lost")
        finally:
            self._finish()

    async def _handle_events(self, parts: list[Any], size: int) -> tuple[list[Any], int]:
        for event in self._ws.events():
            self._awaiting_pong = False  # any traffic shows the peer is alive
            if isinstance(event, Message):
                if self._one_way:
                    # As coder/websocket's CloseRead: a stream only the
                    # server writes closes on any data from the client.
                    await self._fail(POLICY_VIOLATION, "unexpected data message")
                    raise ConnectionClosed(POLICY_VIOLATION, "unexpected data message")
                size += len(event.data)
                if size > self._max:
                    await self._fail(MESSAGE_TOO_BIG, "message too big")
                    raise ConnectionClosed(MESSAGE_TOO_BIG, "message too big")
                parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        message: str | bytes = "".join(parts)
                    else:
                        message = b"".join(parts)
                    parts, size = [], 0
                    await self._messages.put(message)
            elif isinstance(event, Ping):
                await self._write(self._ws.send(event.response()))
            elif isinstance(event, Pong):
                pass
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason or ""
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(ConnectionClosed):
                        await self._write(self._ws.send(event.response()))
                self._closed.set()
                raise ConnectionClosed(event.code, event.reason or "")
        return parts, size

    # -- closing --------------------------------------------------------

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Sends a close frame (if the socket is still open) and ends it. The
        peer's answering close frame is not waited for beyond a second."""
        if self.closed:
            return
        self.close_code, self.close_reason = code, close_reason(reason)
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(ConnectionClosed, RemoteProtocolError, Exception):
                await self._write(
                    self._ws.send(CloseConnection(code=code, reason=self.close_reason))
                )
        self._closed.set()
        self._writer.close()
        if asyncio.current_task() is not self._task:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self._task)

    async def _fail(self, code: int, reason: str) -> None:
        await self.close(code, reason)

    def _lost(self, code: int, reason: str) -> None:
        if not self.closed:
            self.close_code, self.close_reason = code, reason
        self._closed.set()
        self._writer.close()

    def _finish(self) -> None:
        self._closed.set()
        self._writer.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._messages.put_nowait(None)

    async def aclose(self) -> None:
        """Ends the socket and its reader task (the handler is done)."""
        await self.close(self.close_code or NORMAL, self.close_reason)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def until_closed(ws: WebSocket, source: AsyncIterator[T]) -> AsyncIterator[T]:
    """The items of ``source`` until it ends or the socket closes (the
    client left): a handler that only writes still notices at once, and
    ``source`` is closed either way."""
    closed = asyncio.ensure_future(ws.wait_closed())
    try:
        while True:
            item = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({item, closed}, return_when=asyncio.FIRST_COMPLETED)
            if item not in done:
                item.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await item
                return
            try:
                value = item.result()
            except StopAsyncIteration:
                return
            yield value
    finally:
        closed.cancel()
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
