"""The WebSocket and SSE doors onto the agent's tunnel, on the facade's
front with a real ``agentplane agent``: ``{id}/pty`` (a real shell: type,
resize, reconnect with scrollback, exit), ``{id}/containers/watch``,
``{id}/watch-metadata`` (SSE) and ``watch-metadata-ws``; and what is refused
before any upgrade."""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import websocket
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb

from tests.agent._support import AgentProcess, conn_stub, provision, user_md, wait_for
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(120)
API = "/api/v2/workspaceagents"


@pytest.fixture
def running(core, facade_url, tmp_path: Path):
    """A user, their workspace's agent running (one metadata script), the
    facade's URL."""
    spec = {
        "resources": [
            {
                "name": "r",
                "agents": [
                    {
                        "name": "main",
                        "directory": str(tmp_path),
                        "metadata": [
                            {"key": "greet", "script": "echo hello", "interval": 1, "timeout": 1},
                        ],
                    }
                ],
            }
        ]
    }
    user, build = provision(core.address, spec, ADMIN_TOKEN)
    agent_row = build.agents[0]
    with AgentProcess(core.address, agent_row.auth_token, tmp_path) as agent:
        channel = grpc.insecure_channel(core.address)
        stub = conn_stub(channel)

        def listed() -> bool:
            try:
                stub.ListPtySessions(
                    cpb.ListPtySessionsRequest(agent_id=agent_row.id),
                    metadata=user_md(user.api_key),
                    timeout=5,
                )
            except grpc.RpcError:
                return False
            return True

        wait_for(listed, 30, "the agent's tunnel")
        yield user, agent_row, facade_url, agent
        channel.close()


def _ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def _read_until(ws: websocket.WebSocket, marker: bytes, limit: float = 30) -> bytes:
    ws.settimeout(limit)
    seen = b""
    while marker not in seen:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        seen += data
    return seen


def test_pty_shell_resize_reconnect_exit(running) -> None:
    user, agent_row, base, _agent = running
    reconnect = str(uuid.uuid4())
    url = _ws_url(base, f"{API}/{agent_row.id}/pty?reconnect={reconnect}&height=24&width=80")
    term = websocket.create_connection(url, header=[f"Coder-Session-Token: {user.api_key}"])
    # Several objects in one message, as a JSON stream.
    term.send('{"data": "echo fir"}{"data": "st-marker\\r"}')
    _read_until(term, b"first-marker\r\n")
    term.send(json.dumps({"height": 30, "width": 100}))
    term.send(json.dumps({"data": "stty size\r"}))
    _read_until(term, b"30 100")
    term.close()
    # The same id re-attaches: the scrollback comes first.
    again = websocket.create_connection(url, header=[f"Coder-Session-Token: {user.api_key}"])
    assert b"first-marker" in _read_until(again, b"first-marker")
    again.send(json.dumps({"data": "exit\r"}))
    again.settimeout(30)
    while True:
        opcode, data = again.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(data[:2], "big") == 1000
    again.shutdown()


def _get(base: str, path: str, token: str) -> tuple[int, dict]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=40)
    conn.request("GET", path, headers={"Coder-Session-Token": token})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("reconnect=nope", "reconnect"),
        (f"reconnect={uuid.uuid4()}&height=70000", "height"),
        (f"reconnect={uuid.uuid4()}&width=-1", "width"),
        (f"reconnect={uuid.uuid4()}&backend_type=tmux", "backend_type"),
    ],
)
def test_pty_bad_query_is_400_before_the_upgrade(running, query, field) -> None:
    user, agent_row, base, _agent = running
    status, body = _get(base, f"{API}/{agent_row.id}/pty?{query}", user.api_key)
    assert status == 400 and body["message"] == "Invalid query parameters."
    assert [v["field"] for v in body["validations"]] == [field]


def test_pty_of_another_users_agent_is_the_missing_404(running, core) -> None:
    _user, agent_row, base, _agent = running
    from tests.conftest import Provisioner

    with grpc.insecure_channel(core.address) as channel:
        stranger = Provisioner(channel).user()
    url = _ws_url(base, f"{API}/{agent_row.id}/pty?reconnect={uuid.uuid4()}")
    missing = _ws_url(base, f"{API}/{uuid.uuid4()}/pty?reconnect={uuid.uuid4()}")
    bodies = []
    for target in (url, missing):
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(target, header=[f"Coder-Session-Token: {stranger.api_key}"])
        assert info.value.status_code == 404
        bodies.append(info.value.resp_body)
    assert bodies[0] == bodies[1]


def test_containers_watch_and_metadata_doors(running) -> None:
    user, agent_row, base, _agent = running
    header = [f"Coder-Session-Token: {user.api_key}"]
    watch = websocket.create_connection(
        _ws_url(base, f"{API}/{agent_row.id}/containers/watch"), header=header, timeout=40
    )
    first = json.loads(watch.recv())
    assert set(first) == {"containers", "devcontainers", "warnings"}
    watch.close()

    meta = websocket.create_connection(
        _ws_url(base, f"{API}/{agent_row.id}/watch-metadata-ws"), header=header, timeout=40
    )

    def greeted() -> dict | None:
        event = json.loads(meta.recv())
        assert event["type"] == "data"
        for item in event["data"]:
            if item["description"]["key"] == "greet" and item["result"]["value"].strip():
                return item
        return None

    item = wait_for(greeted, 30, "the metadata value over the WebSocket")
    assert item["result"]["value"].strip() == "hello"
    meta.close()

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=40)
    conn.request(
        "GET", f"{API}/{agent_row.id}/watch-metadata", headers={"Coder-Session-Token": user.api_key}
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    event, data = "", None
    while data is None:
        line = resp.fp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "data":
            data = json.loads(line[6:])
    assert [m["description"]["key"] for m in data] == ["greet"]
    conn.close()
