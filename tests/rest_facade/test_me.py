"""Agent-token REST routes: me/manifest and me/gitsshkey."""

from __future__ import annotations

MANIFEST_KEYS = {
    "agent_id",
    "agent_name",
    "apps",
    "derp_force_websockets",
    "derpmap",
    "directory",
    "disable_direct_connections",
    "environment_variables",
    "git_auth_configs",
    "metadata",
    "motd_file",
    "owner_name",
    "scripts",
    "vscode_port_proxy_uri",
    "workspace_id",
    "workspace_name",
}


def test_manifest_json(rest, provision) -> None:
    ws = provision.workspace()
    resp = rest.get(
        "/api/v2/workspaceagents/me/manifest",
        headers={"Coder-Session-Token": ws.agent("main").auth_token},
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == MANIFEST_KEYS
    assert body["agent_id"] == ws.agent("main").id and body["owner_name"] == ws.username
    assert body["workspace_id"] == ws.workspace_id and body["workspace_name"] == "ws"
    assert body["apps"][0]["sharing_level"] == "owner"
    assert body["apps"][0]["health"] == "initializing"
    assert body["apps"][0]["healthcheck"]["interval"] == 5
    assert body["metadata"] == [
        {
            "display_name": "load",
            "interval": 10,
            "key": "load",
            "script": "cat /proc/loadavg",
            "timeout": 1,
        }
    ]
    assert body["scripts"][0]["timeout"] == 300 * 10**9
    assert body["derpmap"]["regions"]["999"]["regionName"] == "Coder Embedded Relay"


def test_gitsshkey_json(rest, provision) -> None:
    ws = provision.workspace()
    resp = rest.get(
        "/api/v2/workspaceagents/me/gitsshkey",
        headers={"Coder-Session-Token": ws.agent("main").auth_token},
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"public_key", "private_key"}
    assert body["public_key"].startswith("ssh-ed25519 ")


def test_me_routes_reject_user_keys_and_old_tokens(rest, provision) -> None:
    ws = provision.workspace()
    for path in ("/api/v2/workspaceagents/me/manifest", "/api/v2/workspaceagents/me/gitsshkey"):
        resp = rest.get(path, headers={"Coder-Session-Token": ws.api_key})
        assert resp.status_code == 401
        assert resp.get_json()["message"] == "Workspace agent token invalid."
        missing = rest.get(path)
        assert missing.status_code == 401
        assert missing.get_json() == {"message": 'Cookie "coder_session_token" must be provided.'}
    old = ws.agent("main").auth_token
    provision.rebuild(ws)
    resp = rest.get("/api/v2/workspaceagents/me/manifest", headers={"Coder-Session-Token": old})
    assert resp.status_code == 401
    assert resp.get_json()["message"] == "Workspace agent not authorized."
