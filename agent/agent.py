"""The reference agent: what ``agentplane agent`` runs inside a workspace.

Startup, as Coder's agent: open the tunnel (which proves the token and
keeps the agent connected), fetch the manifest, ``UpdateStartup`` (version,
expanded directory, subsystems), lifecycle ``starting``, the startup scripts
(all at once), then ``ready``, ``start_error`` (a script failed) or
``start_timeout`` (a script timed out), then the cron schedules. Alongside:
metadata, app health, stats and resource monitoring.

Shutdown (SIGTERM or SIGINT): ``shutting_down``, the periodic work and the
terminals stop, the stop scripts run, then ``off``, ``shutdown_error`` or
``shutdown_timeout``; what is queued (lifecycle, logs, timings, connection
reports) is sent before the agent exits, for up to ``DRAIN_SECONDS``.

The lifecycle only moves forward (Coder's ``WorkspaceAgentLifecycleOrder``):
a state earlier than the current one is never reported.

Coordination (joining the coordinator as the agent peer, with a node on the
agent's service IP) arrives with the coordinator: ``_coordination`` is where
it starts, beside the tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from coder.agent.v2 import agent_pb2

from agent.apphealth import AppHealthReporter
from agent.containers import Containers
from agent.link import Backoff, CallFailed, Link, TokenRefused
from agent.metadata import MetadataReporter
from agent.outbox import MAX_CONNECTION_REPORTS, LogSender, OrderedSender
from agent.ports import ListeningPorts
from agent.pty import PtyManager
from agent.scripts import Outcome, ScriptRunner
from agent.stats import ResourceMonitor, StatsReporter
from agent.tunnel import TunnelClient
from agent.workspace import Workspace

log = logging.getLogger("agentplane.agent")

State = agent_pb2.Lifecycle.State
# Coder's codersdk.WorkspaceAgentLifecycleOrder.
LIFECYCLE_ORDER = (
    State.CREATED,
    State.STARTING,
    State.START_TIMEOUT,
    State.START_ERROR,
    State.READY,
    State.SHUTTING_DOWN,
    State.SHUTDOWN_TIMEOUT,
    State.SHUTDOWN_ERROR,
    State.OFF,
)
SUBSYSTEMS = {
    "envbox": agent_pb2.Startup.Subsystem.ENVBOX,
    "envbuilder": agent_pb2.Startup.Subsystem.ENVBUILDER,
    "exectrace": agent_pb2.Startup.Subsystem.EXECTRACE,
}
DRAIN_SECONDS = 15.0


def agent_version() -> str:
    """Semver with a leading v, as Coder's agents report theirs."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "v" + version("agentplane")
    except PackageNotFoundError:
        return "v0.0.0-devel"


class Lifecycle:
    def __init__(self, sender: OrderedSender) -> None:
        self._sender = sender
        self.state = State.CREATED
        self.reported = State.CREATED

    def set(self, state: int) -> bool:
        if LIFECYCLE_ORDER.index(state) <= LIFECYCLE_ORDER.index(self.state):
            log.warning(
                "not moving the lifecycle back from %s to %s",
                State.Name(self.state),
                State.Name(state),
            )
            return False
        self.state = state
        request = agent_pb2.UpdateLifecycleRequest(
            lifecycle=agent_pb2.Lifecycle(state=state, changed_at=_now())
        )

        def reported(_response: Any, state: int = state) -> None:
            self.reported = state

        self._sender.put("UpdateLifecycle", request, on_sent=reported)
        return True


def _now() -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.UTC))
    return ts


