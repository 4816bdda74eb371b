"""Logs end to end against real server processes: nothing acknowledged is
lost and no batch is half-stored when the server is SIGKILLed mid-ingestion;
two replicas on one PostgreSQL deliver a batch ingested on one to a follower
on the other; the `agentplane logs` CLI."""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
import sqlalchemy as sa
import websocket
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.storage.db import create_engine
from tests.conftest import BACKENDS, require_pg
from tests.processes import AGENTPLANE, ROOT, Server

pytestmark = pytest.mark.timeout(180)
ADMIN = "e2e-admin-token"
LINES_PER_BATCH = 50


class Provisioned(NamedTuple):
    api_key: str
    agent_id: str
    token: str
    username: str


def provision(server: Server) -> Provisioned:
    """A fresh user and workspace with one agent."""
    with grpc.insecure_channel(server.grpc) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        md = (("authorization", f"Bearer {ADMIN}"),)
        user = stub.CreateUser(
            admin_pb2.CreateUserRequest(username=f"u{uuid.uuid4().hex[:6]}"), metadata=md
        )
        spec = {"resources": [{"name": "r", "agents": [{"name": "main"}]}]}
        build = stub.CreateWorkspace(
            admin_pb2.CreateWorkspaceRequest(
                owner=user.username, name="ws", spec_json=json.dumps(spec)
            ),
            metadata=md,
        ).build
    agent = build.agents[0]
    return Provisioned(user.api_key, agent.id, agent.auth_token, user.username)


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_sigkill_mid_ingestion_loses_nothing_acknowledged(fresh_backend, tmp_path: Path) -> None:
    server = Server(
        tmp_path / "data", fresh_backend.url, env={"AGENTPLANE_ADMIN_TOKEN": ADMIN}
    ).start()
    _key, agent_id, token, _user = provision(server)
    acked: list[int] = []
    enough = threading.Event()
    stop = threading.Event()

    def ingest() -> None:
        with grpc.insecure_channel(server.grpc) as ch:
            stub = agent_pb2_grpc.AgentStub(ch)
            n = 0
            while not stop.is_set():
                logs = [agent_pb2.Log(output=f"{n}:{i}") for i in range(LINES_PER_BATCH)]
                try:
                    stub.BatchCreateLogs(
                        agent_pb2.BatchCreateLogsRequest(log_source_id=bytes(16), logs=logs),
                        metadata=(("coder-session-token", token),),
                        timeout=10,
                    )
                except grpc.RpcError:
                    return  # the server is gone; this batch was never acknowledged
                acked.append(n)
                n += 1
                if n >= 40:
                    enough.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    assert enough.wait(60), "ingestion did not get going"
    server.kill()  # while batches are still in flight
    stop.set()
    thread.join(30)

    engine = create_engine(fresh_backend.url)
    try:
        with engine.connect() as conn:
            outputs = (
                conn.execute(
                    sa.text("SELECT output FROM workspace_agent_logs WHERE agent_id = :a"),
                    {
                        "a": uuid.UUID(agent_id).hex
                        if engine.dialect.name == "sqlite"
                        else uuid.UUID(agent_id)
                    },
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    per_batch = collections.Counter(int(o.split(":")[0]) for o in outputs)
    assert acked, "no batch was acknowledged"
    assert all(per_batch[n] == LINES_PER_BATCH for n in acked), "an acknowledged batch is missing"
    partial = {n: c for n, c in per_batch.items() if c != LINES_PER_BATCH}
    assert partial == {}, f"half-stored batches: {partial}"


def test_two_replicas_follow_across(tmp_path: Path) -> None:
    require_pg()
    from tests.conftest import new_backend_url

    backend = new_backend_url("postgresql", tmp_path)
    env = {"AGENTPLANE_ADMIN_TOKEN": ADMIN, "AGENTPLANE_LOG_FOLLOW_REPOLL_SECONDS": "60"}
    a = Server(tmp_path / "a", backend.url, env=env).start()
    b = Server(tmp_path / "b", backend.url, env=env).start()
    try:
        key, agent_id, token, _user = provision(a)
        url = f"ws://{b.http}/api/v2/workspaceagents/{agent_id}/logs?follow"
        follower = websocket.create_connection(
            url, header=[f"Coder-Session-Token: {key}"], timeout=20
        )
        try:
            assert json.loads(follower.recv()) == []
            with grpc.insecure_channel(a.grpc) as ch:
                agent_pb2_grpc.AgentStub(ch).BatchCreateLogs(
                    agent_pb2.BatchCreateLogsRequest(
                        log_source_id=bytes(16), logs=[agent_pb2.Log(output="from replica A")]
                    ),
                    metadata=(("coder-session-token", token),),
                    timeout=10,
                )
            # Re-polling is set to 60 s: only the NOTIFY can deliver within the
            # socket timeout.
            frame = json.loads(follower.recv())
            assert [x["output"] for x in frame] == ["from replica A"]
        finally:
            follower.close()
    finally:
        assert a.stop() == 0 and b.stop() == 0
        backend.cleanup()


def test_logs_cli(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={"AGENTPLANE_ADMIN_TOKEN": ADMIN},
    ).start()
    try:
        key, agent_id, token, username = provision(server)
        with grpc.insecure_channel(server.grpc) as ch:
            agent_pb2_grpc.AgentStub(ch).BatchCreateLogs(
                agent_pb2.BatchCreateLogsRequest(
                    log_source_id=bytes(16),
                    logs=[agent_pb2.Log(output="hello", level=agent_pb2.Log.Level.WARN)],
                ),
                metadata=(("coder-session-token", token),),
                timeout=10,
            )
        env = {**server.env, "AGENTPLANE_SESSION_TOKEN": key}
        text = subprocess.run(
            [*AGENTPLANE, "logs", agent_id],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert text.returncode == 0, text.stderr
        assert text.stdout.strip().endswith("WARN  hello")
        js = subprocess.run(
            [*AGENTPLANE, "logs", agent_id, "--format", "json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        row = json.loads(js.stdout)
        assert row["output"] == "hello" and row["level"] == "warn"
        follow = subprocess.Popen(
            [*AGENTPLANE, "logs", agent_id, "--follow"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout.readline().strip().endswith("hello")
        with grpc.insecure_channel(server.grpc) as ch:
            admin_pb2_grpc.AdminServiceStub(ch).BuildWorkspace(
                admin_pb2.BuildWorkspaceRequest(owner=username, name="ws"),
                metadata=(("authorization", f"Bearer {ADMIN}"),),
            )
        assert follow.wait(30) == 0  # replaced by the new build: the follow ends
        assert "newer build" in follow.stderr.read()
        follow.stdout.close()
        follow.stderr.close()
        missing = subprocess.run(
            [*AGENTPLANE, "logs", str(uuid.uuid4())],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode != 0 and "Resource not found" in missing.stderr
    finally:
        assert server.stop() == 0


def test_websocket_follows_give_their_stream_slot_back(tmp_path: Path) -> None:
    """On the production front a follow's stream slot comes back when the
    stream ends: more follows than one session's share, one after another."""
    per_session = 3
    server = Server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={
            "AGENTPLANE_ADMIN_TOKEN": ADMIN,
            "AGENTPLANE_FACADE_MAX_STREAMS_PER_SESSION": str(per_session),
        },
    ).start()
    try:
        key, agent_id, _token, _user = provision(server)
        url = f"ws://{server.http}/api/v2/workspaceagents/{agent_id}/logs?follow"
        for _ in range(per_session + 2):
            follower = _open_follow(url, key)
            assert json.loads(follower.recv()) == []
            follower.close()
    finally:
        assert server.stop() == 0


def _open_follow(url: str, key: str) -> websocket.WebSocket:
    """Opens a follow, retrying while its session is at its share (429):
    the server ends the previous stream, and gives its slot back, only once
    it has seen that follower's close. A slot that never came back keeps
    answering 429 and fails here."""
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            return websocket.create_connection(
                url, header=[f"Coder-Session-Token: {key}"], timeout=20
            )
        except websocket.WebSocketBadStatusException as err:
            if err.status_code != 429:
                raise
        assert time.monotonic() < deadline, "the stream slot never came back"
        time.sleep(0.05)
