"""Follow latency: an agent pushes a batch; how long until each of 100
WebSocket followers has the frame? Target: p99 <= 50 ms. The followers are
ten sessions of ten (one session may hold only part of the stream slots)."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

import grpc
import websocket
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from bench.harness import AgentplaneProcess

FOLLOWERS = int(os.environ.get("BENCH_FOLLOWERS", "100"))
PUSHES = int(os.environ.get("BENCH_PUSHES", "30"))


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    sockets: list[websocket.WebSocket] = []
    try:
        ids = server.provision()
        url = f"ws://{server.http}/api/v2/workspaceagents/{ids['agent_id']}/logs?follow"
        sessions = [ids["api_key"]] + [server.create_token() for _ in range(9)]
        for n in range(FOLLOWERS):
            ws = websocket.create_connection(
                url, header=[f"Coder-Session-Token: {sessions[n % len(sessions)]}"], timeout=30
            )
            assert json.loads(ws.recv()) == []  # the (empty) backlog frame
            sockets.append(ws)
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()
        done = [threading.Event() for _ in range(PUSHES)]
        counts = [0] * PUSHES

        def reader(ws: websocket.WebSocket) -> None:
            got = 0
            while got < PUSHES:
                for log in json.loads(ws.recv()):
                    now = time.perf_counter()
                    i = int(log["output"].split(":")[1])
                    with lock:
                        latencies.append(now - sent_at[log["output"]])
                        counts[i] += 1
                        if counts[i] == FOLLOWERS:
                            done[i].set()
                    got += 1

        threads = [threading.Thread(target=reader, args=(ws,), daemon=True) for ws in sockets]
        for t in threads:
            t.start()
        stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(server.grpc))
        md = (("coder-session-token", ids["agent_token"]),)
        for i in range(PUSHES):
            marker = f"push:{i}"
            sent_at[marker] = time.perf_counter()
            stub.BatchCreateLogs(
                agent_pb2.BatchCreateLogsRequest(
                    log_source_id=bytes(16), logs=[agent_pb2.Log(output=marker)]
                ),
                metadata=md,
                timeout=10,
            )
            if not done[i].wait(30):
                raise RuntimeError(f"push {i} reached {counts[i]} of {FOLLOWERS} followers")
        latencies.sort()
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
        print(
            f"\nFollow: agent push -> WebSocket frame, {FOLLOWERS} followers, {PUSHES} pushes"
            f"\n  p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {latencies[-1] * 1e3:.1f} ms"
            f"  (target p99 <= 50 ms)"
        )
        return {"follow_p50_ms": p50, "follow_p99_ms": p99}
    finally:
        for ws in sockets:
            ws.close()
        server.close()


if __name__ == "__main__":
    main()
