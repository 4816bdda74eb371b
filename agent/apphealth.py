"""App health: Coder's rules (``agent/apphealth.go``). For every app with a
healthcheck URL, an interval and a threshold, an HTTP GET every interval
with a timeout of the interval less a millisecond; any status below 500 is a
success. One success makes the app healthy and resets the failure count;
failures count up to the threshold, and the failure that comes when the
count is already there makes it unhealthy (so the app turns unhealthy on the
threshold+1-th consecutive failure). Apps start initializing. Once a second,
if any app's health changed, every app's health is sent with
``BatchUpdateAppHealths``.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request

from coder.agent.v2 import agent_pb2

from agent.link import CallFailed, Link

log = logging.getLogger("agentplane.agent")

REPORT_SECONDS = 1.0
Health = agent_pb2.AppHealth


def _duration(d: object) -> float:
    return d.seconds + d.nanos / 1e9  # type: ignore[attr-defined]


def probe(url: str, timeout: float) -> bool:
    """One healthcheck (blocking; run on a worker thread)."""
    if not url.lower().startswith(("http://", "https://")):
        return False  # Coder's checker speaks HTTP only
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError):
        return False


class AppHealthReporter:
    def __init__(self, link: Link, apps: list[agent_pb2.WorkspaceApp]) -> None:
        self._link = link
        self._apps = [
            a
            for a in apps
            if a.healthcheck.url
            and _duration(a.healthcheck.interval) > 0
            and a.healthcheck.threshold > 0
        ]
        self.health: dict[bytes, int] = {a.id: Health.INITIALIZING for a in self._apps}
        self._failures: dict[bytes, int] = {a.id: 0 for a in self._apps}
        self._changed = False

    def _record(self, app: agent_pb2.WorkspaceApp, ok: bool) -> None:
        before = self.health[app.id]
        if ok:
            self._failures[app.id] = 0
            self.health[app.id] = Health.HEALTHY
        elif self._failures[app.id] < app.healthcheck.threshold:
            self._failures[app.id] += 1
        else:
            self.health[app.id] = Health.UNHEALTHY
        if self.health[app.id] != before:
            self._changed = True

    async def _check(self, app: agent_pb2.WorkspaceApp) -> None:
        interval = _duration(app.healthcheck.interval)
        timeout = max(interval - 0.001, 0.001)
        while True:
            await asyncio.sleep(interval)
            ok = await asyncio.to_thread(probe, app.healthcheck.url, timeout)
            self._record(app, ok)

    async def run(self) -> None:
        if not self._apps:
            return
        checkers = [asyncio.create_task(self._check(app)) for app in self._apps]
        try:
            while True:
                await asyncio.sleep(REPORT_SECONDS)
                if not self._changed:
                    continue
                self._changed = False
                request = agent_pb2.BatchUpdateAppHealthRequest(
                    updates=[
                        agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate(id=app_id, health=h)
                        for app_id, h in self.health.items()
                    ]
                )
                try:
                    await self._link.call("BatchUpdateAppHealths", request)
                except CallFailed as err:
                    log.warning("app health report refused: %s", err)
        finally:
            for task in checkers:
                task.cancel()
