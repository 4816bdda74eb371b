"""dRPC (storj.io/drpc) over yamux streams: the RPC protocol of Coder's agent
and tailnet APIs. Serves handlers that work on raw message bytes (the bridge
to the core passes protobuf payloads through undecoded) and, for tests and
benchmarks, calls them.

The wire, from storj's drpcwire docs: a *frame* is a control byte (bit 0
"done": the last frame of its packet; bits 1-6 the packet kind; bit 7
"control": a packet a receiver that does not know it must ignore), then
three unsigned varints (stream id, message id, data length), then the data.
Frames with the same (stream, message) id join into one *packet*; ids never
decrease. Kinds: 1 invoke (data: the RPC name, ``/pkg.Service/Method``),
2 message (data: one protobuf message), 3 error (data: an 8-byte big-endian
code, then the error text), 4 cancel, 5 close (the RPC is over), 6 close-send
(no more messages from this side), 7 invoke-metadata (data: a protobuf
``map<string, string>``, for the invoke that follows).

How Coder uses it (``codersdk/drpcsdk``): every call opens its own yamux
stream; a drpc "connection" (manager) runs on it, one RPC at a time, each RPC
a new drpc stream id. The client sends [invoke-metadata,] invoke, then its
messages and a close-send; the server answers with messages, then close-send
(done) or error. Server streams, client streams and bidi streams are the
same exchange with more messages. When the yamux stream ends, the RPC is
cancelled.

Limits: a packet (so a message) above ``MAX_MESSAGE_BYTES`` (4 MiB, Coder's
``drpcsdk.MaxMessageSize``) or a malformed frame ends that yamux stream (it
is reset); the rest of the session goes on. A yamux stream that sends no
invoke within ``invoke_timeout`` is reset.

Errors: ``DRPCError(code, message)``; the code is drpcerr's (12 is
``drpcerr.Unimplemented``, which Coder's clients test for; the bridge uses
gRPC's numbering, which agrees). An RPC no handler serves answers Coder's
(drpcmux's) ``protocol error: unknown rpc: "<name>"`` with code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from rest_facade.wire.transport import ByteTransport
from rest_facade.wire.yamux import YamuxConfig, YamuxError, YamuxSession, YamuxStream

log = logging.getLogger(__name__)

KIND_INVOKE = 1
KIND_MESSAGE = 2
KIND_ERROR = 3
KIND_CANCEL = 4
KIND_CLOSE = 5
KIND_CLOSE_SEND = 6
KIND_INVOKE_METADATA = 7

# drpcsdk.MaxMessageSize, and drpcwire's default reader buffer.
MAX_MESSAGE_BYTES = 4 << 20
# drpcwire.SplitData's default frame size.
SPLIT_BYTES = 64 << 10
# 1 control byte and three varints of at most 10 bytes each.
_MAX_FRAME_OVERHEAD = 1 + 3 * 10
# drpcerr.Unimplemented (and gRPC's UNIMPLEMENTED).
CODE_UNIMPLEMENTED = 12
_ERROR_CODE = struct.Struct(">Q")


class DRPCError(Exception):
    """An RPC ended with an error: a drpcerr code (0: none) and its text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"DRPCError({self.code}, {self.message!r})"


class ProtocolError(Exception):
    """The peer broke the dRPC wire format; its yamux stream is reset."""


# -- varints, frames, packets ------------------------------------------------


