"""GET /api/v2/workspaceagents/{id}: Coder's JSON, through the live core."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from rest_facade.coderjson import rfc3339

# Every key of codersdk.WorkspaceAgent in the newest seed (2026).
AGENT_KEYS = {
    "api_version",
    "apps",
    "architecture",
    "connection_timeout_seconds",
    "created_at",
    "directory",
    "disconnected_at",
    "display_apps",
    "environment_variables",
    "expanded_directory",
    "first_connected_at",
    "health",
    "id",
    "instance_id",
    "last_connected_at",
    "latency",
    "lifecycle_state",
    "log_sources",
    "logs_length",
    "logs_overflowed",
    "name",
    "operating_system",
    "parent_id",
    "ready_at",
    "resource_id",
    "scripts",
    "started_at",
    "startup_script_behavior",
    "status",
    "subsystems",
    "troubleshooting_url",
    "updated_at",
    "version",
}
APP_KEYS = {
    "command",
    "display_name",
    "external",
    "group",
    "health",
    "healthcheck",
    "hidden",
    "icon",
    "id",
    "open_in",
    "sharing_level",
    "slug",
    "statuses",
    "subdomain",
    "subdomain_name",
    "tooltip",
    "url",
}
SCRIPT_KEYS = {
    "cron",
    "display_name",
    "id",
    "log_path",
    "log_source_id",
    "run_on_start",
    "run_on_stop",
    "script",
    "start_blocks_login",
    "timeout",
}
LOG_SOURCE_KEYS = {"created_at", "display_name", "icon", "id", "workspace_agent_id"}


def test_full_agent_json(rest, provision, clock) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    resp = rest.get(
        f"/api/v2/workspaceagents/{main.id}", headers={"Coder-Session-Token": ws.api_key}
    )
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == AGENT_KEYS
    assert body["id"] == main.id and body["name"] == "main"
    assert body["parent_id"] is None
    assert body["resource_id"] == main.resource_id
    assert body["status"] == "connecting" and body["lifecycle_state"] == "created"
    assert body["health"] == {"healthy": False, "reason": "agent has not yet connected"}
    assert body["created_at"] == rfc3339(clock.now()) == "2026-01-01T00:00:00Z"
    assert body["first_connected_at"] is None
    assert body["display_apps"] == [
        "vscode",
        "web_terminal",
        "ssh_helper",
        "port_forwarding_helper",
    ]
    assert body["startup_script_behavior"] == "blocking"
    assert body["connection_timeout_seconds"] == 120
    assert body["latency"] == {} and body["subsystems"] == []
    assert len(body["apps"]) == 2 and all(set(a) == APP_KEYS for a in body["apps"])
    code_server = body["apps"][0]
    assert code_server["healthcheck"] == {
        "interval": 5,
        "threshold": 6,
        "url": "http://localhost:13337/healthz",
    }
    assert code_server["health"] == "initializing" and code_server["statuses"] == []
    assert all(set(s) == SCRIPT_KEYS for s in body["scripts"])
    assert body["scripts"][0]["timeout"] == 300 * 10**9  # Go Duration, nanoseconds
    assert all(set(s) == LOG_SOURCE_KEYS for s in body["log_sources"])
    assert body["scripts"][0]["log_source_id"] == body["log_sources"][0]["id"]
    uuid.UUID(body["id"])


def test_sub_agent_parent_id_is_a_uuid_string(rest, provision) -> None:
    ws = provision.workspace()
    body = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('child').id}",
        headers={"Coder-Session-Token": ws.api_key},
    ).get_json()
    assert body["parent_id"] == ws.agent("main").id


def test_token_from_cookie_query_and_bearer(rest, provision) -> None:
    ws = provision.workspace()
    url = f"/api/v2/workspaceagents/{ws.agent('main').id}"
    rest.set_cookie("coder_session_token", ws.api_key)
    assert rest.get(url).status_code == 200
    rest.delete_cookie("coder_session_token")
    assert rest.get(url).status_code == 401
    assert rest.get(f"{url}?coder_session_token={ws.api_key}").status_code == 200
    assert rest.get(url, headers={"Authorization": f"Bearer {ws.api_key}"}).status_code == 200


def test_errors_in_coders_envelope(rest, provision) -> None:
    ws = provision.workspace()
    stranger = provision.user()
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": stranger.api_key},
    )
    missing = rest.get(
        f"/api/v2/workspaceagents/{uuid.uuid4()}", headers={"Coder-Session-Token": stranger.api_key}
    )
    assert resp.status_code == missing.status_code == 404
    assert (
        resp.get_json()
        == missing.get_json()
        == {"message": "Resource not found or you do not have access to this resource"}
    )
    bad = rest.get(
        "/api/v2/workspaceagents/not-a-uuid", headers={"Coder-Session-Token": ws.api_key}
    )
    assert bad.status_code == 400
    assert bad.get_json()["message"] == 'Invalid UUID "not-a-uuid".'
    unauth = rest.get(f"/api/v2/workspaceagents/{ws.agent('main').id}")
    assert unauth.status_code == 401 and "WWW-Authenticate" in unauth.headers
    assert unauth.get_json()["message"].startswith("You are signed out")


def test_owner_role_reads_other_users_agents(rest, provision) -> None:
    ws = provision.workspace()
    owner = provision.user(role="owner")
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": owner.api_key},
    )
    assert resp.status_code == 200


def test_rfc3339_like_go() -> None:
    assert (
        rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC))
        == "2026-01-02T03:04:05.12Z"
    )
    assert (
        rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        == "2026-01-02T01:04:05Z"
    )
    # Go pads the year to four digits.
    assert rfc3339(dt.datetime(1, 1, 1, tzinfo=dt.UTC)) == "0001-01-01T00:00:00Z"


def test_timestamp_field_formats_like_rfc3339() -> None:
    from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb

    from rest_facade.coderjson import timestamp

    assert timestamp(pb.WorkspaceAgent(), "created_at") is None
    for value in (
        dt.datetime(2026, 11, 25, 6, 7, 8, 123456, tzinfo=dt.UTC),
        dt.datetime(1960, 5, 6, 7, 8, 9, 100000, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    ):
        msg = pb.WorkspaceAgent()
        msg.created_at.FromDatetime(value)
        assert timestamp(msg, "created_at") == rfc3339(value)


def test_agent_reflects_what_it_reported(rest, clock, provision) -> None:
    """Lifecycle, startup facts, app health and connection, as the agent
    reported them over the legacy REST routes and the RPCs behind them."""
    from coder.agent.v2 import agent_pb2

    from rest_facade import CORE_EXTENSION

    ws = provision.workspace()
    main = ws.agent("main")
    agent_headers = {"Coder-Session-Token": main.auth_token}
    t0 = clock.now()
    assert (
        rest.post(
            "/api/v2/workspaceagents/me/report-stats", json={}, headers=agent_headers
        ).status_code
        == 200
    )
    stub = rest.application.extensions[CORE_EXTENSION].agent
    stub.UpdateStartup(
        agent_pb2.UpdateStartupRequest(
            startup=agent_pb2.Startup(
                version="v2.20.0",
                expanded_directory="/home/coder",
                subsystems=[agent_pb2.Startup.EXECTRACE, agent_pb2.Startup.ENVBOX],
            )
        ),
        metadata=(("coder-session-token", main.auth_token),),
    )
    stub.UpdateLifecycle(
        agent_pb2.UpdateLifecycleRequest(
            lifecycle=agent_pb2.Lifecycle(state=agent_pb2.Lifecycle.READY)
        ),
        metadata=(("coder-session-token", main.auth_token),),
    )
    body = rest.get(
        f"/api/v2/workspaceagents/{main.id}", headers={"Coder-Session-Token": ws.api_key}
    ).get_json()
    assert body["status"] == "connected" and body["health"] == {"healthy": True, "reason": ""}
    assert body["lifecycle_state"] == "ready"
    assert body["started_at"] == body["ready_at"] == rfc3339(t0)
    assert body["first_connected_at"] == body["last_connected_at"] == rfc3339(t0)
    assert body["disconnected_at"] is None
    assert (body["version"], body["expanded_directory"], body["subsystems"]) == (
        "v2.20.0",
        "/home/coder",
        ["envbox", "exectrace"],
    )
    assert body["api_version"] == "2.13"


DIAGNOSIS_KEYS = {
    "agent_id",
    "build_number",
    "created_at",
    "disconnected_at",
    "failed_scripts",
    "first_connected_at",
    "last_connected_at",
    "last_connected_replica_id",
    "lifecycle_state",
    "pending_scripts",
    "state_seconds",
    "state_since",
    "status",
    "summary",
    "token_rejection",
    "waiting_on",
    "netcheck",
}


def test_diagnosis_route(rest, clock, provision) -> None:
    ws = provision.workspace()
    old = ws.agent("main")
    build = provision.rebuild(ws)
    new = next(a for a in build.agents if a.name == "main")
    refused = rest.get(
        "/api/v2/workspaceagents/me/manifest", headers={"Coder-Session-Token": old.auth_token}
    )
    assert refused.status_code == 401
    resp = rest.get(
        f"/api/v2/workspaceagents/{new.id}/diagnosis", headers={"Coder-Session-Token": ws.api_key}
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == DIAGNOSIS_KEYS
    assert (body["status"], body["waiting_on"], body["build_number"]) == ("connecting", "token", 2)
    assert body["token_rejection"]["build_number"] == 1
    assert body["token_rejection"]["rejected_at"] == rfc3339(clock.now())
    assert body["last_connected_replica_id"] is None and body["first_connected_at"] is None
    assert body["state_since"] == body["created_at"] and body["state_seconds"] == 0
    assert body["netcheck"] is None  # no tailnet telemetry from the agent yet
    missing = rest.get(
        f"/api/v2/workspaceagents/{uuid.uuid4()}/diagnosis",
        headers={"Coder-Session-Token": ws.api_key},
    )
    assert missing.status_code == 404


def test_troubleshooting_url_falls_back_to_the_deployments(rest, provision, settings) -> None:
    """Coder's --agent-fallback-troubleshooting-url: an agent whose template
    sets none shows the deployment's (Coder's default URL unless set)."""
    from server.config import DEFAULT_TROUBLESHOOTING_URL

    spec = {
        "resources": [
            {
                "name": "r",
                "agents": [
                    {"name": "plain"},
                    {"name": "own", "troubleshooting_url": "https://docs.example.com/help"},
                ],
            }
        ]
    }
    ws = provision.workspace(spec)
    shown = {
        name: rest.get(
            f"/api/v2/workspaceagents/{ws.agent(name).id}",
            headers={"Coder-Session-Token": ws.api_key},
        ).get_json()["troubleshooting_url"]
        for name in ("plain", "own")
    }
    assert settings.agent_fallback_troubleshooting_url == DEFAULT_TROUBLESHOOTING_URL
    assert shown == {
        "plain": "https://coder.com/docs/v2/latest/templates/troubleshooting",
        "own": "https://docs.example.com/help",
    }


class TestAConfiguredFallback:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(
            settings, agent_fallback_troubleshooting_url="https://wiki.example.com/agents"
        )

    def test_it_is_shown(self, rest, provision) -> None:
        ws = provision.workspace({"resources": [{"name": "r", "agents": [{"name": "a"}]}]})
        body = rest.get(
            f"/api/v2/workspaceagents/{ws.agent('a').id}",
            headers={"Coder-Session-Token": ws.api_key},
        ).get_json()
        assert body["troubleshooting_url"] == "https://wiki.example.com/agents"
