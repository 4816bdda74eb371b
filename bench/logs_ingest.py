"""Log ingestion, 100-line batches.

* gRPC ``BatchCreateLogs`` on SQLite vs raw ``sqlite3.executemany`` into the
  same table shape (the local limit; target >= 50 %) and vs a naive
  Flask + SQLite handler inserting the batch with the ORM (target >= 4x).
* REST ``PATCH /me/logs`` vs the same naive handler (target >= 2x).
* On PostgreSQL: ``BatchCreateLogs`` vs psycopg ``COPY`` of the batch in its
  own transaction (target >= 60 %), rows written with ``write_row``. The
  server writes its COPY rows as one block of COPY text, which is faster
  than ``write_row``; a raw COPY written that way is printed too, with the
  ratio against it, so the gain of the encoding is not counted as the
  server's.

"The same table shape" is the agentplane table as its migration creates it:
the same columns, the (agent_id, id) index every read uses and the foreign
key to the agent, checked (SQLite: ``PRAGMA foreign_keys=ON``, as the server
runs). A bare grpcio echo of the same request is printed too: no server can
answer faster than it. With one sender a server must receive the batch (at
best the echo's time) and then store it (at best the raw insert's), one
after the other, so the best any gRPC-fronted server can reach against the
raw limit is echo / (echo + raw) in throughput terms, printed as the
"series ceiling".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

import grpc
import psycopg
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from bench.agent_rpcs import start_echo
from bench.harness import (
    ROOT,
    AgentplaneProcess,
    free_port,
    http_patcher,
    report,
    run_interleaved,
    wait_http,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
LINES = 100
PG_URL = os.environ.get("AGENTPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
LINE = "2026-11-25T04:00:00Z INFO building layer 7/12: fetching https://example.com/pkg.tar.gz"


def sqlite_schema() -> list[str]:
    """The logs table exactly as agentplane's models declare it for SQLite,
    with a minimal agents table for its foreign key to point at."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from server.storage.logs import WorkspaceAgentLog

    table = WorkspaceAgentLog.__table__
    dialect = sqlite_dialect.dialect()
    return [
        "CREATE TABLE workspace_agents (id CHAR(32) NOT NULL PRIMARY KEY)",
        str(sa.schema.CreateTable(table).compile(dialect=dialect)),
        *(str(sa.schema.CreateIndex(ix).compile(dialect=dialect)) for ix in table.indexes),
    ]


def raw_sqlite_caller(path: str) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        agent, source = uuid.uuid4().hex, uuid.uuid4().hex
        conn.execute("INSERT INTO workspace_agents (id) VALUES (?)", (agent,))

        def call() -> None:
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO workspace_agent_logs (agent_id, created_at, output, level,"
                " log_source_id) VALUES (?, ?, ?, ?, ?)",
                [(agent, now, LINE, "info", source) for _ in range(LINES)],
            )
            conn.execute("COMMIT")

        return call

    return make


def raw_copy_caller(
    dsn: str, table: str, agents: list[str], *, text_block: bool = False
) -> Callable[[], Callable[[], None]]:
    """COPY per batch in its own transaction, rows written with ``write_row``;
    with ``text_block`` as one block of COPY text instead (``copy.write``),
    the way the server writes them."""
    taken = iter(range(10**9))

    def make() -> Callable[[], None]:
        conn = psycopg.connect(dsn)
        agent, source = uuid.UUID(agents[next(taken) % len(agents)]), uuid.uuid4()

        def write_rows(copy: psycopg.Copy) -> None:
            now = dt.datetime.now(dt.UTC)
            for _ in range(LINES):
                copy.write_row((agent, now, LINE, "info", source))

        def write_block(copy: psycopg.Copy) -> None:
            # LINE needs no COPY escaping.
            row = f"{agent}\t{dt.datetime.now(dt.UTC).isoformat()}\t{LINE}\tinfo\t{source}\n"
            copy.write(row * LINES)

        write = write_block if text_block else write_rows

        def call() -> None:
            with (
                conn.cursor() as cur,
                cur.copy(
                    f"COPY {table} (agent_id, created_at, output, level, log_source_id) FROM STDIN"
                ) as copy,
            ):
                write(copy)
            conn.commit()

        return call

    return make


def grpc_logs_caller(address: str, tokens: list[str]) -> Callable[[], Callable[[], None]]:
    request_logs = [agent_pb2.Log(output=LINE, level=agent_pb2.Log.Level.INFO)] * LINES
    taken = iter(range(10**9))

    def make() -> Callable[[], None]:
        token = tokens[next(taken) % len(tokens)]
        stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(address))
        req = agent_pb2.BatchCreateLogsRequest(log_source_id=bytes(16), logs=request_logs)
        md = (("coder-session-token", token),)

        def call() -> None:
            if stub.BatchCreateLogs(req, metadata=md, timeout=10).log_limit_exceeded:
                raise RuntimeError("log limit reached; raise --agent-logs-limit-bytes")

        return call

    return make


def _agents(server: AgentplaneProcess, n: int) -> list[dict]:
    return [server.provision(f"logs{i}") for i in range(n)]


def _tokens(server: AgentplaneProcess, n: int) -> list[str]:
    return [a["agent_token"] for a in _agents(server, n)]


def _ceiling(echo_vs_raw: float, workers: int) -> str:
    """The series ceiling for one sender (see the module docstring)."""
    if workers != 1:
        return ""
    return f"; series ceiling {echo_vs_raw / (echo_vs_raw + 1):.0%}"