def append_varint(buf: bytearray, value: int) -> None:
    while value >= 0x80:
        buf.append((value & 0x7F) | 0x80)
        value >>= 7
    buf.append(value)


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it), None when ``buf`` ends inside it."""
    value = 0
    shift = 0
    end = len(buf)
    while shift < 64:
        if pos >= end:
            return None
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ProtocolError("varint too long")


def append_frame(
    buf: bytearray,
    kind: int,
    stream_id: int,
    message_id: int,
    data: bytes | memoryview = b"",
    *,
    done: bool = True,
    control: bool = False,
) -> None:
    buf.append((kind << 1) | (1 if done else 0) | (0x80 if control else 0))
    append_varint(buf, stream_id)
    append_varint(buf, message_id)
    append_varint(buf, len(data))
    buf += data


def append_packet(
    buf: bytearray, kind: int, stream_id: int, message_id: int, data: bytes = b""
) -> None:
    """A packet as frames of at most SPLIT_BYTES of data (as drpc splits them)."""
    view = memoryview(data)
    while True:
        chunk, view = view[:SPLIT_BYTES], view[SPLIT_BYTES:]
        append_frame(buf, kind, stream_id, message_id, chunk, done=not view)
        if not view:
            return


@dataclass
class Packet:
    kind: int
    stream_id: int
    message_id: int
    data: bytes
    control: bool = False


def encode_error(code: int, message: str) -> bytes:
    return _ERROR_CODE.pack(code) + message.encode("utf-8", "replace")


def decode_error(data: bytes) -> DRPCError:
    if len(data) < 8:
        # drpcwire.UnmarshalError's note for a short error body.
        text = data.decode("utf-8", "replace")
        return DRPCError(0, f"{text} (drpcwire note: invalid error data)")
    (code,) = _ERROR_CODE.unpack_from(data)
    return DRPCError(code, data[8:].decode("utf-8", "replace"))


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """drpcmetadata's encoding: a protobuf message whose field 1 repeats
    {1: key, 2: value} entries (a ``map<string, string>``)."""
    out = bytearray()
    for key, value in metadata.items():
        k, v = key.encode(), value.encode()
        entry = bytearray()
        entry.append(0x0A)
        append_varint(entry, len(k))
        entry += k
        entry.append(0x12)
        append_varint(entry, len(v))
        entry += v
        out.append(0x0A)
        append_varint(out, len(entry))
        out += entry
    return bytes(out)


def decode_metadata(data: bytes) -> dict[str, str]:
    result: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] != 0x0A:
            raise ProtocolError("invalid invoke metadata")
        parsed = read_varint(data, pos + 1)
        if parsed is None or parsed[1] + parsed[0] > len(data):
            raise ProtocolError("invalid invoke metadata")
        length, start = parsed
        entry = data[start : start + length]
        pos = start + length
        fields: dict[int, bytes] = {}
        epos = 0
        while epos < len(entry):
            tag = entry[epos]
            if tag not in (0x0A, 0x12):
                raise ProtocolError("invalid invoke metadata")
            parsed = read_varint(entry, epos + 1)
            if parsed is None or parsed[1] + parsed[0] > len(entry):
                raise ProtocolError("invalid invoke metadata")
            flen, fstart = parsed
            fields[tag >> 3] = entry[fstart : fstart + flen]
            epos = fstart + flen
        key = fields.get(1, b"").decode("utf-8", "replace")
        result[key] = fields.get(2, b"").decode("utf-8", "replace")
    return result


class PacketReader:
    """Reassembles packets from the frames a yamux stream carries, with
    drpcwire.Reader's rules: ids never go backwards, a new id drops the
    unfinished packet before it, a packet's kind does not change, at most
    ``max_bytes`` of data per packet."""

    def __init__(self, stream: YamuxStream, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = stream
        self._max = max_bytes
        self._buf = bytearray()
        self._pos = 0
        self._id = (1, 1)
        self._packet: Packet | None = None
        self._parts: list[bytes] = []
        self._size = 0

    async def read_packet(self) -> Packet | None:
        """The next whole packet; None at the end of the stream."""
        while True:
            frame = self._next_frame()
            if frame is None:
                chunk = await self._stream.read()
                if not chunk:
                    if self._pos < len(self._buf):
                        raise ProtocolError("stream ended inside a frame")
                    return None
                if self._pos:
                    del self._buf[: self._pos]
                    self._pos = 0
                self._buf += chunk
                continue
            packet = self._add(*frame)
            if packet is not None:
                return packet

    def _next_frame(self) -> tuple[int, bool, bool, int, int, bytes] | None:
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        control_byte = buf[pos]
        parsed = read_varint(buf, pos + 1)
        if parsed is None:
            return None
        stream_id, pos2 = parsed
        parsed = read_varint(buf, pos2)
        if parsed is None:
            return None
        message_id, pos2 = parsed
        parsed = read_varint(buf, pos2)
        if parsed is None:
            return None
        length, start = parsed
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes is over the {self._max}-byte limit")
        if len(buf) - start < length:
            return None
        data = bytes(buf[start : start + length])
        self._pos = start + length
        kind = (control_byte >> 1) & 0x3F
        return kind, bool(control_byte & 1), bool(control_byte & 0x80), stream_id, message_id, data

    def _add(
        self, kind: int, done: bool, control: bool, stream_id: int, message_id: int, data: bytes
    ) -> Packet | None:
        frame_id = (stream_id, message_id)
        if frame_id < self._id:
            raise ProtocolError(f"id monotonicity violation ({frame_id} after {self._id})")
        packet = self._packet
        if packet is None or frame_id != self._id:
            self._id = frame_id
            packet = self._packet = Packet(kind, stream_id, message_id, b"", control)
            self._parts = []
            self._size = 0
        elif kind != packet.kind:
            raise ProtocolError(f"packet kind change ({kind} in a packet of kind {packet.kind})")
        packet.control = packet.control or control
        if data:
            self._parts.append(data)
            self._size += len(data)
            if self._size > self._max:
                raise ProtocolError(f"message over the {self._max}-byte limit")
        if not done:
            return None
        packet.data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._packet = None
        self._parts = []
        # The next packet needs a later id (drpcwire bumps the message id).
        self._id = (stream_id, message_id + 1)
        return packet


class PacketWriter:
    """Writes one drpc stream's packets, numbering its messages."""

    def __init__(self, stream: YamuxStream, stream_id: int) -> None:
        self._stream = stream
        self.stream_id = stream_id
        self._message_id = 0

    def frame(self, buf: bytearray, kind: int, data: bytes = b"") -> None:
        self._message_id += 1
        append_packet(buf, kind, self.stream_id, self._message_id, data)

    async def write(self, kind: int, data: bytes = b"") -> None:
        buf = bytearray()
        self.frame(buf, kind, data)
        await self._stream.write(buf)


