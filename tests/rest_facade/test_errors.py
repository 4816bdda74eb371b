"""Coder's global HTTP behaviour, produced by the one mapper."""

from __future__ import annotations

import grpc
import pytest
from flask import Flask

from rest_facade import create_app
from rest_facade.core import CoreClient
from rest_facade.errors import HTTP_STATUS, from_rpc_error
from rest_facade.parse import read_json
from server.errors import (
    Conflict,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    to_status,
)


def test_unknown_route(rest) -> None:
    for path in ("/api/v2/nothing", "/api/v2/workspaceagents/me/nothing", "/x"):
        resp = rest.get(path)
        assert resp.status_code == 404
        assert resp.get_json() == {"message": "Route not found."}


def test_wrong_method(rest) -> None:
    resp = rest.delete("/api/v2/workspaceagents/me/manifest")
    assert resp.status_code == 405 and "message" in resp.get_json()


def test_body_over_4_mib_is_413(rest) -> None:
    resp = rest.get("/api/v2/workspaceagents/me/manifest", data=b"x" * ((4 << 20) + 1))
    assert resp.status_code == 413
    assert resp.get_json()["message"] == "Request body too large."


def test_invalid_json_is_400(settings) -> None:
    app: Flask = create_app(settings, client=CoreClient("127.0.0.1:1"))

    @app.post("/echo")
    def echo():  # type: ignore[no-untyped-def]
        return {"got": read_json()}

    client = app.test_client()
    assert client.post("/echo", data=b'{"a": 1}').get_json() == {"got": {"a": 1}}
    resp = client.post("/echo", data=b"{nope")
    assert resp.status_code == 400
    assert resp.get_json()["message"] == "Request body must be valid JSON."
    assert resp.get_json()["detail"]


def test_lone_surrogates_become_replacement_characters_like_go(rest, provision, db) -> None:
    """Python's JSON decoder keeps a lone surrogate escape; Go's makes it
    U+FFFD. A log line or level carrying one is stored or refused in
    Coder's envelope, never a 500."""
    ws = provision.workspace()
    headers = {
        "Coder-Session-Token": ws.agent("main").auth_token,
        "Content-Type": "application/json",
    }
    resp = rest.patch(
        "/api/v2/workspaceagents/me/logs",
        data=b'{"logs":[{"output":"a\\ud800b","level":"info"}]}',
        headers=headers,
    )
    assert resp.status_code == 200, resp.data
    resp = rest.patch(
        "/api/v2/workspaceagents/me/logs",
        data=b'{"logs":[{"output":"x","level":"\\ud800"}]}',
        headers=headers,
    )
    assert resp.status_code == 400
    assert resp.get_json()["message"] == "Invalid log level provided."
    logs = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}/logs",
        headers={"Coder-Session-Token": ws.api_key},
    )
    assert [entry["output"] for entry in logs.get_json()] == ["a\ufffdb"]


def test_unexpected_errors_answer_in_the_envelope(settings) -> None:
    app: Flask = create_app(settings, client=CoreClient("127.0.0.1:1"))

    @app.get("/boom")
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("unexpected")

    resp = app.test_client().get("/boom")
    assert resp.status_code == 500
    assert resp.get_json() == {"message": "An internal error occurred."}


def test_core_down_is_503_in_the_envelope(settings) -> None:
    client = CoreClient("127.0.0.1:1", timeout=2)
    app = create_app(settings, client=client)
    resp = app.test_client().get(
        "/api/v2/workspaceagents/me/manifest", headers={"Coder-Session-Token": "x"}
    )
    assert resp.status_code == 503
    assert resp.get_json() == {"message": "The agentplane core is unavailable."}