# The rows of the tables.
RAW = "raw sqlite3 executemany (local limit)"
ECHO = "bare grpcio echo (ceiling of any gRPC server)"
GRPC = "gRPC BatchCreateLogs"
REST = "REST PATCH /me/logs"
NAIVE = "naive Flask + SQLite ORM handler"
COPY = "psycopg COPY per batch (local limit)"
COPY_TEXT = "psycopg COPY per batch, one block of text"


def _ratios(
    rows: list[tuple[str, dict]], pairs: dict[str, tuple[str, str]], workers: int
) -> dict[str, float]:
    """name -> measured/baseline throughput, for each (measured, baseline)
    of `pairs`; names get the senders' count as a suffix."""
    rps = {name: r["rps"] for name, r in rows}
    return {f"{name}_c{workers}": rps[a] / rps[b] for name, (a, b) in pairs.items()}


def echo_caller(address: str) -> Callable[[], Callable[[], None]]:
    return grpc_logs_caller(address, ["echo"])


def main() -> dict[str, float]:
    results: dict[str, float] = {}
    big_limit = {"AGENTPLANE_AGENT_LOGS_LIMIT_BYTES": str(2**31 - 1)}
    body = json.dumps({"logs": [{"output": LINE, "level": "info"}] * LINES})
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = os.path.join(tmp, "raw.db")
        with sqlite3.connect(raw_path) as conn:
            for ddl in sqlite_schema():
                conn.execute(ddl)
        server = AgentplaneProcess(env=big_limit)
        naive = echo = None
        try:
            echo, echo_addr = start_echo()
            tokens = _tokens(server, 4)
            naive_addr = f"127.0.0.1:{free_port()}"
            naive = subprocess.Popen(
                [sys.executable, "-m", "bench.naive_logs", naive_addr, os.path.join(tmp, "n.db")],
                cwd=ROOT,
                stderr=subprocess.DEVNULL,
            )
            wait_http(f"http://{naive_addr}/healthz")
            for workers in (1, 4):
                rows = run_interleaved(
                    SECONDS,
                    workers,
                    [
                        (RAW, raw_sqlite_caller(raw_path)),
                        (ECHO, echo_caller(echo_addr)),
                        (GRPC, grpc_logs_caller(server.grpc, tokens)),
                        (
                            REST,
                            http_patcher(
                                server.http, "/api/v2/workspaceagents/me/logs", body, tokens
                            ),
                        ),
                        (NAIVE, http_patcher(naive_addr, "/logs", body, tokens)),
                    ],
                )
                report(f"100-line batches on SQLite, {workers} concurrent sender(s)", rows, RAW)
                got = _ratios(
                    rows,
                    {
                        "grpc_vs_raw": (GRPC, RAW),
                        "grpc_vs_naive": (GRPC, NAIVE),
                        "rest_vs_naive": (REST, NAIVE),
                        "echo_vs_raw": (ECHO, RAW),
                    },
                    workers,
                )
                results.update(got)
                print(
                    f"  gRPC/raw {got[f'grpc_vs_raw_c{workers}']:.0%} (target >= 50%"
                    f"{_ceiling(got[f'echo_vs_raw_c{workers}'], workers)}), "
                    f"gRPC/naive {got[f'grpc_vs_naive_c{workers}']:.1f}x (>= 4x), "
                    f"REST/naive {got[f'rest_vs_naive_c{workers}']:.1f}x (>= 2x)"
                )
        finally:
            for proc in (naive, echo):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
            server.close()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as err:
        print(f"\nPostgreSQL benchmark skipped: {err}")
        return results
    pg_url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    server = AgentplaneProcess(database_url=pg_url, env=big_limit)
    echo = None
    try:
        echo, echo_addr = start_echo()
        agents = _agents(server, 4)
        tokens = [a["agent_token"] for a in agents]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # The same shape: columns, defaults and indexes of the real table,
            # and its foreign key to the (real) agents.
            conn.execute("CREATE TABLE raw_logs (LIKE workspace_agent_logs INCLUDING ALL)")
            conn.execute(
                "ALTER TABLE raw_logs ADD FOREIGN KEY (agent_id)"
                " REFERENCES workspace_agents (id) ON DELETE CASCADE"
            )
        agent_ids = [a["agent_id"] for a in agents]
        for workers in (1, 4):
            rows = run_interleaved(
                SECONDS,
                workers,
                [
                    (COPY, raw_copy_caller(pg_url, "raw_logs", agent_ids)),
                    (COPY_TEXT, raw_copy_caller(pg_url, "raw_logs", agent_ids, text_block=True)),
                    (ECHO, echo_caller(echo_addr)),
                    (GRPC, grpc_logs_caller(server.grpc, tokens)),
                ],
            )
            report(f"100-line batches on PostgreSQL, {workers} concurrent sender(s)", rows, COPY)
            got = _ratios(
                rows,
                {
                    "pg_grpc_vs_copy": (GRPC, COPY),
                    "pg_grpc_vs_copy_text": (GRPC, COPY_TEXT),
                    "pg_echo_vs_copy": (ECHO, COPY),
                },
                workers,
            )
            results.update(got)
            print(
                f"  gRPC/COPY {got[f'pg_grpc_vs_copy_c{workers}']:.0%} (target >= 60%"
                f"{_ceiling(got[f'pg_echo_vs_copy_c{workers}'], workers)}), "
                f"gRPC/COPY of one text block {got[f'pg_grpc_vs_copy_text_c{workers}']:.0%}"
            )
    finally:
        if echo is not None:
            echo.terminate()
            echo.wait(10)
        server.close()
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return results


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - start:.0f} s)")