# -- server --------------------------------------------------------------------


class RPCKind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI = "bidi"


Handler = Callable[["ServerCall"], Awaitable[None]]


@dataclass
class ServerCall:
    """One RPC being served: what the handler reads and writes."""

    rpc: str
    metadata: dict[str, str]
    _writer: PacketWriter
    # One message ahead and the close-send: a unary request never waits.
    _inbox: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(2))
    _recv_closed: bool = False
    _eof_queued: bool = False

    async def recv(self) -> bytes | None:
        """The client's next message; None once it has sent close-send."""
        if self._recv_closed and self._inbox.empty():
            return None
        message = await self._inbox.get()
        if message is None:
            self._recv_closed = True
        return message

    async def recv_one(self) -> bytes:
        """The request of a unary or server-streaming call."""
        message = await self.recv()
        if message is None:
            # What drpc's MsgRecv reports for a missing request.
            raise DRPCError(0, "EOF")
        return message

    async def send(self, message: bytes) -> None:
        if len(message) > MAX_MESSAGE_BYTES:
            raise DRPCError(
                0, f"message of {len(message)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
            )
        await self._writer.write(KIND_MESSAGE, message)

    async def _deliver(self, message: bytes | None, task: asyncio.Task[None]) -> None:
        """Hands the handler the client's next message (None: close-send),
        waiting while it has not taken the previous one (so a client that
        outpaces its handler is held back by its yamux window), unless the
        handler ends first."""
        if task.done() or self._eof_queued:
            return
        if message is None:
            self._eof_queued = True
        try:
            self._inbox.put_nowait(message)
            return
        except asyncio.QueueFull:
            pass
        putter = asyncio.get_running_loop().create_task(self._inbox.put(message))
        done, _ = await asyncio.wait({putter, task}, return_when=asyncio.FIRST_COMPLETED)
        if putter not in done:
            await _cancel(putter)


