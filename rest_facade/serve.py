"""Runs the facade (``python -m rest_facade.serve``): the asyncio front of
``rest_facade/serving`` with the Flask app on worker threads.

The supervisor (``agentplane server``) binds the REST port itself and passes
the listening socket down as ``AGENTPLANE_FACADE_LISTEN_FD``, so a port in use
fails before anything starts; run alone, the facade binds
``--http-address`` itself. Settings come from AGENTPLANE_* like the core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import threading
from collections.abc import Iterator

from rest_facade.core import AsyncCoreClient
from rest_facade.serving.server import FrontServer, Limits
from server.config import Settings, load_settings

LISTEN_FD_ENV = "AGENTPLANE_FACADE_LISTEN_FD"
log = logging.getLogger("agentplane.facade")


def limits_for(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        idle_timeout=settings.http_idle_timeout_seconds,
        write_timeout=settings.http_write_timeout_seconds,
        max_connections=settings.http_max_connections,
        threads=settings.facade_threads,
    )


def bind(address: str) -> socket.socket:
    """A listening socket on HOST:PORT (SO_REUSEADDR, never SO_REUSEPORT: a
    second server on the same port fails instead of sharing it)."""
    from server.exclusive import bind_listener

    return bind_listener(address, "REST facade")


def listening_socket(settings: Settings) -> socket.socket:
    fd = os.environ.get(LISTEN_FD_ENV)
    if fd:
        return socket.socket(fileno=int(fd))
    return bind(settings.http_address)


def raise_file_limit() -> None:
    """Every connection is a descriptor: take the hard limit the OS allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def start_front(
    settings: Settings, sock: socket.socket, core_address: str | None = None
) -> FrontServer:
    from rest_facade import create_app
    from rest_facade.core import CoreClient

    address = core_address or settings.effective_core_address
    app = create_app(settings, client=CoreClient(address))
    front = FrontServer(app, core=AsyncCoreClient(address), limits=limits_for(settings))
    await front.start(sock)
    return front


async def stop_front(front: FrontServer, grace: float = 10.0) -> None:
    await front.close(grace)
    await front.core.close_shared()
    await front.core.close()
    client = front.app.extensions.get("agentplane.core")  # type: ignore[attr-defined]
    if client is not None:
        client.close()


async def _serve(settings: Settings) -> None:
    raise_file_limit()
    front = await start_front(settings, listening_socket(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_front(front)


class FrontThread:
    """The facade on a background thread's event loop, listening on port 0
    (or ``sock``), for tests and benchmarks: ``url`` is its base URL."""

    def __init__(
        self,
        settings: Settings,
        *,
        core_address: str | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self._core_address = core_address
        self._sock = sock or bind("127.0.0.1:0")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="facade-front"
        )
        self.front: FrontServer | None = None

    def start(self) -> FrontThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_front(self.settings, self._sock, self._core_address), self._loop
        )
        self.front = future.result(30)
        return self

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self, coro: object, timeout: float = 30) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, grace: float = 2.0) -> None:
        if self.front is not None:
            self.run(stop_front(self.front, grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._sock.close()


@contextlib.contextmanager
def running_front(settings: Settings, core_address: str | None = None) -> Iterator[FrontThread]:
    front = FrontThread(settings, core_address=core_address).start()
    try:
        yield front
    finally:
        front.stop()


def serve_wsgi(app: object, address: str) -> None:
    """Serves any WSGI app on the front until SIGTERM/SIGINT (the benchmarks'
    baselines run on the same server as the facade)."""

    async def run() -> None:
        raise_file_limit()
        front = FrontServer(app, core=AsyncCoreClient("unix:/nonexistent"), limits=Limits())  # type: ignore[arg-type]
        await front.start(bind(address))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await front.close(2.0)

    asyncio.run(run())


def main() -> None:
    from server.logconfig import configure_logging

    settings = load_settings()
    configure_logging(settings.log_format)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
