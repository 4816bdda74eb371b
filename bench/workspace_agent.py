"""GET one workspace agent: REST vs a bare Flask handler on the same WSGI
server (target >= 50%), and gRPC GetWorkspaceAgent vs a bare grpcio echo
with the same client (target >= 60%). A bare Flask handler that makes one
call to the echo is printed as the ceiling of a facade over a gRPC core."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc

from bench.harness import (
    ROOT,
    AgentplaneProcess,
    free_port,
    http_getter,
    report,
    run_for,
    wait_http,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))


def grpc_caller(address: str, request: pb.GetWorkspaceAgentRequest, md: tuple):  # type: ignore[no-untyped-def]
    def make():  # type: ignore[no-untyped-def]
        channel = grpc.insecure_channel(address)
        stub = pb_grpc.WorkspaceAgentsServiceStub(channel)

        def call() -> None:
            stub.GetWorkspaceAgent(request, metadata=md, timeout=10)

        return call

    return make


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    echo = bare = None
    try:
        ids = server.provision()
        md = (("coder-session-token", ids["api_key"]),)
        req = pb.GetWorkspaceAgentRequest(id=ids["agent_id"])
        with grpc.insecure_channel(server.grpc) as ch:
            reply = pb_grpc.WorkspaceAgentsServiceStub(ch).GetWorkspaceAgent(req, metadata=md)
        body_size = len(
            http_getter_body(
                server.http, f"/api/v2/workspaceagents/{ids['agent_id']}", ids["api_key"]
            )
        )

        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as fh:
            fh.write(reply.SerializeToString())
        echo_addr = f"127.0.0.1:{free_port()}"
        echo = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server", echo_addr, fh.name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert echo.stdout is not None and echo.stdout.readline().strip() == b"ready"
        bare_addr = f"127.0.0.1:{free_port()}"
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_flask", bare_addr],
            cwd=ROOT,
            env={**os.environ, "BENCH_BODY_SIZE": str(body_size), "BENCH_ECHO_ADDRESS": echo_addr},
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"http://{bare_addr}/healthz")

        results: dict[str, float] = {}
        for workers in (1, 4):
            rows = [
                ("bare grpcio echo", run_for(SECONDS, workers, grpc_caller(echo_addr, req, md))),
                ("GetWorkspaceAgent", run_for(SECONDS, workers, grpc_caller(server.grpc, req, md))),
            ]
            report(
                f"gRPC GetWorkspaceAgent, {workers} concurrent client(s)", rows, "bare grpcio echo"
            )
            results[f"grpc_ratio_c{workers}"] = rows[1][1]["rps"] / rows[0][1]["rps"]
        headers = {"Coder-Session-Token": ids["api_key"]}
        for workers in (1, 4):
            rows = [
                (
                    "bare Flask handler (same HTTP front)",
                    run_for(SECONDS, workers, http_getter(bare_addr, "/bare", headers)),
                ),
                (
                    "bare Flask + one call to the echo (ceiling)",
                    run_for(SECONDS, workers, http_getter(bare_addr, "/via-grpc", headers)),
                ),
                (
                    "GET /api/v2/workspaceagents/{id}",
                    run_for(
                        SECONDS,
                        workers,
                        http_getter(
                            server.http, f"/api/v2/workspaceagents/{ids['agent_id']}", headers
                        ),
                    ),
                ),
            ]
            report(
                f"REST GET /workspaceagents/{{id}}, {workers} concurrent client(s)",
                rows,
                "bare Flask handler (same HTTP front)",
            )
            results[f"rest_ratio_c{workers}"] = rows[2][1]["rps"] / rows[0][1]["rps"]
            results[f"rest_ceiling_c{workers}"] = rows[1][1]["rps"] / rows[0][1]["rps"]
        print(
            "\ntargets: REST >= 50% of bare Flask; gRPC >= 60% of bare echo"
            "\n(the ceiling row is a facade that only makes its gRPC call: no REST route"
            " that calls the core can beat it)"
        )
        return results
    finally:
        for proc in (echo, bare):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        server.close()


def http_getter_body(address: str, path: str, api_key: str) -> bytes:
    import urllib.request

    req = urllib.request.Request(
        f"http://{address}{path}", headers={"Coder-Session-Token": api_key}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


if __name__ == "__main__":
    main()
