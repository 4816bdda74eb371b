"""The reference agent end to end: a real ``agentplane agent`` process
against a real ``agentplane server`` process, on both backends.

Startup scripts' output reaches ``GET {id}/logs`` and the lifecycle reaches
ready; a failing script gives start_error; metadata values appear; app
health follows a real HTTP server; SIGTERM runs the stop script; a server
restart in the middle of a startup script loses no line; a new build ends
the old agent; a refused token and an unreachable server are said on
stderr."""

from __future__ import annotations

import http.server
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb

from tests.agent._support import AgentProcess, conn_stub, provision, user_md, wait_for
from tests.conftest import BACKENDS
from tests.processes import Server, free_port

pytestmark = pytest.mark.timeout(180)
ADMIN = "agent-e2e-admin"


@pytest.fixture
def server(fresh_backend, tmp_path: Path):
    srv = Server(tmp_path / "data", fresh_backend.url, env={"AGENTPLANE_ADMIN_TOKEN": ADMIN})
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop()


def _spec(tmp: Path, **agent: Any) -> dict[str, Any]:
    return {
        "resources": [{"name": "r", "agents": [{"name": "main", "directory": str(tmp), **agent}]}]
    }


def _agent(server: Server, user: Any, agent_id: str) -> dict[str, Any]:
    status, body = server.get(f"/workspaceagents/{agent_id}", user.api_key)
    assert status == 200, body
    return body


def _lifecycle(server: Server, user: Any, agent_id: str, *states: str) -> dict[str, Any]:
    return wait_for(
        lambda: (a := _agent(server, user, agent_id))["lifecycle_state"] in states and a,
        60,
        f"lifecycle {states}",
    )