class Agent:
    def __init__(
        self,
        *,
        urls: list[str],
        token: str,
        pty_idle_timeout: float = 300.0,
        subsystems: tuple[str, ...] = (),
        log_dir: Path | None = None,
    ) -> None:
        self.token = token
        self.link = Link(urls, token)
        self.version = agent_version()
        self.subsystems = subsystems
        self.log_dir = log_dir or Path(tempfile.gettempdir())
        self.logs = LogSender(self.link)
        self.lifecycle_sender = OrderedSender(self.link, "lifecycle")
        self.timings = OrderedSender(self.link, "script timings")
        self.connections = OrderedSender(
            self.link, "connection reports", limit=MAX_CONNECTION_REPORTS
        )
        self.lifecycle = Lifecycle(self.lifecycle_sender)
        self.workspace: Workspace | None = None
        self.manifest: agent_pb2.Manifest | None = None
        self.scripts: ScriptRunner | None = None
        self.pty = PtyManager(
            lambda: self.workspace,
            idle_timeout=pty_idle_timeout,
            login_unblocked=self._login_unblocked,
            report=lambda r: self.connections.put("ReportConnection", r),
        )
        self.stats = StatsReporter(self.link, lambda: self.pty.connection_count)
        self.tunnel = TunnelClient(
            self.link,
            version=self.version,
            pty=self.pty,
            ports=ListeningPorts(),
            containers=Containers(),
        )
        self._fatal: asyncio.Future[BaseException] | None = None
        # Work that stops when shutdown begins; senders run to the end.
        self._periodic: list[asyncio.Task[Any]] = []
        self._senders: list[asyncio.Task[Any]] = []
        self._manifest_ready = asyncio.Event()
        # Why run() returned 1: TokenRefused, or what broke.
        self.failure: BaseException | None = None

    async def _login_unblocked(self) -> None:
        await self._manifest_ready.wait()
        if self.scripts is not None:
            await self.scripts.login_unblocked.wait()

    def _supervise(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled() or self._fatal is None or self._fatal.done():
                return
            err = t.exception()
            if err is not None:
                if not isinstance(err, TokenRefused):
                    log.error("agent task %s failed", name, exc_info=err)
                self._fatal.set_result(err)

        task.add_done_callback(done)
        return task

    async def run(self, stop: asyncio.Event) -> int:
        """Runs until ``stop`` is set (then shuts down: 0) or the token is
        refused (1)."""
        self._fatal = asyncio.get_running_loop().create_future()
        for coro, name in (
            (self.logs.run(), "logs"),
            (self.lifecycle_sender.run(), "lifecycle"),
            (self.timings.run(), "timings"),
            (self.connections.run(), "connections"),
        ):
            self._senders.append(self._supervise(coro, name))
        self._periodic.append(self._supervise(self.tunnel.run(), "tunnel"))
        self._periodic.append(self._supervise(self._start(), "startup"))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopping, self._fatal}, return_when=asyncio.FIRST_COMPLETED)
            if self._fatal.done():
                self.failure = self._fatal.result()
                await self._abort()
                return 1
            await self._shutdown()
            return 0
        finally:
            stopping.cancel()
            await self.link.close()

    async def _start(self) -> None:
        await self.tunnel.connected.wait()
        manifest = await self._call_until_ok("GetManifest", agent_pb2.GetManifestRequest())
        self.manifest = manifest
        workspace = Workspace(manifest, token=self.token)
        await self._call_until_ok(
            "UpdateStartup",
            agent_pb2.UpdateStartupRequest(
                startup=agent_pb2.Startup(
                    version=self.version,
                    expanded_directory=workspace.directory,
                    subsystems=[SUBSYSTEMS[s] for s in self.subsystems if s in SUBSYSTEMS],
                )
            ),
        )
        self.workspace = workspace
        self.scripts = ScriptRunner(
            workspace,
            list(manifest.scripts),
            logs=self.logs,
            timings=self.timings,
            log_dir=self.log_dir,
        )
        self._manifest_ready.set()
        self.lifecycle.set(State.STARTING)
        for coro, name in (
            (MetadataReporter(self.link, workspace, list(manifest.metadata)).run(), "metadata"),
            (AppHealthReporter(self.link, list(manifest.apps)).run(), "app health"),
            (self.stats.run(), "stats"),
            (ResourceMonitor(self.link).run(), "resources"),
            (self._coordination(), "coordination"),
        ):
            self._periodic.append(self._supervise(coro, name))
        outcome = await self.scripts.run_start()
        self.lifecycle.set(
            {
                Outcome.OK: State.READY,
                Outcome.FAILED: State.START_ERROR,
                Outcome.TIMED_OUT: State.START_TIMEOUT,
            }[outcome]
        )
        self.scripts.start_cron()

    async def _call_until_ok(self, method: str, request: Any) -> Any:
        """Startup calls the agent cannot go on without: an error answer
        (the server's database failing, say) is retried too, with backoff."""
        backoff = Backoff()
        while True:
            try:
                return await self.link.call(method, request)
            except CallFailed as err:
                log.warning("%s failed (%s); retrying", method, err)
                await asyncio.sleep(backoff.delay())

    async def _coordination(self) -> None:
        """Joins the coordinator as the agent peer once agentplane has one
        (its node's address is the agent's service IP); nothing to do yet."""

    async def _cancel_periodic(self) -> None:
        tasks, self._periodic = self._periodic, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _abort(self) -> None:
        """The token was refused: stop everything, nothing more to send."""
        await self._cancel_periodic()
        for task in self._senders:
            task.cancel()
        if self.scripts is not None:
            await self.scripts.stop_cron()
            await self.scripts.kill_running()
        self.pty.close_all()

    async def _shutdown(self) -> None:
        if self.manifest is None or self.scripts is None:
            await self._abort()
            return
        self.lifecycle.set(State.SHUTTING_DOWN)
        scripts = self.scripts
        await scripts.stop_cron()
        # The periodic work (and the startup scripts, if still running) stop;
        # the tunnel stays up for the stop scripts' time, like Coder's
        # remain-during-shutdown routines.
        tunnel_task = self._periodic.pop(0)
        await self._cancel_periodic()
        await scripts.kill_running()
        self.pty.close_all()
        outcome = await scripts.run_stop()
        self.lifecycle.set(
            {
                Outcome.OK: State.OFF,
                Outcome.FAILED: State.SHUTDOWN_ERROR,
                Outcome.TIMED_OUT: State.SHUTDOWN_TIMEOUT,
            }[outcome]
        )
        await self._drain()
        tunnel_task.cancel()
        for task in self._senders:
            task.cancel()

    async def _drain(self) -> None:
        async def everything() -> None:
            await self.logs.flushed()
            await self.timings.drained()
            await self.connections.drained()
            await self.lifecycle_sender.drained()

        try:
            await asyncio.wait_for(everything(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning("gave up sending queued reports after %.0f s", DRAIN_SECONDS)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
