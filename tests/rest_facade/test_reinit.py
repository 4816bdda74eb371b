"""GET me/reinit: Server-Sent Events over a real HTTP connection — a ping
at once, a data event when an admin asks for reinitialization, and the
agent's session held while the stream is open."""

from __future__ import annotations

import dataclasses
import http.client
import json
import uuid

import pytest
from agentplane.admin.v1 import admin_pb2

from server.storage.agents import WorkspaceAgent
from tests.conftest import ADMIN_METADATA
from tests.rest_facade._live import live_facade, wait_until

PATH = "/api/v2/workspaceagents/me/reinit"


@pytest.fixture
def settings(settings):
    # Keep-alives every second, so a closed client is noticed quickly.
    return dataclasses.replace(settings, sse_keepalive_seconds=1)


class SSEClient:
    def __init__(self, base: str, path: str, token: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", path, headers={"Coder-Session-Token": token})
        self.resp = self.conn.getresponse()

    def event(self) -> tuple[str, dict | None]:
        """The next event as (type, data)."""
        lines = []
        while True:
            line = self.resp.readline().decode()
            assert line, "stream ended"
            if line == "\n":
                break
            lines.append(line.rstrip("\n"))
        fields = dict(line.split(": ", 1) for line in lines)
        return fields["event"], json.loads(fields["data"]) if "data" in fields else None

    def close(self) -> None:
        # The response holds its own reference to the socket.
        self.resp.close()
        self.conn.close()


def _row(db, agent_id: str) -> WorkspaceAgent:
    with db.session() as s:
        return s.get(WorkspaceAgent, uuid.UUID(agent_id))


def test_ping_then_reinit_event(db, settings, core, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    with live_facade(settings, core.address) as base:
        client = SSEClient(base, PATH, main.auth_token)
        try:
            assert client.resp.status == 200
            assert client.resp.getheader("Content-Type") == "text/event-stream"
            assert client.resp.getheader("Cache-Control") == "no-cache"
            assert client.event() == ("ping", None)
            assert _row(db, main.id).disconnected_at is None  # the stream holds the session
            provision.stub.ReinitWorkspace(
                admin_pb2.ReinitWorkspaceRequest(owner=ws.username, name="ws"),
                metadata=ADMIN_METADATA,
            )
            kind, data = client.event()
            while kind == "ping":
                kind, data = client.event()
            assert kind == "data"
            assert data == {
                "workspace_id": ws.workspace_id,
                "reason": "prebuild_claimed",
                "owner_id": ws.user_id,
            }
        finally:
            client.close()
        # The client went away: the facade notices at its next write and the
        # core ends the stream, which disconnects the agent.
        wait_until(lambda: _row(db, main.id).disconnected_at is not None, what="disconnect")


def test_wait_reports_an_earlier_claim(settings, core, provision) -> None:
    """A prebuild claimed while its agent was away: reconnecting with
    wait=true, the agent hears the claim at once (Coder's durable check)."""
    build = provision.prebuild()
    token = next(a for a in build.agents if a.name == "main").auth_token
    alice = provision.user()
    provision.claim("pb", alice)
    with live_facade(settings, core.address) as base:
        client = SSEClient(base, f"{PATH}?wait=true", token)
        try:
            assert client.event() == ("ping", None)
            kind, data = client.event()
            assert kind == "data"
            assert data == {
                "workspace_id": build.workspace_id,
                "reason": "prebuild_claimed",
                "owner_id": alice.id,
            }
        finally:
            client.close()


def test_wait_on_a_workspace_that_is_no_prebuild_is_409(facade_url, provision) -> None:
    ws = provision.workspace()
    status, body = _get(f"{facade_url}{PATH}?wait=true", ws.agent("main").auth_token)
    assert status == 409
    assert body == {
        "message": "This workspace is not a prebuilt workspace; it will never be reinitialized.",
        "detail": "Only a workspace created as a prebuild is reinitialized, when a user claims "
        "it. Stop waiting on me/reinit.",
    }


def test_errors_before_the_stream_are_json(facade_url, provision) -> None:
    ws = provision.workspace()
    status, body = _get(facade_url + PATH, ws.api_key)
    assert (status, body["message"]) == (401, "Workspace agent token invalid.")
    status, body = _get(f"{facade_url}{PATH}?wait=maybe", ws.agent("main").auth_token)
    assert (status, body["message"]) == (400, "Invalid query parameters.")


def _get(url: str, token: str) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Coder-Session-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            assert err.headers["Content-Type"] == "application/json; charset=utf-8"
            return err.code, json.loads(err.read())
