"""Growth: reading one page of an agent's logs should cost the same with
1,000 and with 1,000,000 rows in the table (one index range scan)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid

import grpc
from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from bench.harness import AgentplaneProcess, report, run_for

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
TOTAL = int(os.environ.get("BENCH_GROWTH_ROWS", "1000000"))


def page_reader(address: str, api_key: str, agent_id: str, after: int):  # type: ignore[no-untyped-def]
    def make():  # type: ignore[no-untyped-def]
        stub = logs_pb2_grpc.LogsServiceStub(grpc.insecure_channel(address))
        req = logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id, after=after, limit=100)
        md = (("coder-session-token", api_key),)

        def call() -> None:
            if len(stub.ListWorkspaceAgentLogs(req, metadata=md, timeout=10).logs) != 100:
                raise RuntimeError("short page")

        return call

    return make


def main() -> dict[str, float]:
    server = AgentplaneProcess(env={"AGENTPLANE_AGENT_LOGS_LIMIT_BYTES": str(2**31 - 1)})
    try:
        ids = server.provision()
        stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(server.grpc))
        md = (("coder-session-token", ids["agent_token"]),)
        for b in range(10):
            stub.BatchCreateLogs(
                agent_pb2.BatchCreateLogsRequest(
                    log_source_id=bytes(16),
                    logs=[agent_pb2.Log(output=f"line {b}-{i}") for i in range(100)],
                ),
                metadata=md,
            )
        small = run_for(SECONDS, 1, page_reader(server.grpc, ids["api_key"], ids["agent_id"], 450))
        # Grow the table behind the server's back (other agents' rows), the
        # fastest way to a million rows.
        db_path = os.path.join(server.tmp.name, "agentplane.db")
        with sqlite3.connect(db_path) as conn:
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            source = uuid.uuid4().hex
            for chunk in range(0, TOTAL - 1000, 100_000):
                others = [uuid.uuid4().hex for _ in range(100)]
                conn.executemany(
                    "INSERT INTO workspace_agent_logs (agent_id, created_at, output, level,"
                    " log_source_id) VALUES (?, ?, ?, 'info', ?)",
                    (
                        (others[i % 100], now, f"noise {chunk + i}", source)
                        for i in range(min(100_000, TOTAL - 1000 - chunk))
                    ),
                )
            total = conn.execute("SELECT count(*) FROM workspace_agent_logs").fetchone()[0]
        large = run_for(SECONDS, 1, page_reader(server.grpc, ids["api_key"], ids["agent_id"], 450))
        report(
            f"One 100-log page via ListWorkspaceAgentLogs: 1,000 vs {total:,} stored rows",
            [("1,000 rows", small), (f"{total:,} rows", large)],
            "1,000 rows",
        )
        ratio = large["p50_ms"] / small["p50_ms"]
        print(f"  page latency ratio (large/small, p50): {ratio:.2f} (target ~1.0)")
        return {"growth_latency_ratio": ratio}
    finally:
        server.close()


if __name__ == "__main__":
    main()