class DRPCServer:
    """Serves ``handlers`` (RPC name -> (kind, handler)) on every stream of
    a yamux session. ``serve(session)`` returns when the session has ended
    and every RPC task of it is gone."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        invoke_timeout: float = 60.0,
    ) -> None:
        self._handlers = handlers
        self._invoke_timeout = invoke_timeout

    async def serve(self, session: YamuxSession) -> None:
        conns: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    stream = await session.accept()
                except YamuxError:
                    return
                task = asyncio.get_running_loop().create_task(self.serve_stream(stream))
                conns.add(task)
                task.add_done_callback(conns.discard)
        finally:
            for task in list(conns):
                task.cancel()
            if conns:
                await asyncio.gather(*conns, return_exceptions=True)

    async def serve_stream(self, stream: YamuxStream) -> None:
        """One drpc connection: RPCs in turn on one yamux stream."""
        reader = PacketReader(stream)
        current: tuple[int, ServerCall, asyncio.Task[None]] | None = None
        metadata: dict[str, str] = {}
        metadata_stream = 0
        try:
            while True:
                waiting = current is None or current[2].done()
                # asyncio.timeout, not wait_for: no task per packet read.
                try:
                    async with asyncio.timeout(self._invoke_timeout if waiting else None):
                        packet = await reader.read_packet()
                except TimeoutError:
                    log.debug("yamux stream %s: no invoke in time", stream.id)
                    stream.reset()
                    return
                if packet is None:
                    return
                if current is not None and packet.stream_id == current[0]:
                    await self._on_call_packet(current[1], current[2], packet)
                    continue
                if current is not None and packet.stream_id < current[0]:
                    continue
                if packet.kind == KIND_INVOKE_METADATA:
                    metadata = decode_metadata(packet.data)
                    metadata_stream = packet.stream_id
                    continue
                if packet.kind == KIND_INVOKE:
                    if current is not None:
                        # A new invoke cancels the RPC before it (drpcmanager).
                        await _cancel(current[2])
                    rpc = packet.data.decode("utf-8", "replace")
                    call = ServerCall(
                        rpc=rpc,
                        metadata=metadata if metadata_stream == packet.stream_id else {},
                        _writer=PacketWriter(stream, packet.stream_id),
                    )
                    task = asyncio.get_running_loop().create_task(self._run(call))
                    current = (packet.stream_id, call, task)
                    continue
                if packet.control:
                    continue
                raise ProtocolError(f"packet of kind {packet.kind} before an invoke")
        except ProtocolError as err:
            log.info("yamux stream %s: dRPC protocol error: %s", stream.id, err)
            stream.reset()
        except YamuxError:
            pass
        finally:
            if current is not None:
                await _cancel(current[2])
            if not stream.is_reset:
                with contextlib.suppress(YamuxError):
                    await stream.close()

    async def _on_call_packet(
        self, call: ServerCall, task: asyncio.Task[None], packet: Packet
    ) -> None:
        kind = packet.kind
        if kind == KIND_MESSAGE:
            await call._deliver(packet.data, task)
        elif kind == KIND_CLOSE_SEND:
            await call._deliver(None, task)
        elif kind in (KIND_CLOSE, KIND_CANCEL, KIND_ERROR):
            await _cancel(task)
        elif kind in (KIND_INVOKE, KIND_INVOKE_METADATA):
            raise ProtocolError("invoke on an existing stream")
        elif not packet.control:
            raise ProtocolError(f"unknown packet kind {kind}")

    async def _run(self, call: ServerCall) -> None:
        writer = call._writer
        handler = self._handlers.get(call.rpc)
        try:
            try:
                if handler is None:
                    raise DRPCError(0, f"protocol error: unknown rpc: {json.dumps(call.rpc)}")
                await handler(call)
            except DRPCError as err:
                await writer.write(KIND_ERROR, encode_error(err.code, err.message))
                return
            except (asyncio.CancelledError, YamuxError):
                raise
            except Exception:
                log.exception("dRPC handler for %s failed", call.rpc)
                await writer.write(KIND_ERROR, encode_error(0, "internal error"))
                return
            await writer.write(KIND_CLOSE_SEND)
        except YamuxError:
            pass


async def serve_session(
    transport: ByteTransport,
    handlers: Mapping[str, Handler],
    *,
    config: YamuxConfig | None = None,
    invoke_timeout: float = 60.0,
) -> YamuxSession:
    """Serves dRPC on a yamux session (the server side) over ``transport``
    until the session ends; returns it ended, with ``close_code`` and
    ``close_reason`` set and no task of it left."""
    session = YamuxSession(transport, client=False, config=config).start()
    try:
        await DRPCServer(handlers, invoke_timeout=invoke_timeout).serve(session)
    finally:
        if not session.closed:
            await session.close()
        await session.wait_closed()
    return session


async def _cancel(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


# -- client --------------------------------------------------------------------


class ClientCall:
    """One RPC from the client side, on its own yamux stream."""

    def __init__(self, stream: YamuxStream) -> None:
        self._stream = stream
        self._writer = PacketWriter(stream, 1)
        self._reader = PacketReader(stream)
        self._done = False

    async def _invoke(self, rpc: str, metadata: Mapping[str, str] | None) -> None:
        buf = bytearray()
        if metadata:
            self._writer.frame(buf, KIND_INVOKE_METADATA, encode_metadata(metadata))
        self._writer.frame(buf, KIND_INVOKE, rpc.encode())
        await self._stream.write(buf)

    async def send(self, message: bytes) -> None:
        await self._writer.write(KIND_MESSAGE, message)

    async def close_send(self) -> None:
        await self._writer.write(KIND_CLOSE_SEND)

    async def recv(self) -> bytes | None:
        """The server's next message; None when it has finished (close-send);
        raises DRPCError when it answered with an error."""
        if self._done:
            return None
        while True:
            packet = await self._reader.read_packet()
            if packet is None:
                self._done = True
                raise DRPCError(0, "stream closed before the RPC finished")
            if packet.kind == KIND_MESSAGE:
                return packet.data
            if packet.kind == KIND_CLOSE_SEND:
                self._done = True
                return None
            if packet.kind == KIND_ERROR:
                self._done = True
                raise decode_error(packet.data)
            if packet.kind in (KIND_CLOSE, KIND_CANCEL):
                self._done = True
                raise DRPCError(0, "remote closed the stream")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (message := await self.recv()) is not None:
            yield message

    async def close(self) -> None:
        """Ends the RPC (the yamux stream), as drpc's conn Close does."""
        with contextlib.suppress(YamuxError):
            await self._stream.close()


