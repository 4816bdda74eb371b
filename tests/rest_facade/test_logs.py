"""Agent logs over REST: ingest, read, and follow with real WebSocket and
SSE clients against a real HTTP server."""

from __future__ import annotations

import http.client
import json
import uuid
from urllib.parse import urlencode, urlsplit

import pytest
import websocket

API = "/api/v2/workspaceagents"


def patch_logs(rest, token: str, logs, source=None, path="me/logs"):
    body = {"logs": logs}
    if source is not None:
        body["log_source_id"] = source
    return rest.patch(f"{API}/{path}", json=body, headers={"Coder-Session-Token": token})


def test_patch_logs_and_read_back(rest, provision) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    resp = patch_logs(
        rest,
        token,
        [
            {"created_at": "2020-01-01T00:00:00Z", "output": "hello", "level": ""},
            {"output": "oops", "level": "error"},
        ],
    )
    assert resp.status_code == 200 and resp.get_data() == b"null\n"
    got = rest.get(f"{API}/{ws.agent('main').id}/logs", headers={"Coder-Session-Token": ws.api_key})
    assert got.status_code == 200
    body = got.get_json()
    assert [(x["output"], x["level"]) for x in body] == [("hello", "info"), ("oops", "error")]
    assert set(body[0]) == {"id", "created_at", "output", "level", "source_id"}
    assert body[0]["created_at"] != "2020-01-01T00:00:00Z"  # the server's time wins
    assert body[0]["source_id"] == "3b579bf4-1ed8-4b99-87a8-e9a1e3410410"  # External
    after = rest.get(
        f"{API}/{ws.agent('main').id}/startup-logs?after={body[0]['id']}",
        headers={"Coder-Session-Token": ws.api_key},
    ).get_json()
    assert [x["output"] for x in after] == ["oops"]


def test_legacy_startup_logs_route(rest, provision) -> None:
    ws = provision.workspace()
    resp = patch_logs(rest, ws.agent("main").auth_token, [{"output": "x"}], path="me/startup-logs")
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("logs", "status", "message"),
    [
        ([], 400, "No logs provided."),
        ([{"output": "x", "level": "loud"}], 400, "Invalid log level provided."),
    ],
)
def test_patch_logs_errors(rest, provision, logs, status, message) -> None:
    ws = provision.workspace()
    resp = patch_logs(rest, ws.agent("main").auth_token, logs)
    assert resp.status_code == status and resp.get_json()["message"] == message


def test_patch_logs_bad_json_and_auth(rest, provision) -> None:
    ws = provision.workspace()
    resp = rest.patch(
        f"{API}/me/logs", data=b"{", headers={"Coder-Session-Token": ws.agent("main").auth_token}
    )
    assert resp.status_code == 400
    assert resp.get_json()["message"] == "Request body must be valid JSON."
    assert rest.patch(f"{API}/me/logs", json={"logs": [{"output": "x"}]}).status_code == 401


def test_limit_answers_413(rest, provision, settings) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    big = "x" * (settings.agent_logs_limit_bytes + 1)
    resp = patch_logs(rest, token, [{"output": big}])
    assert resp.status_code == 413 and resp.get_json() == {"message": "Logs limit exceeded"}
    agent = rest.get(
        f"{API}/{ws.agent('main').id}", headers={"Coder-Session-Token": ws.api_key}
    ).get_json()
    assert agent["logs_overflowed"] is True


def test_log_source_is_201_twice(rest, provision) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    source = str(uuid.uuid4())
    body = {"id": source, "display_name": "Builder", "icon": "/icon/b.svg"}
    first = rest.post(f"{API}/me/log-source", json=body, headers={"Coder-Session-Token": token})
    again = rest.post(f"{API}/me/log-source", json=body, headers={"Coder-Session-Token": token})
    assert first.status_code == again.status_code == 201
    assert first.get_json()["id"] == source == again.get_json()["id"]
    assert set(first.get_json()) == {
        "id",
        "workspace_agent_id",
        "created_at",
        "display_name",
        "icon",
    }
    agent = rest.get(
        f"{API}/{ws.agent('main').id}", headers={"Coder-Session-Token": ws.api_key}
    ).get_json()
    assert source in [s["id"] for s in agent["log_sources"]]
    bad = rest.post(
        f"{API}/me/log-source",
        json={"id": "nope", "display_name": "x"},
        headers={"Coder-Session-Token": token},
    )
    assert bad.status_code == 400


def test_text_format(rest, provision) -> None:
    ws = provision.workspace()
    patch_logs(
        rest, ws.agent("main").auth_token, [{"output": "one", "level": "warn"}, {"output": "two"}]
    )
    resp = rest.get(
        f"{API}/{ws.agent('main').id}/logs?format=text", headers={"Coder-Session-Token": ws.api_key}
    )
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    lines = resp.get_data(as_text=True).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("WARN  one") and lines[1].endswith("INFO  two")
    assert lines[0][:4].isdigit() and "T" in lines[0].split(" ")[0]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("before=-5", "before"),
        ("format=text&follow", "format"),
        ("format=xml", "format"),
    ],
)
def test_query_errors_in_the_envelope(rest, provision, query, field) -> None:
    ws = provision.workspace()
    resp = rest.get(
        f"{API}/{ws.agent('main').id}/logs?{query}", headers={"Coder-Session-Token": ws.api_key}
    )
    assert resp.status_code == 400
    assert resp.get_json()["validations"][0]["field"] == field


