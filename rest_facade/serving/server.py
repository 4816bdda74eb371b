"""The facade's HTTP/1.1 front: asyncio connections, h11 parsing, Flask on
worker threads.

Every connection is a small task on one event loop; no thread waits on a
client. A request is read whole — head within ``header_timeout`` of its first
byte, body within ``body_timeout``, at most ``max_body_bytes`` however it is
framed (413 otherwise) — before a worker thread runs the Flask app on it. An
idle keep-alive connection is closed after ``idle_timeout``. Answers are
written on the loop; a client that takes nothing for ``write_timeout`` is
dropped. A view can hand its connection to an async handler (exchange.py)
for WebSockets, Server-Sent Events, long polls and protocol upgrades.

Errors the front answers itself (a malformed, oversize or too slow request,
a full server) are Coder's JSON envelope like every other answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import logging
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h11
from wsproto.utilities import generate_accept_token

from rest_facade.coderjson import CONTENT_TYPE, dumps_bytes
from rest_facade.core import REQUEST_ID
from rest_facade.errors import envelope
from rest_facade.metrics import UNROUTED, FacadeMetrics, caller_kind, route_of
from rest_facade.serving import websocket as ws_mod
from rest_facade.serving.exchange import Exchange, Handoff, RawStream, Refused
from rest_facade.serving.wsgi import (
    REQUEST_ID_KEY,
    Answer,
    Header,
    Request,
    environ_for,
    run_app,
)

log = logging.getLogger(__name__)

READ_CHUNK = 64 << 10
# Buffered answer bytes above which a writer waits for the client to drain.
WRITE_BUFFER_HIGH = 256 << 10


@dataclasses.dataclass(frozen=True)
class Limits:
    """The front's bounds (settings: the ``http_*`` and facade fields)."""

    max_body_bytes: int = 4 << 20
    max_head_bytes: int = 64 << 10
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 60.0
    write_timeout: float = 10.0
    max_connections: int = 15_000
    threads: int = 64


class _Closed(Exception):
    """The client went away (or must be dropped); close without answering."""


def _http_date() -> bytes:
    return email.utils.formatdate(usegmt=True).encode()


