"""Reconnecting terminals (Coder's buffered backend, ``agent/reconnectingpty``).

A session is a command (the user's login shell by default) on a pseudo
terminal, named by the reconnect id its first client chose. Its output goes
into a ring buffer (``RING_BYTES``, the scrollback replayed to every client
that attaches) and to the attached clients; it lives on with no client for
the idle timeout (``--pty-idle-timeout``, 5 minutes), then it is closed; it
ends when its command exits, which ends every attachment once its client
has received the last output.

Flow control: each attachment sends output only against the core's credit
(``OUTPUT_WINDOW`` in flight). The terminal's output keeps being read while
any attached client keeps up; only when *every* attached client is a full
ring behind does reading pause (the command then blocks on its writes, as on
a real terminal). A client that falls further behind than the ring skips to
what the ring still holds. One stuck client therefore never stalls another
session, another client of the same session (once the ring is past it), or
the tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
import uuid
from collections.abc import Callable
from typing import Any

from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from coder.agent.v2 import agent_pb2
from google.protobuf import timestamp_pb2

from agent.workspace import Workspace

log = logging.getLogger("agentplane.agent")

RING_BYTES = 256 << 10  # Coder's buffered backend keeps 64 KiB
OUTPUT_WINDOW = 256 << 10  # the core's credit per attachment (server/tunnel)
FRAME_BYTES = 64 << 10
READ_BYTES = 64 << 10
MAX_SESSIONS = 64
MAX_SIZE = 65535
KILL_AFTER_SECONDS = 3.0


def _timestamp(t: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def _controlling_terminal() -> None:
    # Runs in the child after setsid(): make the terminal (now fd 0) the
    # session's controlling terminal, so job control and ^C work.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Ring:
    """The last ``capacity`` bytes of a stream, addressed by absolute offset."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self.total = 0  # bytes ever written

    @property
    def start(self) -> int:
        return self.total - len(self._buf)

    def write(self, data: bytes) -> None:
        self._buf += data
        self.total += len(data)
        if len(self._buf) > self.capacity:
            del self._buf[: len(self._buf) - self.capacity]

    def read(self, offset: int, limit: int) -> bytes:
        begin = max(offset, self.start) - self.start
        return bytes(self._buf[begin : begin + limit])


class Attachment:
    """One client of a session, reached through one tunnel request."""

    def __init__(self, session: Session, request_id: int, send: Callable[[Any], None]) -> None:
        self.session = session
        self.request_id = request_id
        self._send = send
        self.cursor = session.ring.start  # the scrollback is replayed first
        self.in_flight = 0
        self.closed = False
        self.connection_id = uuid.uuid4()

    @property
    def backlog(self) -> int:
        return self.session.ring.total - self.cursor

    def pump(self) -> None:
        ring = self.session.ring
        if self.cursor < ring.start:
            self.cursor = ring.start  # fell a whole ring behind: skip ahead
        while not self.closed and self.cursor < ring.total and self.in_flight < OUTPUT_WINDOW:
            chunk = ring.read(self.cursor, min(FRAME_BYTES, OUTPUT_WINDOW - self.in_flight))
            if not chunk:
                break
            self.cursor += len(chunk)
            self.in_flight += len(chunk)
            self._send(tpb.TunnelRequest(id=self.request_id, pty_output=chunk))
        if (
            not self.closed
            and self.session.exited
            and self.cursor >= ring.total
            and self.in_flight == 0
        ):
            # Everything the command wrote has reached the client.
            self.finish(tpb.TunnelRequest(id=self.request_id, done=tpb.Done()))

    def acknowledge(self, size: int) -> None:
        self.in_flight = max(0, self.in_flight - size)
        self.pump()
        self.session.maybe_resume()

    def finish(self, frame: tpb.TunnelRequest | None) -> None:
        if self.closed:
            return
        self.closed = True
        if frame is not None:
            self._send(frame)
        self.session.detach(self)