# Go's strconv.ParseInt(s, 10, 64): ASCII digits with an optional sign,
# within int64. Python's int() would take all of these.
NOT_CURSORS = (
    "9223372036854775808",
    "99999999999999999999999",
    "-9223372036854775809",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff13",  # FULLWIDTH DIGIT THREE
    " 5",
    "5 ",
    "1_000",
    "0x10",
    "1e3",
    "+",
    "-1",
)


@pytest.mark.parametrize(
    ("name", "variant"),
    [("after", "list"), ("before", "list"), ("after", "sse"), ("after", "websocket")],
)
def test_cursors_are_go_integers(facade_url, provision, name, variant) -> None:
    """Out of int64, other scripts' digits, spaces, separators: Coder's 400
    on the cursor, never a 500 — also on the follow variants, before any
    stream starts."""
    ws = provision.workspace()
    headers = {"Coder-Session-Token": ws.api_key}
    extra: dict[str, str] = {}
    if variant == "sse":
        headers["Accept"] = "text/event-stream"
    if variant == "websocket":
        headers.update(
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
        )
    if variant != "list":
        extra["follow"] = ""
    detail = f'Query param "{name}" must be an integer greater than or equal to zero.'
    parts = urlsplit(facade_url)
    for value in NOT_CURSORS:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        query = urlencode({name: value, **extra})
        conn.request("GET", f"{API}/{ws.agent('main').id}/logs?{query}", headers=headers)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert (resp.status, body) == (
            400,
            {"message": detail, "validations": [{"field": name, "detail": detail}]},
        ), value


def test_a_leading_plus_is_a_cursor_as_in_go(rest, provision) -> None:
    ws = provision.workspace()
    rest.patch(
        f"{API}/me/logs",
        json={"logs": [{"output": "one"}, {"output": "two"}]},
        headers={"Coder-Session-Token": ws.agent("main").auth_token},
    )
    url = f"{API}/{ws.agent('main').id}/logs"
    headers = {"Coder-Session-Token": ws.api_key}
    first = rest.get(url, headers=headers).get_json()[0]["id"]
    resp = rest.get(url, query_string={"after": f"+{first}"}, headers=headers)
    assert [log["output"] for log in resp.get_json()] == ["two"]
    resp = rest.get(url, query_string={"before": "9223372036854775807"}, headers=headers)
    assert [log["output"] for log in resp.get_json()] == ["one", "two"]


def test_read_needs_access(rest, provision) -> None:
    ws = provision.workspace()
    stranger = provision.user()
    resp = rest.get(
        f"{API}/{ws.agent('main').id}/logs", headers={"Coder-Session-Token": stranger.api_key}
    )
    assert resp.status_code == 404


# -- follow: real clients -----------------------------------------------------


def _ws(facade_url: str, agent_id: str, api_key: str, after: int | None = None):
    url = facade_url.replace("http://", "ws://") + f"{API}/{agent_id}/logs?follow"
    if after is not None:
        url += f"&after={after}"
    return websocket.create_connection(url, header=[f"Coder-Session-Token: {api_key}"], timeout=15)


