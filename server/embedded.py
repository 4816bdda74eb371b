"""Runs the gRPC core on a background thread's event loop, so synchronous
programs (tests, benchmarks) can embed a real core listening on port 0."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from server.app import Core, create_server, drain, mark_not_serving, mark_serving
from server.clock import Clock
from server.config import Settings
from server.storage.db import Database


class EmbeddedCore:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        admin_token: str,
        listen: tuple[str, ...] = ("127.0.0.1:0",),
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.admin_token = admin_token
        self._listen = listen
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="agentplane-core"
        )
        self.core: Core | None = None

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self.core = create_server(
            self.settings, self.db, self.clock, admin_token=self.admin_token, listen=self._listen
        )
        await self.db.pubsub.start()
        await self.core.server.start()
        await self.core.start_background()
        await mark_serving(self.core)

    def start(self) -> EmbeddedCore:
        self._thread.start()
        self._run(self._start())
        return self

    @property
    def address(self) -> str:
        """The first listen address with its bound port (``host:port``)."""
        assert self.core is not None
        asked, port = next(iter(self.core.ports.items()))
        if asked.startswith("unix:"):
            return asked
        return f"{asked.rpartition(':')[0]}:{port}"

    def stop(self, grace: float | None = None) -> None:
        if self.core is not None:
            self._run(mark_not_serving(self.core))
            self._run(self.core.stop_background())
            self._run(self.core.server.stop(grace))
            self._run(drain(self.core))
            self._run(self.db.pubsub.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        # With the loop stopped nothing uses the writer's or the loop's kept
        # connections any more, so they can be closed from this thread.
        if self.core is not None:
            self.core.close()
        self.db.close_pinned()
        self._loop.close()

    def __enter__(self) -> EmbeddedCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
