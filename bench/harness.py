"""Shared pieces for benchmarks: a real `agentplane server` process on free
ports with a temporary SQLite database, provisioned through the admin API,
and small load generators that run for a fixed time."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class AgentplaneProcess:
    """`agentplane server` in a subprocess, as a user would run it."""

    def __init__(self, database_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="agentplane-bench-")
        self.http = f"127.0.0.1:{free_port()}"
        self.grpc = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "AGENTPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
            "AGENTPLANE_DATA_DIR": self.tmp.name,
            **(env or {}),
        }
        args = [
            sys.executable,
            "-m",
            "server.cli",
            "server",
            "--http-address",
            self.http,
            "--grpc-address",
            self.grpc,
        ]
        if database_url:
            args += ["--database-url", database_url]
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stderr=None if os.environ.get("BENCH_STDERR") else subprocess.DEVNULL,
        )
        wait_http(f"http://{self.http}/healthz")

    def provision(self, username: str = "bench") -> dict[str, Any]:
        with grpc.insecure_channel(self.grpc) as ch:
            stub = admin_pb2_grpc.AdminServiceStub(ch)
            md = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
            user = stub.CreateUser(admin_pb2.CreateUserRequest(username=username), metadata=md)
            spec = (ROOT / "examples" / "workspace.yaml").read_text()
            import yaml

            build = stub.CreateWorkspace(
                admin_pb2.CreateWorkspaceRequest(
                    owner=username, name="ws", spec_json=json.dumps(yaml.safe_load(spec))
                ),
                metadata=md,
            ).build
        main = next(a for a in build.agents if a.name == "main")
        return {"api_key": user.api_key, "agent_id": main.id, "agent_token": main.auth_token}

    def create_token(self, username: str = "bench") -> str:
        """Another API key (session) for the user."""
        with grpc.insecure_channel(self.grpc) as ch:
            stub = admin_pb2_grpc.AdminServiceStub(ch)
            md = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
            return stub.CreateToken(
                admin_pb2.CreateTokenRequest(user=username), metadata=md
            ).api_key

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()


def _drive(seconds: float, calls: list[Callable[[], None]]) -> tuple[list[float], float]:
    """One thread per call(), each calling it back to back for `seconds`;
    (every call's latency, elapsed seconds)."""
    latencies: list[list[float]] = [[] for _ in calls]
    start_barrier = threading.Barrier(len(calls) + 1)
    stop_at = [0.0]

    failures: list[BaseException] = []

    def worker(i: int) -> None:
        call, out = calls[i], latencies[i]
        start_barrier.wait()
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at[0]:
                    return
                call()
                out.append(time.perf_counter() - t0)
        except BaseException as err:  # reported below: a failed call fails the run
            failures.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 1e9
    start_barrier.wait()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(calls)} workers failed") from failures[0]
    return [x for lst in latencies for x in lst], time.perf_counter() - t_start


def _summary(latencies: list[float], elapsed: float) -> dict:
    flat = sorted(latencies)
    return {
        "rps": len(flat) / elapsed,
        "p50_ms": statistics.median(flat) * 1e3 if flat else float("nan"),
        "p99_ms": flat[int(len(flat) * 0.99) - 1] * 1e3 if flat else float("nan"),
        "n": len(flat),
    }


def _warm_calls(
    workers: int, make_call: Callable[[], Callable[[], None]]
) -> list[Callable[[], None]]:
    calls = [make_call() for _ in range(workers)]
    for call in calls:
        call()  # warm the connection
    return calls


def run_for(seconds: float, workers: int, make_call: Callable[[], Callable[[], None]]) -> dict:
    """Runs `workers` threads, each calling its own call() back to back for
    `seconds`; returns throughput and latency percentiles."""
    return _summary(*_drive(seconds, _warm_calls(workers, make_call)))


def run_interleaved(
    seconds: float,
    workers: int,
    contenders: list[tuple[str, Callable[[], Callable[[], None]]]],
    rounds: int = 5,
) -> list[tuple[str, dict]]:
    """Like run_for for each contender, `seconds` each in all, but in
    `rounds` slices taken in turn (A B C A B C ...), so what drifts during
    a run on a shared machine (other load, the database's checkpoints and
    autovacuum, a table growing) weighs on every contender alike instead of
    on whichever ran when it happened."""
    prepared = [(name, _warm_calls(workers, make)) for name, make in contenders]
    taken: dict[str, tuple[list[float], float]] = {name: ([], 0.0) for name, _ in contenders}
    for _ in range(rounds):
        for name, calls in prepared:
            latencies, elapsed = _drive(seconds / rounds, calls)
            so_far, total = taken[name]
            taken[name] = (so_far + latencies, total + elapsed)
    return [(name, _summary(*taken[name])) for name, _ in contenders]


def _http_caller(
    address: str, method: str, path: str, body: str | None, headers: dict[str, str]
) -> Callable[[], None]:
    """One keep-alive connection; when the server closed it while it sat idle
    (gunicorn after 5 s, e.g. while other contenders of run_interleaved take
    their turn), the call reconnects once and sends again."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def send() -> None:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")

    def call() -> None:
        try:
            send()
        except ConnectionError:  # reset, broken pipe, closed by the server
            conn.close()
            send()

    return call


def http_getter(
    address: str, path: str, headers: dict[str, str]
) -> Callable[[], Callable[[], None]]:
    return lambda: _http_caller(address, "GET", path, None, headers)


def report(title: str, rows: list[tuple[str, dict]], baseline: str) -> None:
    base = dict(rows)[baseline]["rps"]
    print(f"\n{title}")
    for name, r in rows:
        print(
            f"  {name:<44} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  ratio {r['rps'] / base:6.1%}"
        )


def http_patcher(
    address: str, path: str, body: str, tokens: list[str]
) -> Callable[[], Callable[[], None]]:
    taken = iter(range(10**9))

    def make() -> Callable[[], None]:
        headers = {
            "Coder-Session-Token": tokens[next(taken) % len(tokens)],
            "Content-Type": "application/json",
        }
        return _http_caller(address, "PATCH", path, body, headers)

    return make