class Session:
    def __init__(
        self,
        manager: PtyManager,
        attach: tpb.PtyAttach,
        workspace: Workspace,
        idle_timeout: float,
    ) -> None:
        self.manager = manager
        self.id = attach.reconnect_id
        self.command = attach.command
        self.container = attach.container
        self.ring = Ring(RING_BYTES)
        self.attachments: set[Attachment] = set()
        self.created_at = dt.datetime.now(dt.UTC)
        self.last_attached_at: dt.datetime | None = None
        self.exited = False
        self._idle_timeout = idle_timeout
        self._idle: asyncio.TimerHandle | None = None
        self._reading = False
        self._input: list[tuple[Attachment | None, bytes]] = []
        self._writing = False
        loop = asyncio.get_running_loop()
        self._loop = loop
        master, slave = os.openpty()
        self.fd = master
        set_size(master, attach.height or 80, attach.width or 80)
        env = dict(workspace.env)
        env["TERM"] = "xterm-256color"
        argv = self._argv(attach, workspace)
        setsid = shutil.which("setsid")
        # The terminal must become the command's controlling terminal (job
        # control, ^C). util-linux's `setsid --ctty` does that without a
        # Python callback in the child, so the child is a plain spawn (a
        # preexec_fn forks the whole process, gRPC's threads included).
        if setsid is not None:
            argv = [setsid, "--ctty", *argv]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=workspace.cwd(),
                env=env,
                start_new_session=setsid is None,
                preexec_fn=None if setsid is not None else _controlling_terminal,
                close_fds=True,
            )
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._resume()

    @staticmethod
    def _argv(attach: tpb.PtyAttach, workspace: Workspace) -> list[str]:
        if attach.container:
            argv = ["docker", "exec", "-it"]
            if attach.container_user:
                argv += ["-u", attach.container_user]
            argv.append(attach.container)
            if attach.command:
                return [*argv, "/bin/sh", "-c", attach.command]
            return [*argv, "/bin/sh", "-c", 'exec "${SHELL:-/bin/sh}" -l']
        if attach.command:
            return [workspace.shell, "-c", attach.command]
        return [workspace.shell, "-l"]

    # -- output --------------------------------------------------------------------
    def _resume(self) -> None:
        if not self._reading and not self.exited:
            self._reading = True
            self._loop.add_reader(self.fd, self._on_readable)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.fd)

    def maybe_resume(self) -> None:
        if not self._blocked():
            self._resume()

    def _blocked(self) -> bool:
        """Reading on would overwrite output that no attached client has yet."""
        return bool(self.attachments) and all(
            a.backlog >= self.ring.capacity for a in self.attachments
        )

    def _on_readable(self) -> None:
        # A terminal hands out at most a few KiB per read: read what is there
        # (up to READ_BYTES) so that it goes out in few large frames.
        chunks: list[bytes] = []
        size = 0
        ended = False
        while size < READ_BYTES:
            try:
                data = os.read(self.fd, READ_BYTES - size)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno != errno.EIO:
                    log.debug("terminal %s read: %s", self.id, err)
                data = b""
            if not data:
                ended = True
                break
            chunks.append(data)
            size += len(data)
        if chunks:
            self.ring.write(b"".join(chunks))
        if ended:
            for attachment in list(self.attachments):
                attachment.pump()
            self._exited()
            return
        if not chunks:
            return
        for attachment in list(self.attachments):
            attachment.pump()
        if self._blocked():
            self._pause()

    def _exited(self) -> None:
        self._pause()
        self.exited = True
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=0.5)
        for attachment in list(self.attachments):
            attachment.pump()  # sends done once its client has everything
        self.manager.forget(self)
        if not self.attachments:
            self.close()

    # -- input ---------------------------------------------------------------------
    def write(self, attachment: Attachment | None, data: bytes) -> None:
        if self.exited or not data:
            return
        self._input.append((attachment, data))
        self._flush_input()

    def _flush_input(self) -> None:
        while self._input:
            attachment, data = self._input[0]
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self._input.clear()
                return
            if attachment is not None and written and not attachment.closed:
                self.manager.input_written(attachment, written)
            if written < len(data):
                self._input[0] = (attachment, data[written:])
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self.fd, self._on_writable)
                return
            self._input.pop(0)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self.fd)

    def _on_writable(self) -> None:
        self._flush_input()

    def resize(self, height: int, width: int) -> None:
        if not self.exited and 0 < height <= MAX_SIZE and 0 < width <= MAX_SIZE:
            with contextlib.suppress(OSError):
                set_size(self.fd, height, width)

    # -- clients ---------------------------------------------------------------------
    def attach(self, request_id: int, send: Callable[[Any], None]) -> Attachment:
        attachment = Attachment(self, request_id, send)
        self.attachments.add(attachment)
        self.last_attached_at = dt.datetime.now(dt.UTC)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        return attachment

    def detach(self, attachment: Attachment) -> None:
        self.attachments.discard(attachment)
        self._input = [(a, d) for a, d in self._input if a is not attachment]
        self.manager.detached(attachment)
        if self.exited:
            if not self.attachments:
                self.close()
            return
        self.maybe_resume()
        if not self.attachments and self._idle is None:
            self._idle = self._loop.call_later(self._idle_timeout, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if not self.attachments:
            log.info(
                "terminal %s had no client for %.0f s; closing it", self.id, self._idle_timeout
            )
            self.close()

    def info(self) -> tpb.PtySession:
        try:
            height, width = get_size(self.fd)
        except OSError:
            height = width = 0
        return tpb.PtySession(
            id=self.id,
            command=self.command,
            height=height,
            width=width,
            created_at=_timestamp(self.created_at),
            last_attached_at=_timestamp(self.last_attached_at),
            attached_clients=len(self.attachments),
            container=self.container,
        )

    def close(self) -> None:
        """Ends the session: its attachments, its command, its terminal."""
        self.manager.forget(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for attachment in list(self.attachments):
            attachment.finish(tpb.TunnelRequest(id=attachment.request_id, done=tpb.Done()))
        self._pause()
        if self._writing:
            self._writing = False
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self.fd)
        self.exited = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGHUP)
            self._loop.call_later(KILL_AFTER_SECONDS, self._kill)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1

    def _kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=1)


