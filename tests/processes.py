"""Real `agentplane server` processes for end-to-end tests (CLI, crash
safety, several replicas)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AGENTPLANE = [sys.executable, "-m", "server.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, data_dir: Path, database_url: str, env: dict[str, str] | None = None
    ) -> None:
        self.http = f"127.0.0.1:{free_port()}"
        self.grpc = f"127.0.0.1:{free_port()}"
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "AGENTPLANE_DATA_DIR": str(data_dir),
            "AGENTPLANE_GRPC_ADDRESS": self.grpc,
        }
        self.env.pop("AGENTPLANE_ADMIN_TOKEN", None)
        self.env.update(env or {})
        self.args = [
            *AGENTPLANE,
            "server",
            "--http-address",
            self.http,
            "--grpc-address",
            self.grpc,
            "--database-url",
            database_url,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        # Drained all along: the server logs a line per request, and a full
        # pipe would stop it.
        self.stderr_lines: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._drain.join(10)
                raise AssertionError(f"server exited: {self.stderr}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise AssertionError("server did not become ready within 60 s")

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr_lines.append(line.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        return "".join(self.stderr_lines)

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*AGENTPLANE, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def get(self, path: str, token: str | None) -> tuple[int, Any]:
        req = urllib.request.Request(f"http://{self.http}/api/v2{path}")
        if token:
            req.add_header("Coder-Session-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._drain.join(10)

    def kill(self) -> None:
        """SIGKILL the whole server (core and facade): no chance to clean up."""
        assert self.proc is not None
        facade = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        self.proc.kill()
        self.proc.wait(30)
        for pid in facade:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        self._drain.join(10)
