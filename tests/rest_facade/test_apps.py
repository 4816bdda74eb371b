"""POST me/app-health and PATCH me/app-status: Coder's REST answers and
texts, through the live core."""

from __future__ import annotations

import uuid

import pytest

HEALTH = "/api/v2/workspaceagents/me/app-health"
STATUS = "/api/v2/workspaceagents/me/app-status"


def _agent(rest, ws) -> dict:
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}",
        headers={"Coder-Session-Token": ws.api_key},
    )
    assert resp.status_code == 200
    return resp.get_json()


def _app_id(rest, ws, slug: str) -> str:
    return next(a["id"] for a in _agent(rest, ws)["apps"] if a["slug"] == slug)


def _post(rest, ws, body, *, raw: str | None = None):
    headers = {"Coder-Session-Token": ws.agent("main").auth_token}
    if raw is not None:
        return rest.post(HEALTH, data=raw, headers=headers)
    return rest.post(HEALTH, json=body, headers=headers)


def test_app_health_is_set(rest, provision) -> None:
    ws = provision.workspace()
    code = _app_id(rest, ws, "code-server")
    resp = _post(rest, ws, {"healths": {code: "unhealthy"}})
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "null\n"
    app = next(a for a in _agent(rest, ws)["apps"] if a["slug"] == "code-server")
    assert app["health"] == "unhealthy"


def test_app_health_refusals(rest, provision) -> None:
    ws = provision.workspace()
    code, docs = _app_id(rest, ws, "code-server"), _app_id(rest, ws, "docs")
    stranger = str(uuid.uuid4())
    cases = [
        ({"healths": {}}, 400, {"message": "Health field is empty"}),
        ({}, 400, {"message": "Health field is empty"}),
        (
            {"healths": {code: "disabled"}},
            400,
            {
                "message": "Error setting workspace app health",
                "detail": "workspace app health disabled is not a valid value",
            },
        ),
        (
            {"healths": {stranger: "healthy"}},
            404,
            {
                "message": "Error setting workspace app health",
                "detail": f'workspace app ID "{stranger}" not found',
            },
        ),
        (
            {"healths": {docs: "healthy"}},
            404,
            {
                "message": "Error setting workspace app health",
                "detail": f'workspace app "{docs}" ("docs") does not have healthchecks enabled',
            },
        ),
        (
            {"healths": {"nope": "healthy"}},
            400,
            {
                "message": "Request body must be valid JSON.",
                "detail": "invalid UUID length: 4",
            },
        ),
        ({"healths": [1]}, 400, None),
        ([1], 400, None),
    ]
    for body, status, envelope in cases:
        resp = _post(rest, ws, body)
        assert resp.status_code == status, body
        if envelope is not None:
            assert resp.get_json() == envelope, body
        else:
            assert resp.get_json()["message"] == "Request body must be valid JSON."
    bad = _post(rest, ws, None, raw="{not json")
    assert (
        bad.status_code == 400 and bad.get_json()["message"] == "Request body must be valid JSON."
    )


def test_app_health_needs_an_agent(rest, provision) -> None:
    ws = provision.workspace()
    body = {"healths": {str(uuid.uuid4()): "healthy"}}
    resp = rest.post(HEALTH, json=body, headers={"Coder-Session-Token": ws.api_key})
    assert resp.status_code == 401
    assert resp.get_json()["message"] == "Workspace agent token invalid."


def _patch(rest, ws, body):
    return rest.patch(
        STATUS, json=body, headers={"Coder-Session-Token": ws.agent("main").auth_token}
    )


def test_app_status_is_appended_newest_first(rest, clock, provision) -> None:
    ws = provision.workspace()
    for state, message in (("working", "step 1"), ("idle", "waiting"), ("complete", "done")):
        resp = _patch(
            rest,
            ws,
            {
                "app_slug": "docs",
                "state": state,
                "message": message,
                "uri": "https://x",
                "icon": "ignored",
                "needs_user_attention": True,
            },
        )
        assert resp.status_code == 200 and resp.get_data(as_text=True) == "null\n"
        clock.advance(seconds=1)
    docs = next(a for a in _agent(rest, ws)["apps"] if a["slug"] == "docs")
    statuses = docs["statuses"]
    assert [s["state"] for s in statuses] == ["complete", "idle", "working"]
    assert statuses[0]["message"] == "done" and statuses[0]["uri"] == "https://x"
    assert statuses[0]["icon"] == "" and statuses[0]["needs_user_attention"] is False
    assert statuses[0]["app_id"] == docs["id"] and statuses[0]["workspace_id"] == ws.workspace_id
    assert statuses[0]["created_at"] == "2026-01-01T00:00:02Z"


@pytest.mark.parametrize(
    ("body", "envelope"),
    [
        (
            {"app_slug": "docs", "state": "idle", "message": "x" * 161},
            {
                "message": "Message is too long.",
                "detail": "Message must be less than 160 characters.",
                "validations": [
                    {"field": "message", "detail": "Message must be less than 160 characters."}
                ],
            },
        ),
        (
            {"app_slug": "docs", "state": "sleeping"},
            {
                "message": "Invalid state provided.",
                "detail": 'invalid state: "sleeping"',
                "validations": [
                    {
                        "field": "state",
                        "detail": "State must be one of: complete, failure, working, idle.",
                    }
                ],
            },
        ),
        (
            {"app_slug": "nope", "state": "idle"},
            {
                "message": "Failed to get workspace app.",
                "detail": 'No app found with slug "nope"',
            },
        ),
    ],
)
def test_app_status_refusals(rest, provision, body, envelope) -> None:
    resp = _patch(rest, provision.workspace(), body)
    assert resp.status_code == 400 and resp.get_json() == envelope
