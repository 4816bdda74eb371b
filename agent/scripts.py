"""The manifest's scripts: ``run_on_start`` (all at once, at startup),
``run_on_stop`` (at shutdown) and ``cron`` schedules (after startup), each
in the agent's directory with its environment, through the user's shell.

As Coder's agent (``agent/agentscripts``): stdout lines are logged at info
and stderr lines at error under the script's log source, and also written to
the script's log file; a script that outlives its timeout is stopped
(SIGTERM to its process group, SIGKILL 5 s later) and counts as timed out
(exit code 255); one that exits but leaves its output pipes open (a
background child kept them) is reported as such after 10 s. Every run ends
with a ``ScriptCompleted`` timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coder.agent.v2 import agent_pb2
from google.protobuf import timestamp_pb2

from agent.cron import CronError, Schedule
from agent.outbox import ERROR, INFO, LogSender, OrderedSender
from agent.workspace import Workspace

log = logging.getLogger("agentplane.agent")

Timing = agent_pb2.Timing
# Coder's WaitDelay: how long a script's output may stay open after it exits.
PIPES_WAIT_SECONDS = 10.0
KILL_AFTER_SECONDS = 5.0
UNKNOWN_EXIT = 255


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


def _timestamp(t: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


async def _pump(
    stream: asyncio.StreamReader, write: Callable[[str], None], file: Any | None
) -> None:
    while True:
        try:
            line = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as partial:
            line = partial.partial
            if not line:
                return
        except asyncio.LimitOverrunError as over:
            line = await stream.readexactly(over.consumed)
        if file is not None:
            with contextlib.suppress(OSError):
                file.write(line)
                file.flush()
        write(line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace"))


class ScriptRunner:
    def __init__(
        self,
        workspace: Workspace,
        scripts: list[agent_pb2.WorkspaceAgentScript],
        *,
        logs: LogSender,
        timings: OrderedSender,
        log_dir: Path,
    ) -> None:
        self._workspace = workspace
        self._scripts = scripts
        self._logs = logs
        self._timings = timings
        self._log_dir = log_dir
        self._cron_tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.subprocess.Process] = set()
        # Set once the startup scripts that block login are done.
        self.login_unblocked = asyncio.Event()
        if not any(s.run_on_start and s.start_blocks_login for s in scripts):
            self.login_unblocked.set()

    async def run(self, script: agent_pb2.WorkspaceAgentScript, stage: int) -> Outcome:
        source = uuid.UUID(bytes=script.log_source_id) if script.log_source_id else uuid.UUID(int=0)
        timeout = script.timeout.seconds + script.timeout.nanos / 1e9
        started = dt.datetime.now(dt.UTC)
        log_file = self._open_log(script, source)
        exit_code, outcome, status = UNKNOWN_EXIT, Outcome.FAILED, Timing.Status.EXIT_FAILURE
        try:
            proc = await asyncio.create_subprocess_exec(
                self._workspace.shell,
                "-c",
                script.script,
                cwd=self._workspace.cwd(),
                env=self._workspace.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            self._logs.write(source, f"agentplane agent: cannot start the script: {err}", ERROR)
        else:
            self._running.add(proc)
            assert proc.stdout is not None and proc.stderr is not None
            readers = asyncio.gather(
                _pump(proc.stdout, lambda s: self._logs.write(source, s, INFO), log_file),
                _pump(proc.stderr, lambda s: self._logs.write(source, s, ERROR), log_file),
            )
            try:
                exit_code, outcome, status = await self._wait(proc, readers, timeout)
            finally:
                self._running.discard(proc)
                if not readers.done():
                    readers.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await readers
        finally:
            if log_file is not None:
                log_file.close()
        ended = dt.datetime.now(dt.UTC)
        if script.id:
            self._timings.put(
                "ScriptCompleted",
                agent_pb2.WorkspaceAgentScriptCompletedRequest(
                    timing=Timing(
                        script_id=script.id,
                        start=_timestamp(started),
                        end=_timestamp(ended),
                        exit_code=exit_code,
                        stage=stage,
                        status=status,
                    )
                ),
            )
        # Coder flushes a script's logs when it ends, before its result counts.
        await self._logs.flushed(source, timeout=10)
        return outcome

    async def _wait(
        self, proc: asyncio.subprocess.Process, readers: asyncio.Future[Any], timeout: float
    ) -> tuple[int, Outcome, int]:
        try:
            await asyncio.wait_for(proc.wait(), timeout or None)
        except TimeoutError:
            await self._stop(proc)
            return UNKNOWN_EXIT, Outcome.TIMED_OUT, Timing.Status.TIMED_OUT
        try:
            await asyncio.wait_for(asyncio.shield(readers), PIPES_WAIT_SECONDS)
        except TimeoutError:
            return UNKNOWN_EXIT, Outcome.FAILED, Timing.Status.PIPES_LEFT_OPEN
        code = proc.returncode or 0
        if code != 0:
            return code, Outcome.FAILED, Timing.Status.EXIT_FAILURE
        return 0, Outcome.OK, Timing.Status.OK

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_AFTER_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def _open_log(self, script: agent_pb2.WorkspaceAgentScript, source: uuid.UUID) -> Any:
        path = script.log_path or f"coder-script-{source}.log"
        path = os.path.expandvars(os.path.expanduser(path))
        full = Path(path) if os.path.isabs(path) else self._log_dir / path
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            return open(full, "ab")
        except OSError as err:
            log.warning("cannot open script log %s: %s", full, err)
            return None

    async def _run_all(self, scripts: list[Any], stage: int) -> Outcome:
        outcomes = await asyncio.gather(*(self.run(s, stage) for s in scripts))
        if Outcome.TIMED_OUT in outcomes:
            return Outcome.TIMED_OUT
        if Outcome.FAILED in outcomes:
            return Outcome.FAILED
        return Outcome.OK

    async def run_start(self) -> Outcome:
        start = [s for s in self._scripts if s.run_on_start]
        blocking = [s for s in start if s.start_blocks_login]
        others = [s for s in start if not s.start_blocks_login]

        async def blocking_first() -> Outcome:
            try:
                return await self._run_all(blocking, Timing.Stage.START)
            finally:
                self.login_unblocked.set()

        results = await asyncio.gather(blocking_first(), self._run_all(others, Timing.Stage.START))
        for outcome in (Outcome.TIMED_OUT, Outcome.FAILED):
            if outcome in results:
                return outcome
        return Outcome.OK

    async def run_stop(self) -> Outcome:
        return await self._run_all([s for s in self._scripts if s.run_on_stop], Timing.Stage.STOP)

    def start_cron(self) -> None:
        for script in self._scripts:
            if not script.cron:
                continue
            try:
                schedule = Schedule.parse(script.cron)
            except CronError as err:
                log.warning("script %r: bad cron %r: %s", script.display_name, script.cron, err)
                continue
            self._cron_tasks.append(asyncio.create_task(self._cron(script, schedule)))

    async def _cron(self, script: agent_pb2.WorkspaceAgentScript, schedule: Schedule) -> None:
        running: asyncio.Task[Outcome] | None = None
        while True:
            now = dt.datetime.now()
            due = schedule.next_after(now)
            await asyncio.sleep((due - now).total_seconds())
            # One run at a time per script, as robfig's SkipIfStillRunning would.
            if running is None or running.done():
                running = asyncio.create_task(self.run(script, Timing.Stage.CRON))

    async def stop_cron(self) -> None:
        for task in self._cron_tasks:
            task.cancel()
        for task in self._cron_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cron_tasks.clear()

    async def kill_running(self) -> None:
        await asyncio.gather(*(self._stop(p) for p in list(self._running)))
