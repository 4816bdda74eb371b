"""A WebSocket on the front's event loop (wsproto does the framing).

One task per socket reads it: it answers pings, takes the close handshake
and queues whole messages for the handler (a bounded queue: a peer that
sends faster than the handler reads is slowed by TCP, not buffered). One
heartbeat per event loop, not a timer per socket, pings every socket that
has been silent for ``ping_interval`` (Coder's ``httpapi.Heartbeat``: 15 s)
and closes one that has not answered by the next (``Ping failed``), so ten
thousand idle sockets cost one periodic task. Writes go out whole, one at a
time, and fail when the peer takes nothing for ``write_timeout`` seconds
(Coder gives a frame 10 s), which ends the socket: a client that stops
reading holds nothing of the server's. ``one_way`` sockets (the server only
writes) close on any data message, as coder/websocket's ``CloseRead`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

log = logging.getLogger(__name__)

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


class _Heartbeat:
    """Pings the silent sockets of one event loop; one task for them all."""

    def __init__(self) -> None:
        self.sockets: set[WebSocket] = set()
        self.tick = 1.0
        self._task: asyncio.Task[None] | None = None

    def add(self, ws: WebSocket) -> None:
        self.sockets.add(ws)
        self.tick = min(self.tick, ws.ping_interval / 4)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-heartbeat")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.sockets:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for ws in list(self.sockets):
                ws._beat(now)


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Heartbeat] = (
    weakref.WeakKeyDictionary()
)


def _heartbeat() -> _Heartbeat:
    loop = asyncio.get_running_loop()
    beat = _heartbeats.get(loop)
    if beat is None:
        beat = _heartbeats[loop] = _Heartbeat()
    return beat


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
        loop = asyncio.get_running_loop()
        self._reader = reader
        self._writer = writer
        self._ws = Connection(ConnectionType.SERVER)
        self.ping_interval = ping_interval
        self._write_timeout = write_timeout
        self._max = max_message_bytes
        self._one_way = one_way
        # Created on the first receive(): a socket only written to (a
        # follow) never needs one.
        self._messages: asyncio.Queue[str | bytes | None] | None = None
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._closed_event: asyncio.Event | None = None
        self._on_close: list[Callable[[], Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._heard_at = loop.time()
        self._pinged_at: float | None = None
        self._initial = initial
        self._heartbeat = _heartbeat()
        self._heartbeat.add(self)
        self._task = loop.create_task(self._read_loop(), name="ws-read")

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        if self._closed:
            return
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        await self._closed_event.wait()

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Calls ``callback()`` once the socket closes (at once if it has):
        how a handler that only writes learns that its client left without a
        task of its own watching."""
        if self._closed:
            callback()
        else:
            self._on_close.append(callback)

    def _mark_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._heartbeat.sockets.discard(self)
        if self._closed_event is not None:
            self._closed_event.set()
        if self._messages is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._messages.put_nowait(None)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a WebSocket close callback failed")

    # -- sending --------------------------------------------------------

    async def send_text(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(BytesMessage(data=data))

    async def _send(self, event: Any) -> None:
        if self._closed:
            raise ConnectionClosed(self.close_code or GOING_AWAY, self.close_reason)
        await self._write(self._ws.send(event))

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            if self._writer.is_closing():
                self._lost(GOING_AWAY, "connection lost")
                raise ConnectionClosed(GOING_AWAY, "connection lost")
            # One write per frame: frames never interleave on the transport.
            self._writer.write(data)
            try:
                async with asyncio.timeout(self._write_timeout):
                    await self._writer.drain()
            except (TimeoutError, ConnectionError) as err:
                # Part of a frame may be out: nothing more can go on it.
                reason = "write timed out" if isinstance(err, TimeoutError) else "connection lost"
                self._lost(INTERNAL_ERROR, reason)
                raise ConnectionClosed(INTERNAL_ERROR, reason) from None

    # -- keeping alive --------------------------------------------------

    def _beat(self, now: float) -> None:
        if self._closed:
            return
        if self._pinged_at is not None:
            if now - self._pinged_at >= self.ping_interval:
                asyncio.get_running_loop().create_task(self.close(GOING_AWAY, "Ping failed"))
            return
        if now - self._heard_at >= self.ping_interval:
            self._pinged_at = now
            asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionClosed, RemoteProtocolError, Exception):
            await self._write(self._ws.send(Ping(b"agentplane")))

    # -- receiving ------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next whole message; ConnectionClosed once the socket is done."""
        if self._messages is None:
            self._messages = asyncio.Queue(QUEUE_MESSAGES)
            if self._closed:
                self._messages.put_nowait(None)
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
        loop = asyncio.get_running_loop()
        try:
            data = self._initial
            self._initial = b""
            while not self._closed:
                if not data:
                    data = await self._reader.read(READ_CHUNK)
                    if not data:
                        self._ws.receive_data(None)
                        self._lost(GOING_AWAY, "connection lost")
                        return
                self._heard_at = loop.time()
                self._pinged_at = None  # any traffic shows the peer is alive
                self._ws.receive_data(data)
                data = b""
                parts, size = await self._handle_events(parts, size)
        except ConnectionClosed:
            pass
        except RemoteProtocolError as err:
            await self.close(PROTOCOL_ERROR, str(err))
        except OSError:
            self._lost(GOING_AWAY, "connection lost")
        finally:
            self._finish()

    async def _handle_events(self, parts: list[Any], size: int) -> tuple[list[Any], int]:
        for event in self._ws.events():
            if isinstance(event, Message):
                if self._one_way:
                    await self.close(POLICY_VIOLATION, "unexpected data message")
                    raise ConnectionClosed(POLICY_VIOLATION, "unexpected data message")
                size += len(event.data)
                if size > self._max:
                    await self.close(MESSAGE_TOO_BIG, "message too big")
                    raise ConnectionClosed(MESSAGE_TOO_BIG, "message too big")
                parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        message: str | bytes = "".join(parts)
                    else:
                        message = b"".join(parts)
                    parts, size = [], 0
                    if self._messages is None:
                        self._messages = asyncio.Queue(QUEUE_MESSAGES)
                    await self._messages.put(message)
            elif isinstance(event, Ping):
                await self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code, self.close_reason = event.code, event.reason or ""
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(ConnectionClosed):
                        await self._write(self._ws.send(event.response()))
                self._mark_closed()
                raise ConnectionClosed(event.code, event.reason or "")
        return parts, size

    # -- closing --------------------------------------------------------

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Sends a close frame (if the socket is still open) and ends it. The
        peer's answering close frame is not waited for beyond a second."""
        if self._closed:
            return
        self.close_code, self.close_reason = code, close_reason(reason)
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(Exception):
                await self._write(
                    self._ws.send(CloseConnection(code=code, reason=self.close_reason))
                )
        self._mark_closed()
        self._writer.close()
        if asyncio.current_task() is not self._task:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self._task)

    def _lost(self, code: int, reason: str) -> None:
        if not self._closed:
            self.close_code, self.close_reason = code, reason
        self._mark_closed()
        self._writer.close()

    def _finish(self) -> None:
        self._mark_closed()
        self._writer.close()

    async def aclose(self) -> None:
        """Ends the socket and its reader task (the handler is done)."""
        await self.close(self.close_code or NORMAL, self.close_reason)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
