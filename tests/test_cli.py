"""The newcomer's path, end to end: `agentplane server` as a real process
(core + facade), the provisioning CLI, curl-style HTTP reads, and a
graceful SIGTERM — on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.storage.db import create_engine, migrate
from tests.conftest import BACKENDS
from tests.processes import AGENTPLANE, ROOT, Server, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_newcomer_path(fresh_backend, tmp_path: Path) -> None:
    server = Server(tmp_path / "data", fresh_backend.url).start()
    try:
        token_file = tmp_path / "data" / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600

        user = json.loads(
            server.cli(
                "users", "create", "--username", "alice", "--email", "alice@example.com"
            ).stdout
        )
        assert set(user) == {"id", "username", "email", "api_key"}
        token = json.loads(server.cli("tokens", "create", "--user", "alice").stdout)["api_key"]
        ws = json.loads(
            server.cli(
                "workspaces",
                "create",
                "--owner",
                "alice",
                "--name",
                "dev",
                "--spec",
                str(ROOT / "examples" / "workspace.yaml"),
            ).stdout
        )
        assert set(ws) == {"workspace_id", "build_id", "build_number", "agents"}
        agents = {a["name"]: a for a in ws["agents"]}
        assert agents["cloud"]["auth_token"] is None
        assert agents["cloud"]["auth_instance_id"] == "i-0123456789abcdef0"
        assert agents["devcontainer"]["parent_id"] == agents["main"]["id"]
        main = agents["main"]

        status, body = server.get(f"/workspaceagents/{main['id']}", token)
        assert status == 200 and body["name"] == "main" and body["status"] == "connecting"
        status, body = server.get("/workspaceagents/me/manifest", main["auth_token"])
        assert status == 200 and body["agent_name"] == "main" and body["owner_name"] == "alice"
        status, body = server.get("/workspaceagents/me/gitsshkey", main["auth_token"])
        assert status == 200 and body["public_key"].startswith("ssh-ed25519 ")
        status, body = server.get(f"/workspaceagents/{main['id']}/connection", user["api_key"])
        assert status == 200 and "999" in body["derp_map"]["regions"]
        assert server.get("/workspaceagents/zzz", token) == (
            400,
            {"message": 'Invalid UUID "zzz".', "detail": "invalid UUID length: 3"},
        )
        assert server.get("/nope", token) == (404, {"message": "Route not found."})

        rebuilt = json.loads(
            server.cli("workspaces", "build", "--owner", "alice", "--name", "dev").stdout
        )
        assert rebuilt["build_number"] == 2
        status, body = server.get("/workspaceagents/me/manifest", main["auth_token"])
        assert status == 401 and body["message"] == "Workspace agent not authorized."

        bad = tmp_path / "bad.yaml"
        bad.write_text("resources:\n  - name: r\n    agents:\n      - name: 'no good'\n")
        failed = server.cli(
            "workspaces", "create", "--owner", "alice", "--name", "x", "--spec", str(bad), ok=False
        )
        assert failed.returncode != 0 and failed.stdout == ""
        assert "resources[0].agents[0].name" in failed.stderr
        missing = server.cli("users", "create", "--username", "alice", ok=False)
        assert missing.returncode != 0 and "already exists" in missing.stderr
    finally:
        code = server.stop()
    assert code == 0, "SIGTERM must shut the server down cleanly"


def test_cli_without_server_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("t\n")
    env = {
        **os.environ,
        "AGENTPLANE_DATA_DIR": str(tmp_path),
        "AGENTPLANE_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [*AGENTPLANE, "users", "create", "--username", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode != 0 and "cannot reach the agentplane core" in done.stderr


def test_server_refuses_a_newer_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    server = Server(tmp_path / "data", url)
    done = subprocess.run(
        server.args, env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "9999_future" in done.stderr and "newer agentplane" in done.stderr


def test_json_logs_from_a_real_server(tmp_path: Path) -> None:
    """--log-format json: every line on stderr is one JSON object, and a
    request leaves an access-log line on each side with one request id."""
    server = Server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={"AGENTPLANE_LOG_FORMAT": "json"},
    ).start()
    try:
        status, _body = server.get("/workspaceagents/connection", None)
        assert status == 401
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.stderr_lines if line.strip().startswith("{")]
    assert lines, server.stderr
    http_lines = [x for x in lines if x.get("route") == "/api/v2/workspaceagents/connection"]
    assert http_lines and http_lines[0]["status"] == 401 and http_lines[0]["caller"] == "anonymous"
    rpc = [x for x in lines if x.get("request_id") == http_lines[0]["request_id"] and "code" in x]
    assert rpc and rpc[0]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("value", ["9223372036854775808", "\u0663", "-1", "1_0", " 1"])
def test_logs_after_takes_only_go_integers(value: str, capsys) -> None:
    """`agentplane logs --after` past int64 (or not Go's integer at all) is a
    usage error on one line, not a traceback from the gRPC request."""
    from server.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["logs", "00000000-0000-0000-0000-000000000000", "--after", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "argument --after: must be an integer from 0 to 9223372036854775807" in err


def test_every_option_says_what_it_is_for() -> None:
    import argparse

    from server.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "agentplane")
    assert missing == []
    helps = subprocess.run(
        [*AGENTPLANE, "login", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    ).stdout
    assert "an AWS instance identity" in helps and "a aws" not in helps


def test_version(capsys) -> None:
    from importlib.metadata import version

    from server.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"agentplane {version('agentplane')}\n"


def test_no_admin_token_names_the_data_dir(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTPLANE_DATA_DIR": str(tmp_path / "nowhere")}
    env.pop("AGENTPLANE_ADMIN_TOKEN", None)
    done = subprocess.run(
        [*AGENTPLANE, "users", "create", "--username", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "no admin token" in line and "--data-dir" in line
    assert str(tmp_path / "nowhere" / "admin-token") in line
