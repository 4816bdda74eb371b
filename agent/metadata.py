"""Metadata: each of the manifest's metadata scripts runs at its interval with
its timeout; the latest results are reported with ``BatchUpdateMetadata``
once a second (Coder's agent: a 1 s collect/report tick, a key whose last
value is younger than its interval is skipped, interval 0 collects once,
output beyond 10 KiB is cut with an error saying so, timeout 0 means the
interval, else 5 s). Values are replaceable, so only the newest per key waits
while the server is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from coder.agent.v2 import agent_pb2

from agent.link import CallFailed, Link
from agent.workspace import Workspace

log = logging.getLogger("agentplane.agent")

TICK_SECONDS = 1.0
OUTPUT_LIMIT = 10 << 10
DEFAULT_TIMEOUT = 5


def _seconds(d: object) -> int:
    return int(d.seconds)  # type: ignore[attr-defined]


async def collect(workspace: Workspace, script: str, timeout: float) -> tuple[str, str]:
    """(value, error) of one run of a metadata script."""
    try:
        proc = await asyncio.create_subprocess_exec(
            workspace.shell,
            "-c",
            script,
            cwd=workspace.cwd(),
            env=workspace.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as err:
        return "", f"start cmd: {err}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return "", "run cmd: context deadline exceeded"
    errors = []
    if proc.returncode:
        errors.append(f"exit status {proc.returncode}")
    if len(out) > OUTPUT_LIMIT:
        errors.append(f"output truncated from {len(out)} to {OUTPUT_LIMIT} bytes")
        out = out[:OUTPUT_LIMIT]
    value = out.decode("utf-8", "replace")
    return value, ("run cmd: " + "\n".join(errors)) if errors else ""


class MetadataReporter:
    def __init__(
        self, link: Link, workspace: Workspace, descriptions: list[agent_pb2.Metadata]
    ) -> None:
        self._link = link
        self._workspace = workspace
        self._descriptions = descriptions
        self._collected: dict[str, float] = {}
        self._running: set[str] = set()
        self._pending: dict[str, agent_pb2.WorkspaceAgentMetadata.Result] = {}
        self.reports = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _collect(self, md: agent_pb2.WorkspaceAgentMetadata.Description) -> None:
        interval = _seconds(md.interval)
        timeout = _seconds(md.timeout) or interval or DEFAULT_TIMEOUT
        started = dt.datetime.now(dt.UTC)
        try:
            value, error = await collect(self._workspace, md.script, timeout)
        finally:
            self._running.discard(md.key)
        result = agent_pb2.WorkspaceAgentMetadata.Result(value=value, error=error)
        result.collected_at.FromDatetime(started)
        self._pending[md.key] = result

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Task[None] | None = None
        while True:
            now = loop.time()
            for md in self._descriptions:
                last = self._collected.get(md.key)
                interval = _seconds(md.interval)
                if md.key in self._running:
                    continue
                if last is not None and (interval == 0 or now - last < interval):
                    continue
                self._collected[md.key] = now
                self._running.add(md.key)
                task = asyncio.create_task(self._collect(md))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._pending and (in_flight is None or in_flight.done()):
                batch, self._pending = self._pending, {}
                in_flight = asyncio.create_task(self._report(batch))
            await asyncio.sleep(TICK_SECONDS)

    async def _report(self, batch: dict[str, agent_pb2.WorkspaceAgentMetadata.Result]) -> None:
        request = agent_pb2.BatchUpdateMetadataRequest(
            metadata=[agent_pb2.Metadata(key=k, result=r) for k, r in batch.items()]
        )
        try:
            await self._link.call("BatchUpdateMetadata", request)
            self.reports += 1
        except CallFailed as err:
            log.warning("metadata report refused: %s", err)