class _DateCache:
    """The Date header changes once a second; format it once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, _http_date()
        return self._value


_date = _DateCache()


def _envelope_bytes(message: str, detail: str = "") -> bytes:
    return dumps_bytes(envelope(message, detail)) + b"\n"


class FrontServer:
    """Serves ``app`` (a WSGI callable, the Flask facade) on a listening
    socket. ``core`` is the async core client handed to handlers."""

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        core: Any,
        limits: Limits,
        metrics: FacadeMetrics | None = None,
    ) -> None:
        self.app = app
        self.core = core
        self.limits = limits
        self.metrics = metrics or FacadeMetrics()
        extensions = getattr(app, "extensions", None)
        if extensions is not None:
            # The facade's /metrics adds these to the core's.
            extensions["agentplane.metrics"] = self.metrics
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="facade")
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.websockets: set[ws_mod.WebSocket] = set()
        self._closing = False

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, sock: socket.socket) -> None:
        """Serves on an already bound, listening socket (the supervisor binds
        it, so a port in use fails before anything starts)."""
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._accept, sock=sock, limit=READ_CHUNK)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        if self._closing or len(self._connections) >= self.limits.max_connections:
            await connection.refuse_busy()
            return
        self._connections.add(connection)
        self.metrics.connections.inc()
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self.metrics.connections.dec()

    async def close(self, grace: float = 10.0) -> None:
        """Stops accepting, lets requests in progress finish (``grace``
        seconds), closes WebSockets with 1001 and every other connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close_when_idle()
        for websocket in list(self.websockets):
            with contextlib.suppress(Exception):
                await websocket.close(ws_mod.GOING_AWAY, "server shutting down")
        deadline = time.monotonic() + grace
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Connection:
    def __init__(
        self, server: FrontServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        self._task = asyncio.current_task()
        self._idle = True
        self._handing_off = False
        self._reusable = True
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        self.client = _address(peer)
        self.local = _address(local)

    # -- the request loop ---------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                self._idle = False
                keep = await self._dispatch(request)
                self._idle = True
                if not keep or self.server._closing:
                    return
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                else:
                    return
        except (_Closed, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection from %s failed", self.client)
        finally:
            self.writer.close()

    async def _read(self, timeout: float) -> bytes:
        """Up to READ_CHUNK bytes; b"" when the client closed or reset;
        TimeoutError after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(READ_CHUNK)
        except TimeoutError:
            raise
        except OSError:
            return b""

    async def _next_event(self, deadline: float, slow: tuple[int, str]) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                await self._refuse(err.error_status_hint, err)
                raise _Closed from None
            if event is not h11.NEED_DATA:
                return event
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                data = await self._read(remaining)
            except TimeoutError:
                await self._raw_error(*slow)
                raise _Closed from None
            if not data:
                raise _Closed
            self.h11.receive_data(data)

    async def _read_request(self) -> Request | None:
        loop = asyncio.get_running_loop()
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError as err:
            await self._refuse(err.error_status_hint, err)
            return None
        if event is h11.NEED_DATA:
            # Keep-alive: wait for a next request's first bytes this long.
            try:
                data = await self._read(self.limits.idle_timeout)
            except TimeoutError:
                return None
            if not data:
                return None
            self.h11.receive_data(data)
            event = await self._next_event(
                loop.time() + self.limits.header_timeout,
                (408, "Timed out reading the request headers."),
            )
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            return None
        headers = [(name.lower(), value) for name, value in event.headers]
        # h11 bounds a head still arriving; one that arrived whole in a
        # single read is measured here.
        if len(event.target) + sum(len(n) + len(v) + 4 for n, v in headers) > (
            self.limits.max_head_bytes
        ):
            await self._raw_error(431, "Request headers too large.")
            raise _Closed
        request = Request(
            method=event.method.decode("ascii", "replace"),
            target=event.target,
            http_version=event.http_version.decode("ascii", "replace"),
            headers=headers,
            body=b"",
            client=self.client,
            server=self.local,
        )
        request.body = await self._read_body(request)
        return request

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.header(b"content-length")
        if declared is not None and int(declared) > limit:
            await self._too_large()
            raise _Closed
        if self.h11.they_are_waiting_for_100_continue:
            self.writer.write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(deadline, (408, "Timed out reading the request body."))
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    # However the body is framed (chunked included): nothing
                    # of it reaches a view.
                    await self._too_large()
                    raise _Closed
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise _Closed

    # -- answering ------------------------------------------------------------

    async def _dispatch(self, request: Request) -> bool:
        """Runs the app (or its hand-off) for one request; whether the
        connection may serve another."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        rid = uuid.uuid4().hex[:16]
        REQUEST_ID.set(rid)
        environ = environ_for(request)
        environ[REQUEST_ID_KEY] = rid
        sink = self._sink(loop, request)
        status = 500
        keep = False
        long_lived = False
        route = UNROUTED
        try:
            try:
                answer: Answer = await loop.run_in_executor(
                    self.server._pool, run_app, self.server.app, environ, sink
                )
            except (_Closed, ConnectionError, TimeoutError):
                return False
            route = route_of(environ)
            # A hand-off may live for hours: keep nothing of the request it
            # does not need.
            del environ, sink
            status = answer.status
            if answer.handoff is not None:
                exchange = Exchange(self, request, self.server.core)
                self.server.metrics.stream_opened(route)
                try:
                    keep = await self._hand_off(answer.handoff, exchange)
                finally:
                    self.server.metrics.stream_closed(route)
                    status, long_lived = exchange.status or 499, exchange.long_lived
                return keep
            if answer.more:
                keep = not answer.close and self.h11.our_state is h11.DONE
                return keep
            await self.send_whole(answer.status, answer.headers, answer.body, request=request)
            keep = not answer.close
            return keep
        finally:
            self.server.metrics.answered(
                method=request.method,
                route=route,
                status=status,
                seconds=time.perf_counter() - started,
                kind=caller_kind(request.path_bytes.decode("latin-1"), request.has_credentials),
                request_id=rid,
                stream=long_lived,
            )

    def _sink(self, loop: asyncio.AbstractEventLoop, request: Request) -> Callable[..., None]:
        timeout = self.limits.write_timeout + 5

        def sink(piece: Answer | bytes | None) -> None:
            future = asyncio.run_coroutine_threadsafe(self._stream_piece(piece, request), loop)
            future.result(timeout)

        return sink

    async def _stream_piece(self, piece: Answer | bytes | None, request: Request) -> None:
        if isinstance(piece, Answer):
            await self.send_head(piece.status, piece.headers, request=request)
        elif piece is None:
            await self.send_end()
        else:
            await self.send_data(piece, request=request)

    async def _hand_off(self, handoff: Handoff, exchange: Exchange) -> bool:
        request = exchange.request
        self._handing_off = True
        try:
            await handoff.run(exchange)
        except (Refused, _Closed, ConnectionError, TimeoutError, ws_mod.ConnectionClosed):
            return False
        finally:
            self._handing_off = False
            handoff.done()
        if not exchange.answered:
            raise RuntimeError(f"the handler of {request.method} {request.target!r} never answered")
        # Only a plain answer leaves the connection usable for another request.
        return (
            self._reusable and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        )

    def _head(self, status: int, headers: list[Header]) -> list[Header]:
        return [*headers, (b"date", _date())]

    async def send_whole(
        self,
        status: int,
        headers: list[Header],
        body: bytes,
        *,
        request: Request | None = None,
    ) -> None:
        no_body = status in (204, 304) or (request is not None and request.method == "HEAD")
        if not any(name == b"content-length" for name, _ in headers) and not no_body:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        out = self.h11.send(h11.Response(status_code=status, headers=self._head(status, headers)))
        if body and not no_body:
            out += self.h11.send(h11.Data(data=body))
        out += self.h11.send(h11.EndOfMessage())
        await self._write(out)

    async def send_head(
        self, status: int, headers: list[Header], *, request: Request | None = None
    ) -> None:
        await self._write(
            self.h11.send(h11.Response(status_code=status, headers=self._head(status, headers)))
        )

    async def send_data(self, data: bytes, *, request: Request | None = None) -> None:
        if data and not (request is not None and request.method == "HEAD"):
            await self._write(self.h11.send(h11.Data(data=data)))

    async def send_end(self) -> None:
        await self._write(self.h11.send(h11.EndOfMessage()))

    async def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError("client gone")
        self.writer.write(data)
        async with asyncio.timeout(self.limits.write_timeout):
            await self.writer.drain()

    # -- upgrades -------------------------------------------------------------

    async def accept_websocket(
        self, request: Request, *, subprotocol: str | None = None, **options: Any
    ) -> ws_mod.WebSocket:
        key = request.header(b"sec-websocket-key")
        version = request.header(b"sec-websocket-version")
        if request.upgrade != "websocket" or key is None or version != b"13":
            # Coder's answer when websocket.Accept refuses a request.
            await self.send_whole(
                400,
                [(b"content-type", CONTENT_TYPE.encode()), (b"sec-websocket-version", b"13")],
                _envelope_bytes(
                    "Failed to accept websocket.",
                    "WebSocket protocol violation: the request must carry Connection: "
                    "Upgrade, Upgrade: websocket, a Sec-WebSocket-Key and "
                    "Sec-WebSocket-Version: 13.",
                ),
                request=request,
            )
            raise Refused
        headers = [(b"sec-websocket-accept", generate_accept_token(key))]
        offered = (request.header(b"sec-websocket-protocol") or b"").decode("latin-1")
        if subprotocol and subprotocol in (p.strip() for p in offered.split(",")):
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        initial = await self.switch_protocols_bytes("websocket", headers)
        websocket = ws_mod.WebSocket(
            self.reader,
            self.writer,
            initial=initial,
            write_timeout=self.limits.write_timeout,
            **options,
        )
        self.server.websockets.add(websocket)
        websocket_task = asyncio.current_task()

        def forget(_: Any = None) -> None:
            self.server.websockets.discard(websocket)

        if websocket_task is not None:
            websocket_task.add_done_callback(forget)
        return websocket

    async def switch_protocols_bytes(
        self, protocol: str, headers: list[Header], *, send: bool = True
    ) -> bytes:
        """Switches the connection to ``protocol`` (101, unless ``send`` is
        false: a client that starts talking at once, as DERP's fast start);
        the bytes already read past the request."""
        out = self.h11.send(
            h11.InformationalResponse(
                status_code=101,
                headers=[
                    (b"upgrade", protocol.encode()),
                    (b"connection", b"Upgrade"),
                    *headers,
                ],
            )
        )
        if send:
            await self._write(out)
        initial, _closed = self.h11.trailing_data
        return bytes(initial)

    async def switch_protocols(
        self, protocol: str, headers: list[Header], *, send: bool = True
    ) -> RawStream:
        initial = await self.switch_protocols_bytes(protocol, headers, send=send)
        return RawStream(self.reader, self.writer, initial, self.limits.write_timeout)

    async def wait_disconnected(self) -> None:
        while True:
            try:
                data = await self.reader.read(READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            # Bytes after the request (a pipelined one) were read here and
            # are lost: the connection cannot serve another request.
            self._reusable = False

    # -- refusals -------------------------------------------------------------

    async def _too_large(self) -> None:
        limit = self.limits.max_body_bytes
        await self._raw_error(
            413, "Request body too large.", f"Maximum request body size is {limit} bytes."
        )

    async def _refuse(self, status: int, err: Exception) -> None:
        if status == 431:
            await self._raw_error(431, "Request headers too large.")
        else:
            await self._raw_error(400, "Malformed HTTP request.", str(err))

    async def _raw_error(self, status: int, message: str, detail: str = "") -> None:
        """An answer written outside h11's state machine (the request could
        not be read), always closing the connection."""
        self.server.metrics.answered(
            method="-",
            route=UNROUTED,
            status=status,
            seconds=0.0,
            kind="anonymous",
            request_id="-",
        )
        body = _envelope_bytes(message, detail)
        reason = {
            400: b"Bad Request",
            408: b"Request Timeout",
            413: b"Request Entity Too Large",
            431: b"Request Header Fields Too Large",
            503: b"Service Unavailable",
        }.get(status, b"Error")
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"date: %s\r\nconnection: close\r\n\r\n"
            % (status, reason, CONTENT_TYPE.encode(), len(body), _date())
        )
        with contextlib.suppress(Exception):
            self.writer.write(head + body)
            async with asyncio.timeout(self.limits.write_timeout):
                await self.writer.drain()

    async def refuse_busy(self) -> None:
        try:
            await self._raw_error(503, "The server is at its connection limit; try again later.")
        finally:
            self.writer.close()

    def close_when_idle(self) -> None:
        if self._idle and not self._handing_off and self._task is not None:
            self._task.cancel()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.writer.transport.abort()


def _address(value: Any) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return (str(value or ""), 0)
