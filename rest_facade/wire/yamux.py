"""yamux sessions: many ordered byte streams over one byte transport, as
hashicorp/yamux frames them (Coder's agents, CLI and Desktop run dRPC over a
yamux session on a binary WebSocket; coderd is the session's server side).

The wire, from hashicorp/yamux's spec.md: every frame is a 12-byte big-endian
header ``version(1)=0 type(1) flags(2) stream_id(4) length(4)``; type 0 DATA
(``length`` payload bytes follow), 1 WINDOW_UPDATE (``length`` is a window
delta), 2 PING (``length`` is an opaque value echoed back), 3 GO_AWAY
(``length`` is a code: 0 normal, 1 protocol error, 2 internal error); flags
SYN (opens a stream), ACK (accepts it), FIN (half-close), RST (reset). The
client opens odd stream ids, the server even ones; id 0 is the session. Every
stream starts with a 256 KiB receive window in each direction; only DATA
payloads count against it and the receiver grants more with window updates.

What this implementation adds to the spec (its limits): a frame the spec
forbids ends the session with a GoAway carrying "protocol error" and a
reason (``YamuxSession.close_reason``): a version other than 0, an unknown
type, a data frame larger than any window we grant, data beyond the
stream's window, an opened stream id of the wrong parity or not above the
last one the peer opened (reuse), a frame for a stream the peer never
opened, a second FIN, data after FIN, a ping or go-away off stream 0, a
header cut short by the end of the connection. A peer that opens more than
``max_streams`` streams at once, or more than ``accept_backlog`` that the
application has not accepted yet, has the extra ones reset (the session
goes on). The session pings every ``keepalive_interval`` and ends when a
ping is not answered within ``keepalive_timeout``; a write the transport does
not take within ``write_timeout`` (a peer that stopped reading) ends it too.

Frames are read by one task that never waits on the application (a stream
whose reader is slow only stops its own window from reopening) and written
by one task that batches every frame queued since its last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rest_facade.wire.transport import ByteTransport

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size
PROTOCOL_VERSION = 0

TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3

FLAG_SYN = 0x1
FLAG_ACK = 0x2
FLAG_FIN = 0x4
FLAG_RST = 0x8

GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2

# How long an accepted stream's ACK waits for a frame to ride on. hashicorp's
# client gives up on a stream not ACKed within 75 s (StreamOpenTimeout).
ACK_DELAY = 0.02
# The spec's initial (and, here, the only) per-stream window.
INITIAL_WINDOW = 256 << 10
_MAX_UINT32 = (1 << 32) - 1
_GO_AWAY_TEXT = {
    GO_AWAY_NORMAL: "normal",
    GO_AWAY_PROTOCOL_ERROR: "protocol error",
    GO_AWAY_INTERNAL_ERROR: "internal error",
}


@dataclass(frozen=True)
class YamuxConfig:
    # Streams the peer opened that the application has not accepted yet
    # (hashicorp's AcceptBacklog default).
    accept_backlog: int = 256
    # Open streams at once (both directions). Each may buffer a full window,
    # so this bounds a session's memory: 128 x 256 KiB = 32 MiB.
    max_streams: int = 128
    # hashicorp's defaults: ping every 30 s, give up on a write after 10 s.
    keepalive_interval: float | None = 30.0
    keepalive_timeout: float = 10.0
    write_timeout: float = 10.0
    # Frames queued for the transport before stream writers wait (they
    # resume below it); control frames (pongs, window updates) are queued
    # regardless, up to max_write_buffer, past which the peer is taken as not
    # reading and the session ends.
    write_high_water: int = 512 << 10
    max_write_buffer: int = 4 << 20
    # How long closing waits for the GoAway to be written.
    close_timeout: float = 2.0


class YamuxError(ConnectionError):
    """A session or stream cannot be used."""


class SessionClosed(YamuxError):
    pass


class StreamReset(YamuxError):
    pass


class _ProtocolError(Exception):
    pass


class YamuxStream:
    """One stream of a session: ordered bytes each way, half-closable."""

    def __init__(self, session: YamuxSession, stream_id: int) -> None:
        self.id = stream_id
        self._session = session
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        # What the peer may still send before we grant more.
        self._recv_window = INITIAL_WINDOW
        self._send_window = INITIAL_WINDOW
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._local_closed = False
        self._remote_closed = False
        self._reset = False
        self._reset_reason = ""
        self._write_lock = asyncio.Lock()
        # Locally opened and not answered yet (see YamuxSession.open_stream).
        self._holds_open_slot = False
        # Accepted, ACK not sent yet: it rides on the first frame we send,
        # or goes alone after ACK_DELAY (see YamuxSession.accept).
        self._ack_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<YamuxStream {self.id}>"

    @property
    def reset_reason(self) -> str:
        return self._reset_reason

    @property
    def is_reset(self) -> bool:
        return self._reset

    # -- application side ----------------------------------------------------
    async def read(self, max_bytes: int = -1) -> bytes:
        """The next bytes (all that are buffered, or at most ``max_bytes``);
        ``b""`` once the peer has half-closed and everything was read.
        Raises ``StreamReset`` when the stream (or its session) was reset."""
        while not self._chunks:
            if self._reset:
                raise StreamReset(self._reset_reason or f"stream {self.id} reset")
            if self._remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        if max_bytes < 0 or max_bytes >= self._buffered:
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
        else:
            parts = []
            need = max_bytes
            while need:
                head = self._chunks[0]
                if len(head) <= need:
                    parts.append(self._chunks.popleft())
                    need -= len(head)
                else:
                    parts.append(head[:need])
                    self._chunks[0] = head[need:]
                    need = 0
            data = b"".join(parts)
        self._buffered -= len(data)
        self._grant_window()
        return data

    async def write(self, data: bytes) -> None:
        """Sends ``data``, waiting while the peer's window for this stream is
        closed (a slow reader stalls this stream only)."""
        view = memoryview(data)
        async with self._write_lock:
            while view:
                while self._send_window == 0:
                    self._check_writable()
                    self._writable.clear()
                    await self._writable.wait()
                self._check_writable()
                await self._session._wait_write_room()
                self._check_writable()
                n = min(self._send_window, len(view))
                self._session._queue_frame(TYPE_DATA, self._flags(), self.id, n, view[:n])
                self._send_window -= n
                view = view[n:]

    def _check_writable(self) -> None:
        if self._reset:
            raise StreamReset(self._reset_reason or f"stream {self.id} reset")
        if self._local_closed:
            raise YamuxError(f"stream {self.id} is closed for writing")

    async def close(self) -> None:
        """Half-closes: no more writes; reads go on until the peer's FIN."""
        async with self._write_lock:
            if self._local_closed or self._reset:
                return
            self._local_closed = True
            if not self._session.closed:
                self._session._queue_frame(TYPE_WINDOW_UPDATE, FLAG_FIN | self._flags(), self.id, 0)
            if self._remote_closed:
                self._session._forget(self)

    def reset(self) -> None:
        """Abandons the stream both ways (RST)."""
        if self._reset or (self._local_closed and self._remote_closed):
            return
        if not self._session.closed:
            self._session._queue_frame(TYPE_WINDOW_UPDATE, FLAG_RST | self._flags(), self.id, 0)
        self._mark_reset("stream reset locally")
        self._session._forget(self)

    def _flags(self) -> int:
        """The ACK still owed to the peer, if any (sent once)."""
        if self._ack_timer is None:
            return 0
        self._ack_timer.cancel()
        self._ack_timer = None
        return FLAG_ACK

    def _send_ack(self) -> None:
        self._ack_timer = None
        if not self._reset and not self._session.closed:
            self._session._queue_frame(TYPE_WINDOW_UPDATE, FLAG_ACK, self.id, 0)

    # -- session side --------------------------------------------------------
    def _grant_window(self) -> None:
        delta = (INITIAL_WINDOW - self._buffered) - self._recv_window
        if delta < INITIAL_WINDOW // 2 or self._reset or self._remote_closed:
            return
        self._recv_window += delta
        if not self._session.closed:
            self._session._queue_frame(TYPE_WINDOW_UPDATE, self._flags(), self.id, delta)

    def _on_data(self, payload: bytes) -> None:
        if self._remote_closed:
            raise _ProtocolError(f"data on stream {self.id} after its FIN")
        if len(payload) > self._recv_window:
            raise _ProtocolError(
                f"stream {self.id} window exceeded ({len(payload)} bytes, "
                f"{self._recv_window} allowed)"
            )
        self._recv_window -= len(payload)
        if self._reset:
            return
        self._chunks.append(payload)
        self._buffered += len(payload)
        self._readable.set()

    def _on_flags(self, flags: int) -> None:
        if flags & FLAG_ACK:
            self._session._release_open_slot(self)
        if flags & FLAG_FIN:
            if self._remote_closed:
                raise _ProtocolError(f"second FIN on stream {self.id}")
            self._remote_closed = True
            self._readable.set()
            if self._local_closed:
                self._session._forget(self)
        if flags & FLAG_RST:
            self._mark_reset("stream reset by peer")
            self._session._forget(self)

    def _mark_reset(self, reason: str) -> None:
        if self._reset:
            return
        self._reset = True
        self._reset_reason = reason
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._readable.set()
        self._writable.set()
        self._session._release_open_slot(self)


