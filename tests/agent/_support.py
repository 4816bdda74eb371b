"""Real ``agentplane agent`` processes for the tests, and the small clients
the tests drive them with (user RPCs, a terminal stream)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_conn_pb2_grpc as cpb_grpc

from tests.processes import AGENTPLANE, ROOT


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Polls ``condition`` until it returns something truthy, or fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class AgentProcess:
    def __init__(
        self,
        url: str,
        token: str,
        tmp: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.stderr_path = tmp / f"agent-{uuid.uuid4().hex[:6]}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        full_env = {**os.environ, **(env or {})}
        full_env.pop("CODER_AGENT_TOKEN", None)
        full_env.pop("CODER_AGENT_URL", None)
        self.proc = subprocess.Popen(
            [*AGENTPLANE, "agent", "--url", url, "--token", token, "--log-dir", str(tmp), *extra],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def provision(
    grpc_address: str, spec: dict[str, Any], admin_token: str, *, username: str | None = None
) -> tuple[admin_pb2.CreateUserResponse, admin_pb2.Build]:
    with grpc.insecure_channel(grpc_address) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        md = (("authorization", f"Bearer {admin_token}"),)
        user = stub.CreateUser(
            admin_pb2.CreateUserRequest(username=username or f"u{uuid.uuid4().hex[:8]}"),
            metadata=md,
        )
        build = stub.CreateWorkspace(
            admin_pb2.CreateWorkspaceRequest(
                owner=user.username, name="ws", spec_json=json.dumps(spec)
            ),
            metadata=md,
        ).build
    return user, build


def user_md(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("coder-session-token", api_key),)


def conn_stub(channel: grpc.Channel) -> cpb_grpc.AgentConnServiceStub:
    return cpb_grpc.AgentConnServiceStub(channel)


class Terminal:
    """A client of the Pty RPC: send keystrokes and sizes, read output."""

    def __init__(
        self,
        channel: grpc.Channel,
        api_key: str,
        open_: cpb.PtyOpen,
        *,
        read: bool = True,
    ) -> None:
        self._requests: queue.Queue[cpb.PtyRequest | None] = queue.Queue()
        self._requests.put(cpb.PtyRequest(open=open_))
        self.call = conn_stub(channel).Pty(self._iterate(), metadata=user_md(api_key))
        self.output = bytearray()
        self._lock = threading.Condition()
        self.session: Any = None
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self._reader: threading.Thread | None = None
        if read:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _iterate(self) -> Iterator[cpb.PtyRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for message in self.call:
                with self._lock:
                    if message.HasField("session"):
                        self.session = message.session
                    self.output += message.output
                    self._lock.notify_all()
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.ended.set()
            with self._lock:
                self._lock.notify_all()

    def send(self, data: bytes = b"", height: int = 0, width: int = 0) -> None:
        self._requests.put(cpb.PtyRequest(data=data, height=height, width=width))

    def expect(self, needle: bytes, timeout: float = 20, after: int = 0) -> int:
        """Waits until ``needle`` appears in the output past ``after``; its end offset."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                at = self.output.find(needle, after)
                if at >= 0:
                    return at + len(needle)
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise AssertionError(
                        f"{needle!r} not in terminal output: {bytes(self.output[-500:])!r}"
                    )
                self._lock.wait(left)

    def wait_session(self, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.session is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    raise AssertionError(f"no session: {self.error!r}")
                self._lock.wait(left)
        return self.session

    def close(self) -> None:
        self._requests.put(None)
        with contextlib.suppress(Exception):
            self.call.cancel()
        self.ended.wait(10)