class DRPCClient:
    """Calls RPCs over a yamux session, one yamux stream per call (as
    Coder's ``drpcsdk.MultiplexedConn``)."""

    def __init__(self, session: YamuxSession, *, metadata: Mapping[str, str] | None = None) -> None:
        self._session = session
        self._metadata = dict(metadata or {})

    async def call(self, rpc: str) -> ClientCall:
        """Starts an RPC; send, close_send, recv on what comes back."""
        stream = await self._session.open_stream()
        call = ClientCall(stream)
        await call._invoke(rpc, self._metadata)
        return call

    async def unary(self, rpc: str, request: bytes) -> bytes:
        stream = await self._session.open_stream()
        call = ClientCall(stream)
        try:
            buf = bytearray()
            if self._metadata:
                call._writer.frame(buf, KIND_INVOKE_METADATA, encode_metadata(self._metadata))
            call._writer.frame(buf, KIND_INVOKE, rpc.encode())
            call._writer.frame(buf, KIND_MESSAGE, request)
            call._writer.frame(buf, KIND_CLOSE_SEND)
            await stream.write(buf)
            response = await call.recv()
            if response is None:
                raise DRPCError(0, "EOF")
            return response
        finally:
            await call.close()

    async def server_stream(self, rpc: str, request: bytes) -> ClientCall:
        call = await self.call(rpc)
        await call.send(request)
        await call.close_send()
        return call