class YamuxSession:
    """A yamux session over ``transport``; ``client`` picks the stream-id
    parity (clients open odd ids). Call ``start()`` on the event loop, then
    ``accept()`` / ``open_stream()``; ``close()`` sends a normal GoAway and
    ends everything; ``wait_closed()`` returns once no task of the session is
    left. After the end, ``close_code`` (a GoAway code) and ``close_reason``
    say why."""

    def __init__(
        self,
        transport: ByteTransport,
        *,
        client: bool,
        config: YamuxConfig | None = None,
    ) -> None:
        self._transport = transport
        self._client = client
        self.config = config or YamuxConfig()
        self._streams: dict[int, YamuxStream] = {}
        self._next_id = 1 if client else 2
        # The highest id the peer has opened; a SYN must go above it.
        self._last_remote_id = 0
        self._accept_queue: deque[YamuxStream] = deque()
        self._acceptable = asyncio.Event()
        self._out = bytearray()
        self._out_ready = asyncio.Event()
        self._out_room = asyncio.Event()
        self._out_room.set()
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._ping_ids = itertools.count(1)
        self._local_go_away = False
        self.remote_go_away = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._finisher: asyncio.Task[None] | None = None
        self._open_slots: asyncio.Semaphore | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> YamuxSession:
        loop = asyncio.get_running_loop()
        self._open_slots = asyncio.Semaphore(self.config.accept_backlog)
        self._tasks = [
            loop.create_task(self._read_loop(), name="yamux-read"),
            loop.create_task(self._write_loop(), name="yamux-write"),
        ]
        if self.config.keepalive_interval:
            self._tasks.append(loop.create_task(self._keepalive_loop(), name="yamux-keepalive"))
        return self

    async def close(self) -> None:
        """Sends a normal GoAway, resets what is still open, ends the session."""
        self._terminate(GO_AWAY_NORMAL, "session closed", send_go_away=True)
        await self.wait_closed()

    async def go_away(self) -> None:
        """Refuses new streams from now on (they are reset) and tells the peer
        with a normal GoAway; open streams go on."""
        if self.closed or self._local_go_away:
            return
        self._local_go_away = True
        self._queue_frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL)

    async def wait_closed(self) -> None:
        while self._finisher is None:
            # Ended only by its own tasks; wait for one of them to decide.
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                self._terminate(GO_AWAY_INTERNAL_ERROR, "session tasks ended", True)
                break
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        assert self._finisher is not None
        await asyncio.shield(self._finisher)

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    # -- streams -----------------------------------------------------------
    async def open_stream(self) -> YamuxStream:
        if self.closed:
            raise SessionClosed(self.close_reason or "session closed")
        if self.remote_go_away:
            raise SessionClosed("the peer is not accepting streams (GoAway)")
        assert self._open_slots is not None, "start() the session first"
        await self._open_slots.acquire()
        try:
            if self.closed:
                raise SessionClosed(self.close_reason or "session closed")
            if self._next_id > _MAX_UINT32 - 1:
                raise YamuxError("stream ids exhausted")
            if len(self._streams) >= self.config.max_streams:
                raise YamuxError(f"too many open streams ({self.config.max_streams})")
            stream = YamuxStream(self, self._next_id)
            self._next_id += 2
            self._streams[stream.id] = stream
            self._queue_frame(TYPE_WINDOW_UPDATE, FLAG_SYN, stream.id, 0)
        except BaseException:
            self._open_slots.release()
            raise
        # The slot comes back once the peer answered (ACK or RST) or the
        # stream ended; the stream is usable at once (data may follow a SYN).
        stream._holds_open_slot = True
        return stream

    def _release_open_slot(self, stream: YamuxStream) -> None:
        if stream._holds_open_slot:
            stream._holds_open_slot = False
            assert self._open_slots is not None
            self._open_slots.release()

    async def accept(self) -> YamuxStream:
        """The next stream the peer opened; raises ``SessionClosed`` at the end."""
        while not self._accept_queue:
            if self.closed:
                raise SessionClosed(self.close_reason or "session closed")
            self._acceptable.clear()
            await self._acceptable.wait()
        stream = self._accept_queue.popleft()
        if not stream._reset and not self.closed:
            # The ACK rides on the stream's first frame (a unary answer
            # follows within microseconds), or goes alone after ACK_DELAY:
            # one frame, and one wake-up of the peer, less per call.
            stream._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, stream._send_ack)
        return stream

    async def ping(self) -> float:
        """Round-trip time of one ping, in seconds."""
        if self.closed:
            raise SessionClosed(self.close_reason or "session closed")
        ping_id = next(self._ping_ids) & _MAX_UINT32
        waiter = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = waiter
        started = time.monotonic()
        self._queue_frame(TYPE_PING, FLAG_SYN, 0, ping_id)
        try:
            await asyncio.wait_for(waiter, self.config.keepalive_timeout)
        finally:
            self._pings.pop(ping_id, None)
        return time.monotonic() - started

    # -- writing ---------------------------------------------------------------
    def _queue_frame(
        self, kind: int, flags: int, stream_id: int, length: int, payload: memoryview | None = None
    ) -> None:
        if self.closed and kind != TYPE_GO_AWAY:
            raise SessionClosed(self.close_reason or "session closed")
        self._out += HEADER.pack(PROTOCOL_VERSION, kind, flags, stream_id, length)
        if payload is not None:
            self._out += payload
        self._out_ready.set()
        if len(self._out) >= self.config.write_high_water:
            self._out_room.clear()
            if len(self._out) > self.config.max_write_buffer and not self.closed:
                self._terminate(
                    GO_AWAY_INTERNAL_ERROR,
                    f"the peer is not reading ({len(self._out)} bytes queued)",
                    send_go_away=False,
                )

    async def _wait_write_room(self) -> None:
        while not self._out_room.is_set():
            if self.closed:
                raise SessionClosed(self.close_reason or "session closed")
            await self._out_room.wait()
        if self.closed:
            raise SessionClosed(self.close_reason or "session closed")

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._out:
                    if self.closed:
                        return
                    self._out_ready.clear()
                    await self._out_ready.wait()
                data = bytes(self._out)
                self._out.clear()
                self._out_room.set()
                timeout = self.config.close_timeout if self.closed else self.config.write_timeout
                try:
                    # asyncio.timeout, not wait_for: no task per write.
                    async with asyncio.timeout(timeout):
                        await self._transport.write(data)
                except TimeoutError:
                    self._terminate(
                        GO_AWAY_INTERNAL_ERROR,
                        f"write timed out after {timeout:g}s (the peer is not reading)",
                        send_go_away=False,
                    )
                    return
        except (ConnectionError, OSError) as err:
            self._terminate(GO_AWAY_NORMAL, f"connection lost while writing: {err}", False)
        except Exception as err:
            self._terminate(GO_AWAY_INTERNAL_ERROR, f"internal error: {err!r}", False)

    # -- reading ---------------------------------------------------------------
    async def _read_loop(self) -> None:
        buf = bytearray()
        try:
            while True:
                chunk = await self._transport.read()
                if not chunk:
                    if buf:
                        raise _ProtocolError(
                            f"connection ended inside a frame ({len(buf)} bytes of it)"
                        )
                    self._terminate(GO_AWAY_NORMAL, "connection closed by peer", False)
                    return
                buf += chunk
                used = self._handle_frames(buf)
                if used:
                    del buf[:used]
                if self.closed:
                    return
        except _ProtocolError as err:
            self._terminate(GO_AWAY_PROTOCOL_ERROR, f"protocol error: {err}", True)
        except (ConnectionError, OSError) as err:
            self._terminate(GO_AWAY_NORMAL, f"connection lost while reading: {err}", False)
        except Exception as err:
            self._terminate(GO_AWAY_INTERNAL_ERROR, f"internal error: {err!r}", True)

    def _handle_frames(self, buf: bytearray) -> int:
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE and not self.closed:
            version, kind, flags, stream_id, length = HEADER.unpack_from(buf, pos)
            if version != PROTOCOL_VERSION:
                raise _ProtocolError(f"unsupported version {version}")
            if kind == TYPE_DATA:
                if length > INITIAL_WINDOW:
                    raise _ProtocolError(f"oversize data frame ({length} bytes)")
                if end - pos - HEADER_SIZE < length:
                    break
                start = pos + HEADER_SIZE
                payload = bytes(buf[start : start + length])
                pos = start + length
                self._on_stream_frame(kind, flags, stream_id, length, payload)
            elif kind == TYPE_WINDOW_UPDATE:
                pos += HEADER_SIZE
                self._on_stream_frame(kind, flags, stream_id, length, b"")
            elif kind == TYPE_PING:
                pos += HEADER_SIZE
                self._on_ping(flags, stream_id, length)
            elif kind == TYPE_GO_AWAY:
                pos += HEADER_SIZE
                self._on_go_away(stream_id, length)
            else:
                raise _ProtocolError(f"unknown frame type {kind}")
        return pos

    def _is_remote_id(self, stream_id: int) -> bool:
        # Clients open odd ids; the peer of a client is a server.
        return (stream_id % 2 == 0) if self._client else (stream_id % 2 == 1)

    def _on_stream_frame(
        self, kind: int, flags: int, stream_id: int, length: int, payload: bytes
    ) -> None:
        if stream_id == 0:
            raise _ProtocolError("stream frame on stream 0")
        if flags & FLAG_SYN:
            self._on_syn(stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            # Frames for streams already gone (reset, both closed) are
            # dropped; frames for streams never opened are garbage.
            if self._is_remote_id(stream_id):
                if stream_id > self._last_remote_id:
                    raise _ProtocolError(f"frame for stream {stream_id}, which was never opened")
            elif stream_id >= self._next_id:
                raise _ProtocolError(f"frame for stream {stream_id}, which was never opened")
            return
        if kind == TYPE_WINDOW_UPDATE:
            if length:
                stream._send_window += length
                if stream._send_window > _MAX_UINT32:
                    raise _ProtocolError(f"stream {stream_id} window overflow")
                stream._writable.set()
            stream._on_flags(flags)
        else:
            # The frame's flags apply before its data (a SYN+data, a
            # data+FIN: the FIN closes after this payload).
            stream._on_flags(flags & ~FLAG_FIN)
            if payload:
                stream._on_data(payload)
            if flags & FLAG_FIN:
                stream._on_flags(FLAG_FIN)

    def _on_syn(self, stream_id: int) -> None:
        if not self._is_remote_id(stream_id):
            raise _ProtocolError(f"stream {stream_id} opened with the wrong id parity")
        if stream_id <= self._last_remote_id:
            what = "duplicate" if stream_id in self._streams else "reused"
            raise _ProtocolError(f"stream id {stream_id} {what}")
        self._last_remote_id = stream_id
        stream = YamuxStream(self, stream_id)
        refuse = (
            self._local_go_away
            or len(self._accept_queue) >= self.config.accept_backlog
            or len(self._streams) >= self.config.max_streams
        )
        if refuse:
            # The peer may already have sent data behind the SYN: it is
            # read (and dropped) with the frame, within the window.
            self._queue_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
            return
        self._streams[stream_id] = stream
        self._accept_queue.append(stream)
        self._acceptable.set()

    def _on_ping(self, flags: int, stream_id: int, value: int) -> None:
        if stream_id != 0:
            raise _ProtocolError(f"ping on stream {stream_id}")
        if flags & FLAG_SYN:
            self._queue_frame(TYPE_PING, FLAG_ACK, 0, value)
            return
        waiter = self._pings.pop(value, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_go_away(self, stream_id: int, code: int) -> None:
        if stream_id != 0:
            raise _ProtocolError(f"go away on stream {stream_id}")
        if code == GO_AWAY_NORMAL:
            self.remote_go_away = True
            return
        text = _GO_AWAY_TEXT.get(code, f"unknown code {code}")
        self._terminate(GO_AWAY_NORMAL, f"peer sent GoAway: {text}", send_go_away=False)

    def _forget(self, stream: YamuxStream) -> None:
        self._release_open_slot(stream)
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    # -- keepalive -------------------------------------------------------------
    async def _keepalive_loop(self) -> None:
        interval = self.config.keepalive_interval
        assert interval
        while not self.closed:
            await asyncio.sleep(interval)
            try:
                await self.ping()
            except TimeoutError:
                self._terminate(
                    GO_AWAY_NORMAL,
                    f"keepalive timeout (no pong within {self.config.keepalive_timeout:g}s)",
                    send_go_away=False,
                )
                return
            except SessionClosed:
                return

    # -- ending ----------------------------------------------------------------
    def _terminate(self, code: int, reason: str, send_go_away: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        # A normal GoAway already sent (go_away()) is not repeated.
        if send_go_away and (code != GO_AWAY_NORMAL or not self._local_go_away):
            self._out += HEADER.pack(PROTOCOL_VERSION, TYPE_GO_AWAY, 0, 0, code)
        for stream in list(self._streams.values()):
            stream._mark_reset(f"session ended: {reason}")
        self._streams.clear()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(SessionClosed(reason))
        self._pings.clear()
        self._acceptable.set()
        self._out_ready.set()
        self._out_room.set()
        self._finisher = asyncio.get_running_loop().create_task(self._finish(), name="yamux-end")

    async def _finish(self) -> None:
        current = asyncio.current_task()
        writer = self._tasks[1] if len(self._tasks) > 1 else None
        if writer is not None and writer is not current:
            try:
                await asyncio.wait_for(asyncio.shield(writer), self.config.close_timeout)
            except TimeoutError:
                writer.cancel()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        closer: Callable[[], Awaitable[None]] = self._transport.close
        session_closed = getattr(self._transport, "session_closed", None)
        with contextlib.suppress(Exception):
            if session_closed is not None:
                await asyncio.wait_for(
                    session_closed(self.close_code, self.close_reason), self.config.close_timeout
                )
            else:
                await asyncio.wait_for(closer(), self.config.close_timeout)
