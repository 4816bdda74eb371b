"""Operability: ``/metrics`` (the core's series and the facade's, owners
only), the access log on both sides with one request id, build info, JSON
logs, and no statement parameters in database errors."""

from __future__ import annotations

import http.client
import json
import logging
import re
import uuid
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import token_md
from tests.rest_facade._live import wait_until

API = "/api/v2"


def _get(base: str, path: str, token: str | None = None) -> tuple[int, str, str]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        conn.request("GET", path, headers={"Coder-Session-Token": token} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_need_an_owner(facade_url, provision) -> None:
    ws = provision.workspace()
    assert _get(facade_url, "/metrics")[0] == 401
    status, _ctype, body = _get(facade_url, "/metrics", ws.api_key)
    assert status == 403 and json.loads(body)["message"] == "Forbidden."


def test_metrics_count_rpcs_requests_and_agents(facade_url, provision, channel) -> None:
    from coder.agent.v2 import agent_pb2, agent_pb2_grpc

    ws = provision.workspace()
    owner = provision.user(role="owner")
    agent = ws.agent("main")
    assert _get(facade_url, f"{API}/workspaceagents/{agent.id}", ws.api_key)[0] == 200
    assert _get(facade_url, f"{API}/workspaceagents/{uuid.uuid4()}", ws.api_key)[0] == 404
    agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(agent.auth_token)
    )
    status, ctype, text = _get(facade_url, "/metrics", owner.api_key)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    rpc = "agentplane_grpc_server_handled_total"
    svc = "agentplane.workspaceagents.v1.WorkspaceAgentsService"
    assert _sample(text, rpc, grpc_method="GetWorkspaceAgent", grpc_service=svc, grpc_code="OK")
    assert _sample(text, rpc, grpc_method="GetWorkspaceAgent", grpc_code="NOT_FOUND") == 1
    assert _sample(text, rpc, grpc_service="coder.agent.v2.Agent", grpc_method="GetManifest")
    # Requests by route template, never the raw path.
    route = "/api/v2/workspaceagents/<agent:agent_id>"
    http_total = "agentplane_http_requests_total"
    assert _sample(text, http_total, route=route, method="GET", status="200") == 1
    assert _sample(text, http_total, route=route, method="GET", status="404") == 1
    assert agent.id not in text
    assert _sample(text, "agentplane_agents", status="connected") == 1
    assert _sample(text, "agentplane_http_connections_open") is not None


def test_open_streams_are_counted(facade_url, provision) -> None:
    import websocket

    ws = provision.workspace()
    owner = provision.user(role="owner")
    url = facade_url.replace("http://", "ws://") + f"{API}/workspaceagents/{ws.agent('main').id}"
    follower = websocket.create_connection(
        url + "/logs?follow", header=[f"Coder-Session-Token: {ws.api_key}"], timeout=15
    )
    try:
        assert json.loads(follower.recv()) == []
        text = _get(facade_url, "/metrics", owner.api_key)[2]
        route = "/api/v2/workspaceagents/<agent:agent_id>/logs"
        assert _sample(text, "agentplane_http_streams_open", route=route) == 1
        assert (
            _sample(
                text,
                "agentplane_grpc_server_streams_open",
                grpc_method="WatchWorkspaceAgentLogs",
            )
            == 1
        )
    finally:
        follower.close()


def test_access_log_on_both_sides_with_one_request_id(facade_url, provision, caplog) -> None:
    ws = provision.workspace()
    caplog.set_level(logging.INFO, logger="agentplane.access")
    path = f"{API}/workspaceagents/{ws.agent('main').id}"
    assert _get(facade_url, path, ws.api_key)[0] == 200

    def access() -> list:
        return [r for r in caplog.records if r.name == "agentplane.access"]

    # The facade writes its line once the answer is out.
    wait_until(lambda: any(getattr(r, "route", None) for r in access()), what="the access log")
    records = access()
    http_lines = [r for r in records if getattr(r, "route", None)]
    rpc_lines = [r for r in records if getattr(r, "rpc_method", None) == "GetWorkspaceAgent"]
    assert http_lines and rpc_lines
    facade, core_line = http_lines[-1], rpc_lines[-1]
    assert facade.route == "/api/v2/workspaceagents/<agent:agent_id>"
    assert (facade.status, facade.caller) == (200, "user")
    assert (core_line.code, core_line.caller) == ("OK", "user")
    assert facade.request_id and facade.request_id == core_line.request_id
    for record in records:
        assert ws.api_key not in record.getMessage()
        assert ws.api_key.split("-")[1] not in str(record.__dict__)


def test_buildinfo(facade_url) -> None:
    status, ctype, body = _get(facade_url, f"{API}/buildinfo")
    info = json.loads(body)
    assert status == 200 and ctype == "application/json; charset=utf-8"
    assert re.fullmatch(r"v\d+\.\d+\.\d+.*", info["version"])
    assert info["agent_api_version"].startswith("2.")
    assert info["dashboard_url"].startswith("http")
    assert set(info) >= {"external_url", "telemetry", "workspace_proxy", "deployment_id"}


def test_json_log_format(capsys) -> None:
    from server.logconfig import configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json")
        logging.getLogger("agentplane.access").info(
            "http GET /x 200", extra={"route": "/x", "status": 200, "request_id": "abc"}
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["logger"] == "agentplane.access" and line["level"] == "INFO"
    assert (line["route"], line["status"], line["request_id"]) == ("/x", 200, "abc")


def test_database_errors_never_carry_parameters(db) -> None:
    with pytest.raises(sa.exc.DBAPIError) as info, db.engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table WHERE x = :secret"), {"secret": "S3CR3T"})
    assert "S3CR3T" not in str(info.value)
