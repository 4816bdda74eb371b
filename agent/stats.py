"""Periodic reports: stats every ``report_interval`` (the server's answer to
an empty ``UpdateStats``, re-read from every answer), with the counts of
open terminal connections; and resource usage per
``GetResourcesMonitoringConfiguration`` (memory from /proc/meminfo, volumes
from statvfs), sampled every collection interval and pushed as they are
taken (at most ``num_datapoints`` wait while the server is away).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import os
from collections.abc import Callable

from coder.agent.v2 import agent_pb2

from agent.link import CallFailed, Link

log = logging.getLogger("agentplane.agent")

Datapoint = agent_pb2.PushResourcesMonitoringUsageRequest.Datapoint


class StatsReporter:
    def __init__(self, link: Link, terminal_connections: Callable[[], int]) -> None:
        self._link = link
        self._terminals = terminal_connections
        self.interval = 30.0
        self.reports = 0

    def stats(self) -> agent_pb2.Stats:
        terminals = self._terminals()
        return agent_pb2.Stats(
            connection_count=terminals,
            connections_by_proto={"reconnecting-pty": terminals} if terminals else {},
            # No tailnet peers to ping: Coder reports -1 then.
            connection_median_latency_ms=-1,
            session_count_reconnecting_pty=terminals,
        )

    async def run(self) -> None:
        response = await self._link.call("UpdateStats", agent_pb2.UpdateStatsRequest())
        self._take_interval(response)
        while True:
            await asyncio.sleep(self.interval)
            try:
                response = await self._link.call(
                    "UpdateStats", agent_pb2.UpdateStatsRequest(stats=self.stats())
                )
            except CallFailed as err:
                log.warning("stats report refused: %s", err)
                continue
            self.reports += 1
            self._take_interval(response)

    def _take_interval(self, response: agent_pb2.UpdateStatsResponse) -> None:
        seconds = response.report_interval.seconds + response.report_interval.nanos / 1e9
        # Zero would spin; Coder's agent keeps its previous interval then.
        if seconds > 0:
            self.interval = seconds


def memory_usage() -> tuple[int, int] | None:
    """(used, total) bytes."""
    values = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    total = values.get("MemTotal")
    available = values.get("MemAvailable")
    if total is None or available is None:
        return None
    return total - available, total


def volume_usage(path: str) -> tuple[int, int] | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize
    return total - st.f_bfree * st.f_frsize, total


class ResourceMonitor:
    def __init__(self, link: Link) -> None:
        self._link = link
        self.pushes = 0

    async def run(self) -> None:
        config = await self._link.call(
            "GetResourcesMonitoringConfiguration",
            agent_pb2.GetResourcesMonitoringConfigurationRequest(),
        )
        memory = config.HasField("memory") and config.memory.enabled
        volumes = [v.path for v in config.volumes if v.enabled]
        if not memory and not volumes:
            return
        interval = max(config.config.collection_interval_seconds, 1)
        window = max(config.config.num_datapoints, 1)
        queue: collections.deque[Datapoint] = collections.deque(maxlen=window)
        while True:
            await asyncio.sleep(interval)
            point = Datapoint()
            point.collected_at.FromDatetime(dt.datetime.now(dt.UTC))
            if memory and (used_total := memory_usage()) is not None:
                point.memory.used, point.memory.total = used_total
            for path in volumes:
                if (usage := volume_usage(path)) is not None:
                    point.volumes.add(volume=path, used=usage[0], total=usage[1])
            queue.append(point)
            batch = list(queue)
            try:
                await self._link.call(
                    "PushResourcesMonitoringUsage",
                    agent_pb2.PushResourcesMonitoringUsageRequest(datapoints=batch),
                )
            except CallFailed as err:
                log.warning("resource usage push refused: %s", err)
            for _ in batch:
                queue.popleft()
            self.pushes += 1
