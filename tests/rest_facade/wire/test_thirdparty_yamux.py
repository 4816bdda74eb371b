"""The door against a third-party yamux: a dRPC client multiplexed by the
npm package yamux-js (a port of hashicorp/yamux) under the machine's
Node.js calls the dRPC door bridged to a real core, plus a local handler
that takes a request larger than two yamux windows (yamux-js must wait for
our window updates). Answers stay small: yamux-js 0.2.0's reader drops a
frame that arrives split across two socket reads (its _transform does not
buffer partial frames), which large answers would provoke.

Needs ``make thirdparty`` (npm ci in tests/thirdparty); without Node.js or
those packages the test is SKIPPED with a loud reason, and under CI=true it
fails instead."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from coder.agent.v2 import agent_pb2
from google.protobuf import duration_pb2

from rest_facade.wire.bridge import CoreBridge, call_metadata
from rest_facade.wire.drpc import ServerCall, serve_session
from rest_facade.wire.transport import StreamTransport
from tests.rest_facade.wire.asyncrun import run

PEERS = Path(__file__).resolve().parents[2] / "thirdparty"
SCRIPT = PEERS / "yamux_drpc_client.js"


def node_or_skip() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "Node.js is not installed"
    elif not (PEERS / "node_modules" / "yamux-js").is_dir():
        reason = "yamux-js is not installed (run `make thirdparty`)"
    if reason is None:
        return node
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires the third-party yamux peer: {reason}")
    pytest.skip(f"!!! third-party yamux test SKIPPED: {reason}")


def test_yamux_js_client_calls_the_core_through_the_door(db, core, provision) -> None:
    node = node_or_skip()
    token = provision.workspace().agent("main").auth_token
    stats = agent_pb2.UpdateStatsRequest(stats=agent_pb2.Stats(connection_count=3))
    big = os.urandom(600 << 10)  # more than two yamux windows
    plan = [
        {"rpc": "/coder.agent.v2.Agent/UpdateStats", "request": stats.SerializeToString().hex()}
        for _ in range(20)
    ]
    plan.append({"rpc": "/coder.agent.v2.Agent/CreateSubAgent", "request": ""})
    plan.append({"rpc": "/test.Digest/Digest", "request": big.hex()})

    async def digest(call: ServerCall) -> None:
        await call.send(hashlib.sha256(await call.recv_one()).digest())

    async def main() -> list:
        channel = grpc.aio.insecure_channel(core.address)
        handlers = dict(CoreBridge(channel).handlers(call_metadata(token=token, api_version="2.4")))
        handlers["/test.Digest/Digest"] = digest
        ended: list = []

        async def on_conn(reader, writer) -> None:
            ended.append(await serve_session(StreamTransport(reader, writer), handlers))

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            str(port),
            cwd=PEERS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(plan).encode()), 60)
        assert proc.returncode == 0, err.decode()
        server.close()
        await server.wait_closed()
        while not ended:
            await asyncio.sleep(0.01)
        await channel.close()
        return json.loads(out)

    results = run(main, timeout=90)
    for result in results[:20]:
        response = agent_pb2.UpdateStatsResponse.FromString(bytes.fromhex(result["response"]))
        assert response.report_interval == duration_pb2.Duration(seconds=30)
    assert results[20]["code"] == 12  # drpcerr.Unimplemented
    assert bytes.fromhex(results[21]["response"]) == hashlib.sha256(big).digest()