def _outputs(server: Server, user: Any, agent_id: str) -> list[tuple[str, str]]:
    status, logs = server.get(f"/workspaceagents/{agent_id}/logs", user.api_key)
    assert status == 200, logs
    return [(log["output"], log["level"]) for log in logs]


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_startup_logs_lifecycle_and_metadata(server: Server, tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        env={"GREETING": "hello-from-env"},
        scripts=[
            {
                "display_name": "setup",
                "script": 'echo "$GREETING in $(pwd)"; echo oops >&2; echo done',
                "run_on_start": True,
                "start_blocks_login": True,
                "timeout_seconds": 60,
            }
        ],
        metadata=[
            {"key": "answer", "display_name": "Answer", "script": "echo 42", "interval": 1},
            {"key": "word", "script": "printf meta-word", "interval": 1, "order": -1},
        ],
    )
    user, build = provision(server.grpc, spec, ADMIN)
    agent_row = build.agents[0]
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        body = _lifecycle(server, user, agent_row.id, "ready", "start_error")
        assert body["lifecycle_state"] == "ready"
        assert body["status"] == "connected"
        assert re.fullmatch(r"v\d+\.\d+\.\d+.*", body["version"])
        assert body["expanded_directory"] == str(tmp_path)
        outputs = _outputs(server, user, agent_row.id)
        assert (f"hello-from-env in {tmp_path}", "info") in outputs
        assert ("oops", "error") in outputs
        assert ("done", "info") in outputs

        # Metadata, through the watch RPC: full list, Coder's order.
        with grpc.insecure_channel(server.grpc) as channel:
            stream = conn_stub(channel).WatchWorkspaceAgentMetadata(
                cpb.WatchWorkspaceAgentMetadataRequest(agent_id=agent_row.id),
                metadata=user_md(user.api_key),
                timeout=60,
            )
            for message in stream:
                values = {m.description.key: m.result.value for m in message.metadata}
                if values.get("answer", "").strip() == "42" and values.get("word") == "meta-word":
                    break
            assert [m.description.key for m in message.metadata] == ["word", "answer"]
            stream.cancel()
        assert agent.terminate() == 0


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_failing_script_is_start_error(server: Server, tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        scripts=[
            {"display_name": "ok", "script": "true", "run_on_start": True},
            {"display_name": "bad", "script": "echo failing; exit 3", "run_on_start": True},
        ],
    )
    user, build = provision(server.grpc, spec, ADMIN)
    agent_row = build.agents[0]
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        body = _lifecycle(server, user, agent_row.id, "ready", "start_error")
        assert body["lifecycle_state"] == "start_error"
        assert body["health"] == {
            "healthy": False,
            "reason": "agent startup script exited with an error",
        }
        # The script timing reached the server: the diagnosis names it.
        diagnosis = wait_for(
            lambda: (
                (d := server.get(f"/workspaceagents/{agent_row.id}/diagnosis", user.api_key)[1])
                and d["failed_scripts"]
                and d
            ),
            30,
            "the failed script's timing",
        )
        assert diagnosis["failed_scripts"] == [
            {"display_name": "bad", "exit_code": 3, "status": "exit_failure"}
        ]
        assert agent.terminate() == 0


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_app_health_follows_a_real_http_server(server: Server, tmp_path: Path) -> None:
    port = free_port()
    spec = _spec(
        tmp_path,
        apps=[
            {
                "slug": "web",
                "url": f"http://127.0.0.1:{port}",
                "healthcheck": {"url": f"http://127.0.0.1:{port}/", "interval": 1, "threshold": 1},
            }
        ],
    )
    user, build = provision(server.grpc, spec, ADMIN)
    agent_row = build.agents[0]

    def health() -> str:
        return _agent(server, user, agent_row.id)["apps"][0]["health"]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        try:
            wait_for(lambda: health() == "healthy", 30, "healthy")
            _Health.status = 503  # a 5xx is a failure ...
            wait_for(lambda: health() == "unhealthy", 30, "unhealthy after 5xx")
            _Health.status = 404  # ... anything below 500 a success
            wait_for(lambda: health() == "healthy", 30, "healthy again")
        finally:
            _Health.status = 200
            httpd.shutdown()
            httpd.server_close()
        wait_for(lambda: health() == "unhealthy", 30, "unhealthy once the server stopped")
        assert agent.terminate() == 0


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_sigterm_runs_the_stop_script(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    spec = _spec(
        tmp_path,
        scripts=[
            {
                "display_name": "stop",
                "script": f"echo stopping-now; touch {marker}",
                "run_on_stop": True,
            }
        ],
    )
    user, build = provision(server.grpc, spec, ADMIN)
    agent_row = build.agents[0]
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        _lifecycle(server, user, agent_row.id, "ready")
        assert not marker.exists()
        assert agent.terminate() == 0
    assert marker.exists()
    assert _agent(server, user, agent_row.id)["lifecycle_state"] == "off"
    assert ("stopping-now", "info") in _outputs(server, user, agent_row.id)


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_server_restart_mid_script_loses_no_line(server: Server, tmp_path: Path) -> None:
    lines = 60
    spec = _spec(
        tmp_path,
        scripts=[
            {
                "display_name": "slow",
                "script": f"for i in $(seq 1 {lines}); do echo line-$i; sleep 0.1; done",
                "run_on_start": True,
                "timeout_seconds": 120,
            }
        ],
    )
    user, build = provision(server.grpc, spec, ADMIN)
    agent_row = build.agents[0]
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        wait_for(
            lambda: any(o == "line-5" for o, _ in _outputs(server, user, agent_row.id)),
            60,
            "the first lines",
        )
        server.stop()  # in the middle of the script
        server.start()
        body = _lifecycle(server, user, agent_row.id, "ready", "start_error")
        assert body["lifecycle_state"] == "ready"
        expected = [f"line-{i}" for i in range(1, lines + 1)]
        wait_for(lambda: len(_outputs(server, user, agent_row.id)) >= lines, 30, "every line")
        assert [o for o, _ in _outputs(server, user, agent_row.id)] == expected
        assert "cannot reach the server" in agent.stderr
        assert agent.terminate() == 0


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_new_build_ends_the_old_agent(server: Server, tmp_path: Path) -> None:
    user, build = provision(server.grpc, _spec(tmp_path), ADMIN)
    agent_row = build.agents[0]
    with AgentProcess(server.grpc, agent_row.auth_token, tmp_path) as agent:
        _lifecycle(server, user, agent_row.id, "ready")
        with grpc.insecure_channel(server.grpc) as ch:
            admin_pb2_grpc.AdminServiceStub(ch).BuildWorkspace(
                admin_pb2.BuildWorkspaceRequest(owner=user.username, name="ws"),
                metadata=(("authorization", f"Bearer {ADMIN}"),),
            )
        assert agent.wait(30) == 1
        refused = [line for line in agent.stderr.splitlines() if "refused" in line]
        assert len(refused) == 1, agent.stderr
        assert "Workspace agent not authorized." in refused[0]


@pytest.mark.parametrize("fresh_backend", BACKENDS[:1], indirect=True)
def test_refused_token_is_one_line_and_an_exit(server: Server, tmp_path: Path) -> None:
    agent = AgentProcess(server.grpc, str(uuid.uuid4()), tmp_path)
    assert agent.wait(30) == 1
    lines = agent.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the agent token" in lines[0], agent.stderr
    bad = AgentProcess(server.grpc, "not-a-uuid", tmp_path)
    assert bad.wait(30) == 1
    assert "Workspace agent token invalid." in bad.stderr


@pytest.mark.parametrize("fresh_backend", BACKENDS[:1], indirect=True)
def test_unreachable_server_is_retried_and_the_next_url_tried(
    server: Server, tmp_path: Path
) -> None:
    user, build = provision(server.grpc, _spec(tmp_path), ADMIN)
    agent_row = build.agents[0]
    server.stop()
    dead = f"127.0.0.1:{free_port()}"
    with AgentProcess(f"{dead},{server.grpc}", agent_row.auth_token, tmp_path) as agent:
        wait_for(lambda: "cannot reach the server" in agent.stderr, 30, "the outage message")
        server.start()
        body = _lifecycle(server, user, agent_row.id, "ready")
        assert body["status"] == "connected"
        assert agent.stderr.count("cannot reach the server") <= 2, agent.stderr
        assert f"connected to {server.grpc}" in agent.stderr
        assert agent.terminate() == 0
