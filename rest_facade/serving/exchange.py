"""Handing a connection from a Flask view to an async handler.

A view that serves a long-lived connection (a WebSocket, Server-Sent Events,
a long poll, a raw protocol upgrade) parses and validates the request as any
view does, then returns ``Handoff(run)``. The worker thread is free at once;
the front then awaits ``run(exchange)`` on its event loop, where the handler
talks to the core with grpc.aio and answers through the ``Exchange``: a plain
answer (an error before any upgrade, in Coder's envelope), a WebSocket, a
streamed body, or the raw byte stream of an upgrade. A thousand open streams
cost a thousand small tasks, not a thousand threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
from flask import Response

from rest_facade.coderjson import CONTENT_TYPE, dumps_bytes
from rest_facade.errors import WWW_AUTHENTICATE, envelope, from_rpc_error
from rest_facade.serving.wsgi import HANDOFF_KEY, Header, Request

if TYPE_CHECKING:
    from rest_facade.core import AsyncCoreClient
    from rest_facade.serving.websocket import WebSocket

Run = Callable[["Exchange"], Awaitable[None]]
# Server-Sent Events as coderd's ServerSentEventSender answers them.
SSE_HEADERS: tuple[Header, ...] = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class Handoff(Response):
    """What a view returns to give its connection to ``run``; ``on_done``
    runs when the handler has finished (or if it never ran), on the event
    loop's thread (e.g. to give a stream slot back)."""

    def __init__(self, run: Run, *, on_done: Callable[[], None] | None = None) -> None:
        super().__init__(status=200)
        self.run = run
        self.on_done = on_done

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[HANDOFF_KEY] = self
        start_response("200 OK", [])
        return []

    def done(self) -> None:
        callback, self.on_done = self.on_done, None
        if callback is not None:
            callback()


class Refused(Exception):
    """The request cannot be served as asked (a bad WebSocket handshake);
    the answer has been sent."""


class Exchange:
    """The connection as an async handler sees it. The methods that answer
    (``respond*``, ``websocket``, ``stream``, ``upgrade``) may be called
    once, and one of them must be."""

    def __init__(self, connection: Any, request: Request, core: AsyncCoreClient) -> None:
        self._connection = connection
        self.request = request
        self.core = core
        self.answered = False
        # What the handler answered (for the access log): the status, and
        # whether the answer stayed open (a WebSocket, a stream, an upgrade).
        self.status = 0
        self.long_lived = False

    # -- plain answers ------------------------------------------------------

    async def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = CONTENT_TYPE,
        headers: Iterable[Header] = (),
    ) -> None:
        self._answering(status)
        head = [(b"content-type", content_type.encode()), *headers]
        await self._connection.send_whole(status, head, body)

    async def respond_json(self, status: int, body: Any, headers: Iterable[Header] = ()) -> None:
        await self.respond(status, dumps_bytes(body) + b"\n", headers=headers)

    async def respond_error(
        self, status: int, message: str, detail: str = "", validations: Any = ()
    ) -> None:
        await self.respond_json(status, envelope(message, detail, validations))

    async def respond_rpc_error(self, err: grpc.RpcError) -> None:
        status, body = from_rpc_error(err)
        headers = [(b"www-authenticate", WWW_AUTHENTICATE.encode())] if status == 401 else []
        await self.respond_json(status, body, headers)

    # -- long-lived answers -------------------------------------------------

    async def websocket(self, **options: Any) -> WebSocket:
        """Completes the WebSocket handshake (or answers 400 in Coder's
        envelope and raises Refused). ``options`` go to WebSocket."""
        self._answering(101, long_lived=True)
        return await self._connection.accept_websocket(self.request, **options)

    async def stream(self, status: int, headers: Iterable[Header]) -> Stream:
        """Starts a streamed answer (chunked): ``send`` pieces, then ``end``."""
        self._answering(status, long_lived=True)
        await self._connection.send_head(status, list(headers))
        return Stream(self._connection)

    async def upgrade(
        self, protocol: str, headers: Iterable[Header] = (), *, send: bool = True
    ) -> RawStream:
        """Answers 101 Switching Protocols to ``protocol`` (or, with
        ``send=False``, switches without a word, for a client that does not
        wait for it) and returns the connection's byte stream."""
        self._answering(101, long_lived=True)
        return await self._connection.switch_protocols(protocol, list(headers), send=send)

    async def wait_disconnected(self) -> None:
        """Returns when the client has gone (for answers that only write)."""
        await self._connection.wait_disconnected()

    def _answering(self, status: int, *, long_lived: bool = False) -> None:
        if self.answered:
            raise RuntimeError("this request has already been answered")
        self.answered = True
        self.status = status
        self.long_lived = long_lived


class Stream:
    """A streamed (chunked) answer body."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def send(self, data: bytes) -> None:
        """Raises ConnectionError when the client is gone or stopped reading
        for the write timeout."""
        await self._connection.send_data(data)

    async def end(self) -> None:
        await self._connection.send_end()


class RawStream:
    """The byte stream after a protocol switch: ``read`` (b"" at the end),
    ``write`` (bounded by the write timeout), ``close``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: bytes,
        write_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._initial = initial
        self._write_timeout = write_timeout

    async def read(self, max_bytes: int = 64 << 10) -> bytes:
        if self._initial:
            data, self._initial = self._initial[:max_bytes], self._initial[max_bytes:]
            return data
        try:
            return await self._reader.read(max_bytes)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("connection closed")
        self._writer.write(data)
        async with asyncio.timeout(self._write_timeout):
            await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
