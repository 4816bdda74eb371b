"""The core's health (``grpc.health.v1.Health``): SERVING while the database
answers, NOT_SERVING while it does not.

A probe (``SELECT 1`` on a pooled connection, off the event loop) runs every
PROBE_INTERVAL_SECONDS and may take at most PROBE_TIMEOUT_SECONDS; a probe
that fails or runs over marks every service NOT_SERVING until one succeeds
again. The facade's ``/healthz`` asks this service (with a short deadline),
so it is non-200 when either the core or its database is unreachable; its
``/healthz/live`` only says the facade process is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2

from server.storage.db import Database

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def probe_database(db: Database) -> None:
    """One cheap round trip; raises when the database does not answer."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").close()


class DatabaseHealth:
    """Keeps the health service's statuses in step with the database."""

    def __init__(
        self,
        db: Database,
        servicer: health.aio.HealthServicer,
        services: Iterable[str],
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self._db = db
        self._servicer = servicer
        self._services = ("", *services)
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Future[None] | None = None
        self.serving: bool | None = None

    async def check(self) -> bool:
        """Probes once (or joins a probe still running) and publishes the
        result; True when the database answered in time."""
        loop = asyncio.get_running_loop()
        if self._probe is None or self._probe.done():
            self._probe = loop.run_in_executor(None, probe_database, self._db)
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self._timeout)
        except Exception as err:
            ok = False
            if self.serving is not False:
                log.warning("the database does not answer (%s); health is NOT_SERVING", err)
        else:
            ok = True
            if self.serving is False:
                log.info("the database answers again; health is SERVING")
        if ok != self.serving:
            self.serving = ok
            for name in self._services:
                await self._servicer.set(name, SERVING if ok else NOT_SERVING)
        return ok

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="database-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # publishing failed (shutting down): next turn
                log.debug("health probe failed", exc_info=True)