class _FakeCall(grpc.RpcError):
    """A grpc error carrying a real status, as a channel would surface it."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self):  # type: ignore[no-untyped-def]
        return self._status.code

    def details(self):  # type: ignore[no-untyped-def]
        return self._status.details

    def trailing_metadata(self):  # type: ignore[no-untyped-def]
        return self._status.trailing_metadata


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgument("bad", validations=[("after", "must be >= 0")]), 400),
        (FailedPrecondition("state"), 400),
        (Unauthenticated("who"), 401),
        (PermissionDenied("no"), 403),
        (NotFound("gone"), 404),
        (Conflict("twice"), 409),
        (LimitExceeded("big"), 413),
        (Timeout("slow"), 408),
        (Internal("boom"), 500),
    ],
)
def test_one_chain_domain_to_grpc_to_http(error: DomainError, status: int) -> None:
    http, body = from_rpc_error(_FakeCall(to_status(error)))
    assert http == status
    assert body["message"] == error.message
    if error.validations:
        assert body["validations"] == [{"field": "after", "detail": "must be >= 0"}]


def test_rate_limit_reason_maps_to_429() -> None:
    err = LimitExceeded("Too many requests.", reason="RATE_LIMITED")
    assert from_rpc_error(_FakeCall(to_status(err)))[0] == 429
    assert HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED] == 413


# A bad body or query on each agent route that reads one; coderd checks the
# caller's agent token first (its middleware), so the 400 is only for a
# caller whose token authenticates.
BAD_AGENT_REQUESTS = [
    ("PATCH", "me/logs", b'{"logs": []}'),
    ("PATCH", "me/logs", b"{nope"),
    ("PATCH", "me/startup-logs", b'{"logs": [{"output": "x", "level": "loud"}]}'),
    ("POST", "me/log-source", b"[]"),
    ("POST", "me/app-health", b"[]"),
    ("PATCH", "me/app-status", b"[]"),
    ("POST", "me/report-stats", b"{nope"),
    ("GET", "me/reinit?wait=maybe", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_AGENT_REQUESTS)
def test_agent_routes_check_the_token_before_the_request(
    rest, provision, method, path, body
) -> None:
    url = f"/api/v2/workspaceagents/{path}"
    resp = rest.open(url, method=method, data=body)
    assert resp.status_code == 401, resp.data
    assert resp.get_json()["message"] == 'Cookie "coder_session_token" must be provided.'

    resp = rest.open(url, method=method, data=body, headers={"Coder-Session-Token": "nope"})
    assert resp.status_code == 401, resp.data
    assert resp.get_json()["message"] == "Workspace agent token invalid."

    stale = provision.workspace()
    token = stale.agent("main").auth_token
    provision.rebuild(stale)  # a new build: the old token no longer authenticates
    resp = rest.open(url, method=method, data=body, headers={"Coder-Session-Token": token})
    assert resp.status_code == 401, resp.data
    assert resp.get_json()["message"] == "Workspace agent not authorized."

    ws = provision.workspace()
    headers = {"Coder-Session-Token": ws.agent("main").auth_token}
    resp = rest.open(url, method=method, data=body, headers=headers)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["message"]


@pytest.mark.parametrize("token", ["caf\u00e9", "a\x01b", "tab\there"])
def test_tokens_grpc_metadata_cannot_carry_are_401_not_500(rest, provision, token) -> None:
    """Non-ASCII or control characters (a latin-1 header, a cookie, a query
    parameter) are a malformed token like any other, on every route."""
    ws = provision.workspace()
    headers = {"Coder-Session-Token": token}
    resp = rest.get("/api/v2/workspaceagents/me/manifest", headers=headers)
    assert resp.status_code == 401, resp.data
    assert resp.get_json()["message"] == "Workspace agent token invalid."
    resp = rest.patch("/api/v2/workspaceagents/me/logs", data=b'{"logs": []}', headers=headers)
    assert resp.status_code == 401, resp.data
    resp = rest.get(f"/api/v2/workspaceagents/{ws.agent('main').id}", headers=headers)
    assert resp.status_code == 401, resp.data
    assert resp.get_json()["message"].startswith("You are signed out")
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}/logs",
        query_string={"coder_session_token": token},
    )
    assert resp.status_code == 401, resp.data