def _patch(facade_url: str, token: str, *outputs: str) -> int:
    parts = urlsplit(facade_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    conn.request(
        "PATCH",
        f"{API}/me/logs",
        body=json.dumps({"logs": [{"output": o} for o in outputs]}),
        headers={"Coder-Session-Token": token, "Content-Type": "application/json"},
    )
    status = conn.getresponse().status
    conn.close()
    return status


def test_websocket_follow_resume_and_close(facade_url, provision) -> None:
    ws = provision.workspace()
    agent_id, token = ws.agent("main").id, ws.agent("main").auth_token
    assert _patch(facade_url, token, "a", "b") == 200
    client = _ws(facade_url, agent_id, ws.api_key)
    backlog = json.loads(client.recv())
    assert [x["output"] for x in backlog] == ["a", "b"]
    assert _patch(facade_url, token, "c") == 200
    assert [x["output"] for x in json.loads(client.recv())] == ["c"]
    last = max(x["id"] for x in backlog)
    client.close()
    # Reconnect with after = the last id seen before "c": exactly "c" comes back.
    again = _ws(facade_url, agent_id, ws.api_key, after=last)
    assert [x["output"] for x in json.loads(again.recv())] == ["c"]
    provision.rebuild(ws)
    # A newer build replaced the agent: the server closes normally (1000).
    while True:
        opcode, data = again.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(data[:2], "big") == 1000
    again.shutdown()


def test_websocket_empty_backlog_and_overflow_marker(facade_url, provision, settings) -> None:
    ws = provision.workspace()
    client = _ws(facade_url, ws.agent("main").id, ws.api_key)
    assert json.loads(client.recv()) == []
    assert (
        _patch(facade_url, ws.agent("main").auth_token, "x" * (settings.agent_logs_limit_bytes + 1))
        == 413
    )
    marker = json.loads(client.recv())
    assert len(marker) == 1 and marker[0]["id"] == 0 and "log limit" in marker[0]["output"]
    client.close()


def test_follow_errors_before_upgrade(facade_url, provision) -> None:
    ws = provision.workspace()
    url = facade_url.replace("http://", "ws://") + f"{API}/{ws.agent('main').id}/logs?follow"
    client = websocket.WebSocket()
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            client.connect(
                url, header=[f"Coder-Session-Token: {provision.user().api_key}"], timeout=15
            )
    finally:
        if client.sock is not None:
            client.sock.close()
    assert info.value.status_code == 404
    assert json.loads(info.value.resp_body) == {
        "message": "Resource not found or you do not have access to this resource"
    }


def test_head_on_a_follow_leaves_no_stream_behind(facade_url, provision, core) -> None:
    """HEAD answers like GET without a body; a follow whose body is never
    read must still end its core stream."""
    from server.pubsub import AGENT_LOGS
    from tests.rest_facade._live import wait_until

    ws = provision.workspace()
    agent_id = ws.agent("main").id
    parts = urlsplit(facade_url)
    for _ in range(3):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        conn.request(
            "HEAD",
            f"{API}/{agent_id}/logs?follow",
            headers={"Coder-Session-Token": ws.api_key, "Accept": "text/event-stream"},
        )
        assert conn.getresponse().status == 200
        conn.close()
    wait_until(
        lambda: core.db.pubsub.subscribers(AGENT_LOGS, agent_id) == 0,
        what="the core's follow streams to end",
    )


def test_sse_follow(facade_url, provision) -> None:
    ws = provision.workspace()
    agent_id, token = ws.agent("main").id, ws.agent("main").auth_token
    _patch(facade_url, token, "first")
    parts = urlsplit(facade_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    conn.request(
        "GET",
        f"{API}/{agent_id}/logs?follow",
        headers={"Coder-Session-Token": ws.api_key, "Accept": "text/event-stream"},
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")

    def next_event() -> tuple[str, object]:
        event, data = "message", None
        while True:
            line = resp.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and data is not None:
                return event, data

    event, data = next_event()
    assert event == "logs" and [x["output"] for x in data] == ["first"]
    _patch(facade_url, token, "second")
    event, data = next_event()
    assert event == "logs" and [x["output"] for x in data] == ["second"]
    conn.close()


def test_streams_are_capped_with_503_and_per_session_with_429(settings, core, provision) -> None:
    """Past the cap on open streams the facade says 503, one session may hold
    only its share (429 past it), and a closed stream frees its slot."""
    import dataclasses

    from agentplane.admin.v1 import admin_pb2

    from rest_facade.streams import StreamSlots
    from tests.conftest import ADMIN_METADATA
    from tests.rest_facade._live import live_facade, wait_until

    small = dataclasses.replace(settings, facade_max_streams=6, facade_max_streams_per_session=3)
    slots = StreamSlots(6, 3)
    ws = provision.workspace()
    agent_id = ws.agent("main").id

    def new_token() -> str:
        return provision.stub.CreateToken(
            admin_pb2.CreateTokenRequest(user=ws.username), metadata=ADMIN_METADATA
        ).api_key

    def status_of(url: str, token: str) -> tuple[int, str]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        conn.request(
            "GET",
            f"{API}/{agent_id}/logs?follow",
            headers={"Coder-Session-Token": token, "Accept": "text/event-stream"},
        )
        resp = conn.getresponse()
        status = resp.status
        body = json.loads(resp.read()) if status != 200 else {}
        conn.close()
        return status, body.get("message", "")

    with live_facade(small, core.address) as url:
        # One session takes its share, and no more.
        clients = [_ws(url, agent_id, ws.api_key) for _ in range(slots.per_session)]
        for c in clients:
            assert json.loads(c.recv()) == []
        assert status_of(url, ws.api_key) == (429, "Too many open streams for this session.")
        # Other sessions fill the server; past the cap it is 503.
        while len(clients) < slots.limit:
            clients.append(_ws(url, agent_id, new_token()))
            assert json.loads(clients[-1].recv()) == []
        assert status_of(url, new_token()) == (503, "Too many open streams.")
        clients.pop().close()
        late = new_token()

        def reopened() -> bool:
            client = websocket.WebSocket()
            try:
                client.connect(
                    url.replace("http://", "ws://") + f"{API}/{agent_id}/logs?follow",
                    header=[f"Coder-Session-Token: {late}"],
                    timeout=15,
                )
            except websocket.WebSocketBadStatusException:
                if client.sock is not None:
                    client.sock.close()
                return False
            clients.append(client)
            return True

        wait_until(reopened, timeout=10, what="a freed stream slot")
        for c in clients:
            c.close()
