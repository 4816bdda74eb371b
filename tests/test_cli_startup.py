"""`agentplane server` start-up, with real processes: what one server holds
(its gRPC port, its REST port, its data directory) a second one cannot take,
and every start-up failure is one line on stderr and a non-zero exit, with
nothing printed as ready."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.processes import ROOT, Server, free_port

pytestmark = pytest.mark.timeout(180)

READY = '{"rest":'


def _run(server: Server, *extra: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [*server.args, *extra],
        env={**server.env, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert READY not in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agentplane: ")
    return lines[0]


def _still_serves(first: Server) -> None:
    """The first server is untouched: its REST (through core.sock) and its
    gRPC address both answer, with its own admin token."""
    user = json.loads(first.cli("users", "create", "--username", f"u{free_port()}").stdout)
    status, _ = first.get("/workspaceagents/me/manifest", None)
    assert status == 401
    assert first.cli("tokens", "create", "--user", user["username"]).returncode == 0


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_a_second_server_cannot_share_a_port_or_the_data_dir(fresh_backend, tmp_path) -> None:
    first = Server(tmp_path / "one", fresh_backend.url).start()
    try:
        # Same gRPC port: gRPC would have shared it (SO_REUSEPORT).
        second = Server(tmp_path / "two", fresh_backend.url)
        second.args[second.args.index("--grpc-address") + 1] = first.grpc
        line = _one_line_failure(_run(second))
        assert f"cannot listen on {first.grpc} (gRPC)" in line and "already in use" in line
        # Same REST port.
        second = Server(tmp_path / "three", fresh_backend.url)
        second.args[second.args.index("--http-address") + 1] = first.http
        line = _one_line_failure(_run(second))
        assert f"cannot listen on {first.http} (REST)" in line and "already in use" in line
        # Same data directory, other ports: it must not touch core.sock.
        sock = first.data_dir / "core.sock"
        inode = sock.stat().st_ino
        second = Server(first.data_dir, fresh_backend.url)
        line = _one_line_failure(_run(second))
        assert f"the data directory {first.data_dir} is in use" in line
        assert f"(pid {first.proc.pid})" in line
        assert sock.stat().st_ino == inode
        _still_serves(first)
    finally:
        assert first.stop() == 0
    # Once the first is gone, the data directory is free again.
    again = Server(first.data_dir, fresh_backend.url).start()
    assert again.stop() == 0


def test_start_up_failures_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.json").write_text("{bad")
    (data / "bad.yaml").write_text("a: [\n")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    closed = free_port()
    sqlite = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cases = [
        # PostgreSQL unreachable (nothing listens there).
        (
            f"postgresql://postgres@127.0.0.1:{closed}/x",
            (),
            "cannot use the database postgresql://postgres@127.0.0.1:",
        ),
        # PostgreSQL refusing (no such database); the password is never shown.
        (
            "postgresql://postgres:hunter2@127.0.0.1:5432/no_such_database_here",
            (),
            "no_such_database_here",
        ),
        ("postgresql://postgres@[bad", (), "cannot use the database"),
        (f"sqlite:///{not_a_dir}/db.sqlite", (), "cannot use the database URL"),
        (sqlite, ("--data-dir", str(not_a_dir / "sub")), "cannot use the data directory"),
        (sqlite, ("--derp-config", str(data / "bad.json")), "is not valid JSON"),
        (sqlite, ("--derp-config", str(data / "missing.json")), "cannot read DERP config"),
        (sqlite, ("--announcement-banners-file", str(data / "bad.yaml")), "banners file"),
        (sqlite, ("--external-auth-config", str(data / "bad.yaml")), "external auth config"),
        (sqlite, ("--aws-instance-identity-certs", str(data / "bad.json")), "identity"),
        (sqlite, ("--agent-logs-limit-bytes", "\u0663"), "must be an integer"),
        (sqlite, ("--http-address", "nohost.invalid:1"), "cannot listen on nohost.invalid:1"),
    ]
    for url, extra, expected in cases:
        server = Server(data, url)
        done = _run(server, *extra)
        line = _one_line_failure(done)
        assert expected in line, (url, extra, line)
        assert "hunter2" not in done.stderr


def test_a_taken_rest_port_fails_before_ready(tmp_path: Path) -> None:
    """Not the facade retrying for 5 s after the ready line: the supervisor
    binds the REST socket itself and stops at once."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        server = Server(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
        port = holder.getsockname()[1]
        server.args[server.args.index("--http-address") + 1] = f"127.0.0.1:{port}"
        line = _one_line_failure(_run(server))
        assert f"cannot listen on 127.0.0.1:{port} (REST)" in line
    finally:
        holder.close()