class PtyManager:
    """The agent's terminal sessions by reconnect id, and the attachments of
    the current tunnel by request id."""

    def __init__(
        self,
        workspace: Callable[[], Workspace | None],
        *,
        idle_timeout: float,
        login_unblocked: Callable[[], Any] | None = None,
        report: Callable[[agent_pb2.ReportConnectionRequest], None] | None = None,
    ) -> None:
        self._workspace = workspace
        self.idle_timeout = idle_timeout
        self._login_unblocked = login_unblocked
        self._report = report
        self.sessions: dict[str, Session] = {}
        self._attachments: dict[int, Attachment] = {}
        self._client_ips: dict[int, str] = {}

    @property
    def connection_count(self) -> int:
        return len(self._attachments)

    async def attach(
        self, request_id: int, attach: tpb.PtyAttach, send: Callable[[Any], None]
    ) -> None:
        try:
            uuid.UUID(attach.reconnect_id)
        except ValueError:
            send(self._failure(request_id, "The reconnect id must be a UUID."))
            return
        if self._login_unblocked is not None:
            # start_blocks_login: terminals wait for those startup scripts.
            await self._login_unblocked()
        workspace = self._workspace()
        if workspace is None:
            send(self._failure(request_id, "The agent has no manifest yet."))
            return
        session = self.sessions.get(attach.reconnect_id)
        if session is None or session.exited:
            if len(self.sessions) >= MAX_SESSIONS:
                send(self._failure(request_id, f"The agent runs {MAX_SESSIONS} terminals already."))
                return
            try:
                session = Session(self, attach, workspace, self.idle_timeout)
            except OSError as err:
                send(
                    tpb.TunnelRequest(
                        id=request_id,
                        failure=tpb.Failure(
                            kind=tpb.Failure.Kind.KIND_INTERNAL,
                            message="start the terminal's command",
                            detail=str(err),
                        ),
                    )
                )
                return
            self.sessions[session.id] = session
        else:
            session.resize(attach.height, attach.width)
        replayed = session.ring.total - session.ring.start
        attachment = session.attach(request_id, send)
        self._attachments[request_id] = attachment
        self._client_ips[request_id] = attach.client_ip
        send(
            tpb.TunnelRequest(
                id=request_id,
                pty_attached=tpb.PtyAttached(session=session.info(), replayed_bytes=replayed),
            )
        )
        self._connection(attachment, agent_pb2.Connection.Action.CONNECT, attach.client_ip)
        attachment.pump()

    @staticmethod
    def _failure(request_id: int, message: str) -> tpb.TunnelRequest:
        return tpb.TunnelRequest(
            id=request_id,
            failure=tpb.Failure(kind=tpb.Failure.Kind.KIND_INVALID, message=message),
        )

    def input(self, request_id: int, frame: tpb.PtyInput) -> None:
        attachment = self._attachments.get(request_id)
        if attachment is None:
            return
        if frame.height and frame.width:
            attachment.session.resize(frame.height, frame.width)
        if frame.data:
            attachment.session.write(attachment, frame.data)

    def input_written(self, attachment: Attachment, size: int) -> None:
        attachment._send(tpb.TunnelRequest(id=attachment.request_id, pty_input_ack=size))

    def acknowledge(self, request_id: int, size: int) -> None:
        attachment = self._attachments.get(request_id)
        if attachment is not None:
            attachment.acknowledge(size)

    def cancel(self, request_id: int) -> None:
        attachment = self._attachments.get(request_id)
        if attachment is not None:
            attachment.finish(None)

    def detached(self, attachment: Attachment) -> None:
        if self._attachments.get(attachment.request_id) is attachment:
            del self._attachments[attachment.request_id]
            ip = self._client_ips.pop(attachment.request_id, "")
            self._connection(attachment, agent_pb2.Connection.Action.DISCONNECT, ip)

    def detach_all(self) -> None:
        """The tunnel is gone: its attachments end, the sessions live on."""
        for attachment in list(self._attachments.values()):
            attachment.finish(None)

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def list(self) -> tpb.PtySessionList:
        return tpb.PtySessionList(sessions=[s.info() for s in self.sessions.values()])

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()

    def _connection(self, attachment: Attachment, action: int, ip: str) -> None:
        if self._report is None:
            return
        connection = agent_pb2.Connection(
            id=attachment.connection_id.bytes,
            action=action,
            type=agent_pb2.Connection.Type.RECONNECTING_PTY,
            connection_method=agent_pb2.Connection.Method.METHOD_RECONNECTING_PTY,
            ip=ip,
        )
        connection.timestamp.FromDatetime(dt.datetime.now(dt.UTC))
        if action == agent_pb2.Connection.Action.DISCONNECT:
            connection.status_code = 0
            connection.reason = (
                "the client detached"
                if not attachment.session.exited
                else ("the terminal's command exited")
            )
        self._report(agent_pb2.ReportConnectionRequest(connection=connection))
