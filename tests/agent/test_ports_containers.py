"""Listening ports and containers through a real agent's tunnel, over gRPC
and the REST routes (both backends); the dialer's error table; the cron
parser the agent uses."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import stat
import uuid
from pathlib import Path

import grpc
import pytest
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from agent.cron import CronError, Schedule
from server.embedded import EmbeddedCore
from tests.agent._support import AgentProcess, conn_stub, provision, user_md, wait_for
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(120)


def _listen(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.fixture
def app_socket():
    s = _listen()
    yield s
    s.close()


@pytest.fixture
def running(core: EmbeddedCore, tmp_path: Path, app_socket: socket.socket):
    app_port = app_socket.getsockname()[1]
    spec = {
        "resources": [
            {
                "name": "r",
                "agents": [
                    {
                        "name": "main",
                        "directory": str(tmp_path),
                        "apps": [{"slug": "app", "url": f"http://localhost:{app_port}/x"}],
                    }
                ],
            }
        ]
    }
    user, build = provision(core.address, spec, ADMIN_TOKEN)
    agent_row = build.agents[0]
    # A docker that answers like a real one, so the Docker path is exercised
    # (no Docker daemon runs here).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "docker"
    inspect = [
        {
            "Id": "c1" * 32,
            "Name": "/dev-box",
            "Created": "2026-01-02T03:04:05.123456789Z",
            "Config": {
                "Image": "ubuntu:24.04",
                "Labels": {
                    "devcontainer.local_folder": "/work/project",
                    "devcontainer.config_file": "/work/project/.devcontainer/devcontainer.json",
                    "team": "blue",
                },
            },
            "State": {"Running": True, "Status": "running"},
            "Mounts": [{"Source": "/work/project", "Destination": "/workspaces/project"}],
            "NetworkSettings": {
                "Ports": {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}
            },
        },
        {
            "Id": "c2" * 32,
            "Name": "/other",
            "Created": "2026-01-02T03:04:05Z",
            "Config": {"Image": "redis", "Labels": {"team": "red"}},
            "State": {"Running": False, "Status": "exited"},
        },
    ]
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  ps) echo {'c1' * 32}; echo {'c2' * 32} ;;\n"
        f"  inspect) cat <<'EOF'\n{json.dumps(inspect)}\nEOF\n ;;\n"
        "  *) echo unsupported >&2; exit 1 ;;\n"
        "esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    with AgentProcess(core.address, agent_row.auth_token, tmp_path, env=env) as agent:
        channel = grpc.insecure_channel(core.address)
        stub = conn_stub(channel)

        def ready() -> bool:
            try:
                stub.ListPtySessions(
                    cpb.ListPtySessionsRequest(agent_id=agent_row.id),
                    metadata=user_md(user.api_key),
                    timeout=5,
                )
            except grpc.RpcError:
                return False
            return True

        wait_for(ready, 30, "the agent's tunnel")
        yield user, agent_row, channel, agent, app_port
        channel.close()


def _ports(channel: grpc.Channel, api_key: str, agent_id: str) -> dict[int, str]:
    resp = conn_stub(channel).ListListeningPorts(
        cpb.ListListeningPortsRequest(agent_id=agent_id), metadata=user_md(api_key), timeout=30
    )
    return {p.port: p.process_name for p in resp.ports}


def test_listening_ports_appear_and_go(running) -> None:
    user, agent_row, channel, _agent, app_port = running
    opened = _listen()
    port = opened.getsockname()[1]
    ignored = None
    for candidate in (27018, 28017, 3389, 989):
        try:
            ignored = _listen(candidate)
            break
        except OSError:
            continue
    try:
        ports = wait_for(
            lambda: (p := _ports(channel, user.api_key, agent_row.id)) and port in p and p
        )
        assert ports[port]  # the process name (this test's python)
        assert app_port not in ports  # an app's port
        assert all(p >= 9 for p in ports)
        assert 5432 not in ports  # PostgreSQL listens here: an ignored port
        if ignored is not None:
            assert ignored.getsockname()[1] not in ports
    finally:
        opened.close()
        if ignored is not None:
            ignored.close()
    wait_for(lambda: port not in _ports(channel, user.api_key, agent_row.id), 10, "port gone")


def test_containers_labels_and_devcontainers(running, rest) -> None:
    user, agent_row, _channel, _agent, _app_port = running
    headers = {"Coder-Session-Token": user.api_key}
    resp = rest.get(f"/api/v2/workspaceagents/{agent_row.id}/containers", headers=headers)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert [c["name"] for c in body["containers"]] == ["dev-box", "other"]
    box = body["containers"][0]
    assert box["created_at"] == "2026-01-02T03:04:05.123456Z"
    assert box["ports"] == [
        {"host_ip": "0.0.0.0", "host_port": 18080, "network": "tcp", "port": 8080}
    ]
    assert box["volumes"] == {"/work/project": "/workspaces/project"}
    assert box["running"] is True and box["status"] == "running"
    (dc,) = body["devcontainers"]
    assert dc["workspace_folder"] == "/work/project" and dc["status"] == "running"
    assert dc["container"]["id"] == "c1" * 32 and dc["subagent_id"] is None
    assert body["warnings"] == []

    filtered = rest.get(
        f"/api/v2/workspaceagents/{agent_row.id}/containers?label=team=red", headers=headers
    ).json
    assert [c["name"] for c in filtered["containers"]] == ["other"]
    for bad in ("team", "a=b=c"):
        resp = rest.get(
            f"/api/v2/workspaceagents/{agent_row.id}/containers?label={bad}", headers=headers
        )
        assert resp.status_code == 400
        assert resp.json == {
            "message": "Invalid label format",
            "detail": "Labels must be in the format key=value",
        }
    unknown = rest.delete(
        f"/api/v2/workspaceagents/{agent_row.id}/containers/devcontainers/{uuid.uuid4()}",
        headers=headers,
    )
    assert unknown.status_code == 404
    assert unknown.json["message"] == "Devcontainer not found."
    # No devcontainer CLI here: recreating is an internal error, never a hang.
    recreate = rest.post(
        f"/api/v2/workspaceagents/{agent_row.id}/containers/devcontainers/{dc['id']}/recreate",
        headers=headers,
    )
    assert recreate.status_code == 500
    sessions = rest.get(f"/api/v2/workspaceagents/{agent_row.id}/pty-sessions", headers=headers)
    assert sessions.status_code == 200 and sessions.json == {"sessions": []}
    ports = rest.get(f"/api/v2/workspaceagents/{agent_row.id}/listening-ports", headers=headers)
    assert ports.status_code == 200
    assert all(set(p) == {"network", "port", "process_name"} for p in ports.json["ports"])


def test_without_a_docker_daemon_the_list_is_empty_with_a_warning(core, tmp_path, rest) -> None:
    user, build = provision(
        core.address, {"resources": [{"name": "r", "agents": [{"name": "m"}]}]}, ADMIN_TOKEN
    )
    agent_row = build.agents[0]
    env = {"PATH": "/usr/bin:/bin"}  # no docker at all on this PATH
    with AgentProcess(core.address, agent_row.auth_token, tmp_path, env=env):
        headers = {"Coder-Session-Token": user.api_key}
        url = f"/api/v2/workspaceagents/{agent_row.id}/containers"
        resp = wait_for(lambda: (r := rest.get(url, headers=headers)).status_code == 200 and r)
        assert resp.json["containers"] == [] and resp.json["devcontainers"] == []
        assert resp.json["warnings"] == ["Docker is not installed: no containers are listed."]


def test_agent_states_and_the_dial_error(core, tmp_path, rest) -> None:
    user, build = provision(
        core.address, {"resources": [{"name": "r", "agents": [{"name": "m"}]}]}, ADMIN_TOKEN
    )
    agent_row = build.agents[0]
    headers = {"Coder-Session-Token": user.api_key}
    url = f"/api/v2/workspaceagents/{agent_row.id}/listening-ports"
    resp = rest.get(url, headers=headers)
    assert resp.status_code == 400
    assert resp.json == {
        "message": 'Agent state is "connecting", it must be in the "connected" state.'
    }
    # Connected (it called the agent API) but holding no tunnel: an older
    # or foreign agent.
    with grpc.insecure_channel(core.address) as ch:
        agent_pb2_grpc.AgentStub(ch).GetManifest(
            agent_pb2.GetManifestRequest(),
            metadata=(("coder-session-token", agent_row.auth_token),),
        )
    resp = rest.get(url, headers=headers)
    assert resp.status_code == 500
    assert resp.json["message"] == "Internal error dialing workspace agent."
    for path in ("containers", "pty-sessions"):
        other = rest.get(f"/api/v2/workspaceagents/{agent_row.id}/{path}", headers=headers)
        assert other.status_code == 500
    missing = rest.get(f"/api/v2/workspaceagents/{uuid.uuid4()}/listening-ports", headers=headers)
    assert missing.status_code == 404
    bad = rest.get("/api/v2/workspaceagents/not-a-uuid/listening-ports", headers=headers)
    assert bad.status_code == 400


def test_an_agent_that_does_not_answer_times_out(core, tmp_path, rest) -> None:
    """A tunnel whose agent never answers: Coder's timeout answers (the core's
    30 s shortened for the test)."""
    import threading

    from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
    from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc

    user, build = provision(
        core.address, {"resources": [{"name": "r", "agents": [{"name": "m"}]}]}, ADMIN_TOKEN
    )
    agent_row = build.agents[0]
    core.core.dialer.timeout = 1.0
    done = threading.Event()

    def frames():
        yield tpb.TunnelRequest(hello=tpb.Hello(version="v9.9.9"))
        done.wait(30)

    with grpc.insecure_channel(core.address) as ch:
        call = tpb_grpc.AgentTunnelServiceStub(ch).Tunnel(
            frames(), metadata=(("coder-session-token", agent_row.auth_token),)
        )
        assert next(call).id == 0  # the tunnel is open
        headers = {"Coder-Session-Token": user.api_key}
        base = f"/api/v2/workspaceagents/{agent_row.id}"
        resp = rest.get(f"{base}/containers", headers=headers)
        assert resp.status_code == 408
        assert resp.json == {
            "message": "Failed to fetch containers from agent.",
            "detail": "Request timed out.",
        }
        resp = rest.get(f"{base}/listening-ports", headers=headers)
        assert resp.status_code == 500
        assert resp.json["message"] == "Internal error fetching listening ports."
        done.set()
        call.cancel()


def test_cron_reads_seconds_first_like_coder() -> None:
    t = dt.datetime(2026, 3, 1, 12, 0, 0)
    assert Schedule.parse("*/5 * * * *").next_after(t) == t + dt.timedelta(seconds=5)
    assert Schedule.parse("0 */5 * * * *").next_after(t) == t + dt.timedelta(minutes=5)
    assert Schedule.parse("30 0 9 * * mon").next_after(t) == dt.datetime(2026, 3, 2, 9, 0, 30)
    assert Schedule.parse("0 0 0 1 jan *").next_after(t) == dt.datetime(2027, 1, 1)
    for bad in ("", "* * *", "61 * * * *", "*/0 * * * *", "a b c d e", "5-1 * * * *"):
        with pytest.raises(CronError):
            Schedule.parse(bad)
