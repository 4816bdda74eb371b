from __future__ import annotations


def test_agent_connection_info(rest, provision) -> None:
    ws = provision.workspace()
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}/connection",
        headers={"Coder-Session-Token": ws.api_key},
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {
        "derp_map",
        "derp_force_websockets",
        "disable_direct_connections",
        "hostname_suffix",
    }
    region = body["derp_map"]["regions"]["999"]
    assert region["regionID"] == 999 and region["nodes"][0]["stunport"] == -1
    assert body["hostname_suffix"] == "coder"
    generic = rest.get(
        "/api/v2/workspaceagents/connection", headers={"Coder-Session-Token": ws.api_key}
    )
    assert generic.get_json() == body


def test_connection_info_is_gated_like_the_agent(rest, provision) -> None:
    ws = provision.workspace()
    stranger = provision.user()
    resp = rest.get(
        f"/api/v2/workspaceagents/{ws.agent('main').id}/connection",
        headers={"Coder-Session-Token": stranger.api_key},
    )
    assert resp.status_code == 404
    assert rest.get("/api/v2/workspaceagents/connection").status_code == 401
