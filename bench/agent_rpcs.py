"""The unary agent-status RPCs an agent calls on a timer — UpdateStats,
BatchUpdateMetadata, BatchUpdateAppHealths — against a real `agentplane
server` (SQLite), each next to a bare grpc.aio echo of the same RPC
answering the same reply, with the same client, in one run
(target >= 60% of the echo).

``python -m bench.agent_rpcs`` runs the comparison; ``--echo ADDRESS`` is
the echo server it starts in a process of its own, like the core."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from bench.harness import ROOT, AgentplaneProcess, free_port, report, run_for

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
TARGET = 0.60


class AgentEcho(agent_pb2_grpc.AgentServicer):
    """What the core answers, without the core: the local limit."""

    async def UpdateStats(self, request, context):  # type: ignore[no-untyped-def]
        return agent_pb2.UpdateStatsResponse(report_interval={"seconds": 30})

    async def BatchUpdateMetadata(self, request, context):  # type: ignore[no-untyped-def]
        return agent_pb2.BatchUpdateMetadataResponse()

    async def BatchUpdateAppHealths(self, request, context):  # type: ignore[no-untyped-def]
        return agent_pb2.BatchUpdateAppHealthResponse()

    async def BatchCreateLogs(self, request, context):  # type: ignore[no-untyped-def]
        return agent_pb2.BatchCreateLogsResponse()


async def serve_echo(address: str) -> None:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServicer_to_server(AgentEcho(), server)
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def start_echo() -> tuple[subprocess.Popen, str]:
    """The echo in a process of its own (like the core); (process, address)."""
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.agent_rpcs", "--echo", address],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, address


def caller(address: str, rpc: str, request: Any, md: tuple) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        channel = grpc.insecure_channel(address)
        method = getattr(agent_pb2_grpc.AgentStub(channel), rpc)

        def call() -> None:
            method(request, metadata=md, timeout=10)

        return call

    return make


def requests(server: AgentplaneProcess, token: str) -> dict[str, Any]:
    md = (("coder-session-token", token),)
    with grpc.insecure_channel(server.grpc) as ch:
        manifest = agent_pb2_grpc.AgentStub(ch).GetManifest(
            agent_pb2.GetManifestRequest(), metadata=md
        )
    app = next(a for a in manifest.apps if a.healthcheck.url)
    stats = agent_pb2.Stats(
        connections_by_proto={"ssh": 1},
        connection_count=1,
        connection_median_latency_ms=4.2,
        rx_packets=12,
        rx_bytes=3400,
        tx_packets=9,
        tx_bytes=2100,
        session_count_ssh=1,
    )
    result = agent_pb2.WorkspaceAgentMetadata.Result(value="0.42 0.40 0.38 1/123 4567")
    return {
        "UpdateStats": agent_pb2.UpdateStatsRequest(stats=stats),
        "BatchUpdateMetadata": agent_pb2.BatchUpdateMetadataRequest(
            metadata=[agent_pb2.Metadata(key=manifest.metadata[0].key, result=result)]
        ),
        "BatchUpdateAppHealths": agent_pb2.BatchUpdateAppHealthRequest(
            updates=[
                agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate(
                    id=uuid.UUID(bytes=app.id).bytes, health=agent_pb2.AppHealth.HEALTHY
                )
            ]
        ),
    }


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    echo = None
    try:
        ids = server.provision()
        md = (("coder-session-token", ids["agent_token"]),)
        reqs = requests(server, ids["agent_token"])
        echo, echo_addr = start_echo()
        results: dict[str, float] = {}
        for rpc, request in reqs.items():
            for workers in (1, 4):
                rows = [
                    (
                        "bare grpcio echo",
                        run_for(SECONDS, workers, caller(echo_addr, rpc, request, md)),
                    ),
                    (rpc, run_for(SECONDS, workers, caller(server.grpc, rpc, request, md))),
                ]
                report(f"gRPC {rpc}, {workers} concurrent client(s)", rows, "bare grpcio echo")
                results[f"{rpc}_c{workers}"] = rows[1][1]["rps"] / rows[0][1]["rps"]
        print(f"\ntarget: each agent RPC >= {TARGET:.0%} of the bare echo")
        for name, ratio in results.items():
            print(f"  {name:<32} {ratio:6.1%}  {'ok' if ratio >= TARGET else 'BELOW TARGET'}")
        return results
    finally:
        if echo is not None:
            echo.terminate()
            echo.wait(10)
        server.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        asyncio.run(serve_echo(sys.argv[2]))
    else:
        main()
