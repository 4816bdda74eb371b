"""Agent status end to end with a real `agentplane server`: providers from
--external-auth-config, `agentplane external-auth link`, the token over
REST; `agentplane workspaces reinit`, `prebuild` and `claim`; a bad config
file refuses to start."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.processes import ROOT, Server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_external_auth_and_reinit_from_the_cli(fresh_backend, tmp_path: Path) -> None:
    providers = tmp_path / "providers.yaml"
    providers.write_text("- {id: github, type: github, display_name: GitHub}\n")
    server = Server(tmp_path / "data", fresh_backend.url)
    server.args += ["--external-auth-config", str(providers)]
    server.start()
    try:
        server.cli("users", "create", "--username", "alice")
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
        token = next(a for a in ws["agents"] if a["name"] == "main")["auth_token"]
        status, body = server.get("/workspaceagents/me/external-auth?match=github.com/a/b", token)
        assert status == 200 and body["url"].endswith("/external-auth/github")
        linked = json.loads(
            server.cli(
                "external-auth",
                "link",
                "--user",
                "alice",
                "--provider",
                "github",
                "--access-token",
                "ghp_x",
                "--expires-at",
                "2999-01-01T00:00:00Z",
            ).stdout
        )
        assert linked["provider_id"] == "github" and linked["updated_at"]
        status, body = server.get("/workspaceagents/me/gitauth?url=https://github.com/a/b", token)
        assert status == 200 and (body["username"], body["access_token"]) == ("ghp_x", "ghp_x")
        missing = server.cli(
            "external-auth",
            "link",
            "--user",
            "alice",
            "--provider",
            "nope",
            "--access-token",
            "t",
            ok=False,
        )
        assert missing.returncode != 0 and "'nope' is not configured" in missing.stderr

        reinit = json.loads(
            server.cli("workspaces", "reinit", "--owner", "alice", "--name", "dev").stdout
        )
        assert reinit == {
            "workspace_id": ws["workspace_id"],
            "owner_id": reinit["owner_id"],
            "reason": "prebuild_claimed",
            "build_number": 1,
        }

        # Prebuilds: created for the prebuilds user, claimed by alice.
        spec = str(ROOT / "examples" / "workspace.yaml")
        pre = json.loads(
            server.cli("workspaces", "prebuild", "--name", "pb", "--spec", spec).stdout
        )
        pre_token = next(a for a in pre["agents"] if a["name"] == "main")["auth_token"]
        status, body = server.get("/workspaceagents/me/manifest", pre_token)
        assert status == 200 and body["owner_name"] == "prebuilds"
        claimed = json.loads(
            server.cli(
                "workspaces", "claim", "--name", "pb", "--owner", "alice", "--new-name", "mine"
            ).stdout
        )
        assert claimed["workspace_id"] == pre["workspace_id"] and claimed["build_number"] == 2
        assert claimed["owner_id"] == reinit["owner_id"]
        status, body = server.get("/workspaceagents/me/manifest", pre_token)
        assert status == 200 and (body["owner_name"], body["workspace_name"]) == ("alice", "mine")
        # A workspace that is no prebuild: me/reinit?wait=true is Coder's 409.
        status, body = server.get("/workspaceagents/me/reinit?wait=true", token)
        assert status == 409 and "not a prebuilt workspace" in body["message"]
    finally:
        assert server.stop() == 0


def test_bad_external_auth_config_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "providers.yaml"
    bad.write_text("- {id: x}\n")
    server = Server(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    done = subprocess.run(
        [*server.args, "--external-auth-config", str(bad)],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "type is required" in done.stderr
