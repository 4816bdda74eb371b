"""A yamux + dRPC client written from the specs (hashicorp/yamux spec.md,
storj's drpcwire docs), independent of rest_facade/wire: the tests check the
server against this reading of the protocols, not against its own.

Client side only, over asyncio streams: one reader task splits frames per
stream; every dRPC call opens its own yamux stream, as Coder's agents do.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

HEADER = struct.Struct(">BBHII")
DATA, WINDOW_UPDATE, PING, GO_AWAY = range(4)
SYN, ACK, FIN, RST = 1, 2, 4, 8
WINDOW = 256 * 1024

INVOKE, MESSAGE, ERROR, CANCEL, CLOSE, CLOSE_SEND, INVOKE_METADATA = 1, 2, 3, 4, 5, 6, 7


class SpecError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"[{code}] {text}")
        self.code = code
        self.text = text


class Stream:
    def __init__(self, client: SpecYamuxClient, sid: int) -> None:
        self.client = client
        self.sid = sid
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.send_window = WINDOW
        self.window_open = asyncio.Event()
        self.window_open.set()
        self.consumed = 0
        self.reset = False

    async def write(self, data: bytes) -> None:
        while data:
            while self.send_window == 0:
                if self.reset:
                    raise ConnectionResetError("stream reset")
                self.window_open.clear()
                await self.window_open.wait()
            n = min(len(data), self.send_window)
            self.send_window -= n
            await self.client.send(HEADER.pack(0, DATA, 0, self.sid, n) + data[:n])
            data = data[n:]

    async def read(self) -> bytes:
        """b"" on FIN; raises on RST."""
        chunk = await self.inbox.get()
        if chunk is None:
            raise ConnectionResetError("stream reset")
        self.consumed += len(chunk)
        if self.consumed >= WINDOW // 2:
            await self.client.send(HEADER.pack(0, WINDOW_UPDATE, 0, self.sid, self.consumed))
            self.consumed = 0
        return chunk

    async def close(self) -> None:
        await self.client.send(HEADER.pack(0, WINDOW_UPDATE, FIN, self.sid, 0))


class SpecYamuxClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.go_away: int | None = None
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int) -> SpecYamuxClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def open(self) -> Stream:
        stream = Stream(self, self.next_id)
        self.next_id += 2
        self.streams[stream.sid] = stream
        await self.send(HEADER.pack(0, WINDOW_UPDATE, SYN, stream.sid, 0))
        return stream

    async def _read_loop(self) -> None:
        try:
            while True:
                version, kind, flags, sid, length = HEADER.unpack(await self.reader.readexactly(12))
                assert version == 0
                if kind == PING:
                    if flags & SYN:
                        await self.send(HEADER.pack(0, PING, ACK, 0, length))
                    continue
                if kind == GO_AWAY:
                    self.go_away = length
                    continue
                payload = await self.reader.readexactly(length) if kind == DATA else b""
                stream = self.streams.get(sid)
                if stream is None:
                    continue
                if kind == WINDOW_UPDATE and length:
                    stream.send_window += length
                    stream.window_open.set()
                if payload:
                    stream.inbox.put_nowait(payload)
                if flags & FIN:
                    stream.inbox.put_nowait(b"")
                if flags & RST:
                    stream.reset = True
                    stream.window_open.set()
                    stream.inbox.put_nowait(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            for stream in self.streams.values():
                stream.reset = True
                stream.inbox.put_nowait(None)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# -- dRPC --------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def drpc_frame(kind: int, sid: int, mid: int, data: bytes = b"", done: bool = True) -> bytes:
    return bytes([kind << 1 | int(done)]) + varint(sid) + varint(mid) + varint(len(data)) + data


def drpc_metadata(pairs: dict[str, str]) -> bytes:
    def field(num: int, value: bytes) -> bytes:
        return bytes([num << 3 | 2]) + varint(len(value)) + value

    return b"".join(field(1, field(1, k.encode()) + field(2, v.encode())) for k, v in pairs.items())


class Call:
    """One dRPC call (drpc stream 1) on its own yamux stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.mid = 0
        self.buf = b""

    async def packet(self, kind: int, data: bytes = b"") -> None:
        self.mid += 1
        await self.stream.write(drpc_frame(kind, 1, self.mid, data))

    async def recv_packet(self) -> tuple[int, bytes] | None:
        """(kind, data) of the next whole packet; None at FIN."""
        parts: list[bytes] = []
        while True:
            frame = self._parse()
            if frame is None:
                chunk = await self.stream.read()
                if not chunk:
                    return None
                self.buf += chunk
                continue
            kind, done, data = frame
            parts.append(data)
            if done:
                return kind, b"".join(parts)

    def _parse(self) -> tuple[int, bool, bytes] | None:
        buf = self.buf
        if not buf:
            return None
        pos = 1
        values = []
        for _ in range(3):
            value, shift = 0, 0
            while True:
                if pos >= len(buf):
                    return None
                byte = buf[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            values.append(value)
        length = values[2]
        if len(buf) < pos + length:
            return None
        data = buf[pos : pos + length]
        self.buf = buf[pos + length :]
        return (buf[0] >> 1) & 0x3F, bool(buf[0] & 1), data

    async def recv(self) -> bytes | None:
        """The next message; None after the server's close-send."""
        packet = await self.recv_packet()
        if packet is None:
            raise SpecError(-1, "stream ended")
        kind, data = packet
        if kind == MESSAGE:
            return data
        if kind == CLOSE_SEND:
            return None
        if kind == ERROR:
            raise SpecError(struct.unpack(">Q", data[:8])[0], data[8:].decode())
        raise SpecError(-1, f"unexpected packet kind {kind}")


class SpecDRPCClient:
    def __init__(self, yamux: SpecYamuxClient, metadata: dict[str, str] | None = None) -> None:
        self.yamux = yamux
        self.metadata = metadata or {}

    async def start(self, rpc: str) -> Call:
        call = Call(await self.yamux.open())
        if self.metadata:
            await call.packet(INVOKE_METADATA, drpc_metadata(self.metadata))
        await call.packet(INVOKE, rpc.encode())
        return call

    async def unary(self, rpc: str, request: bytes) -> bytes:
        call = await self.start(rpc)
        await call.packet(MESSAGE, request)
        await call.packet(CLOSE_SEND)
        try:
            response = await call.recv()
            assert response is not None
            assert await call.recv() is None  # the server's close-send follows
            return response
        finally:
            await call.stream.close()

    async def server_stream(self, rpc: str, request: bytes) -> Call:
        call = await self.start(rpc)
        await call.packet(MESSAGE, request)
        await call.packet(CLOSE_SEND)
        return call
