"""Agent tunnels: how many agents one replica holds, and terminal latency.

* **Load.** N simulated agents on one `agentplane server` (SQLite, then
  PostgreSQL), each holding its tunnel (AgentTunnelService/Tunnel) on its own
  connection and sending Coder's steady traffic: UpdateStats every 30 s,
  BatchUpdateMetadata with 2 values every 10 s, BatchUpdateAppHealths with 1
  app every 10 s. Time runs ``COMPRESS`` times faster than Coder's
  (``BENCH_TUNNEL_COMPRESS``, default 1 = Coder's real rates); the load
  generators run in ``GENERATORS`` processes. Prints, per N, the calls per
  second, p50/p95/p99 latency, errors and the core's RSS per agent, and the
  largest N with p95 <= 100 ms and no error. Coder's anchor: 2,000 agents on
  2 x 4-vCPU replicas at p95 220 ms.
* **Terminal.** A keystroke -> its echo through the Pty RPC, the core, the
  tunnel and a real `agentplane agent`, p50/p99, next to the same command on
  a local PTY (the limit); and 10 MiB of output through both.

    python -m bench.agent_tunnel [load|pty]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pty
import random
import statistics
import subprocess
import sys
import time
import uuid

import grpc

from bench.harness import ADMIN_TOKEN, ROOT, AgentplaneProcess

STEPS = tuple(int(n) for n in os.environ.get("BENCH_TUNNEL_STEPS", "250,500,1000,2000").split(","))
COMPRESS = float(os.environ.get("BENCH_TUNNEL_COMPRESS", "1"))
MEASURE_SECONDS = float(os.environ.get("BENCH_TUNNEL_SECONDS", "40"))
GENERATORS = int(os.environ.get("BENCH_TUNNEL_GENERATORS", "2"))
P95_LIMIT_MS = 100.0
PG_URL = os.environ.get("AGENTPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

SPEC = {
    "resources": [
        {
            "name": "r",
            "agents": [
                {
                    "name": "main",
                    "apps": [
                        {
                            "slug": "web",
                            "url": "http://127.0.0.1:1",
                            "healthcheck": {
                                "url": "http://127.0.0.1:1/",
                                "interval": 10,
                                "threshold": 3,
                            },
                        }
                    ],
                    "metadata": [
                        {"key": "cpu", "script": "true", "interval": 10},
                        {"key": "mem", "script": "true", "interval": 10},
                    ],
                }
            ],
        }
    ]
}


def provision_agents(server: AgentplaneProcess, n: int) -> list[tuple[str, bytes]]:
    """(token, app id) for n agents, one workspace each."""
    from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc

    out = []
    md = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    with grpc.insecure_channel(server.grpc) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        stub.CreateUser(admin_pb2.CreateUserRequest(username="load"), metadata=md)
        for i in range(n):
            build = stub.CreateWorkspace(
                admin_pb2.CreateWorkspaceRequest(
                    owner="load", name=f"ws{i}", spec_json=json.dumps(SPEC)
                ),
                metadata=md,
            ).build
            out.append(build.agents[0].auth_token)
    return out


# -- the load generator (one process drives a share of the agents) -------------


async def _agent(address: str, token: str, stop_at: float, measure_from: float, out: dict) -> None:
    from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
    from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc
    from coder.agent.v2 import agent_pb2, agent_pb2_grpc

    md = (("coder-session-token", token),)
    channel = grpc.aio.insecure_channel(address)
    stub = agent_pb2_grpc.AgentStub(channel)
    tunnel = tpb_grpc.AgentTunnelServiceStub(channel).Tunnel(metadata=md)
    try:
        await tunnel.write(tpb.TunnelRequest(hello=tpb.Hello(version="v0.0.0-bench")))
        await tunnel.read()
        out["tunnels"] += 1
        manifest = await stub.GetManifest(agent_pb2.GetManifestRequest(), metadata=md)
        app_id = manifest.apps[0].id
        loop = asyncio.get_running_loop()
        stats_every, ten = 30 / COMPRESS, 10 / COMPRESS
        calls = [
            (stats_every, "UpdateStats", agent_pb2.UpdateStatsRequest(stats=agent_pb2.Stats())),
            (
                ten,
                "BatchUpdateMetadata",
                agent_pb2.BatchUpdateMetadataRequest(
                    metadata=[
                        agent_pb2.Metadata(
                            key=k, result=agent_pb2.WorkspaceAgentMetadata.Result(value="1")
                        )
                        for k in ("cpu", "mem")
                    ]
                ),
            ),
            (
                ten,
                "BatchUpdateAppHealths",
                agent_pb2.BatchUpdateAppHealthRequest(
                    updates=[
                        agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate(
                            id=app_id, health=agent_pb2.AppHealth.HEALTHY
                        )
                    ]
                ),
            ),
        ]

        async def every(period: float, method: str, request: object) -> None:
            # A random phase, as real agents start at random times.
            await asyncio.sleep(random.random() * period)
            while loop.time() < stop_at:
                started = loop.time()
                try:
                    await getattr(stub, method)(request, metadata=md, timeout=30)
                    if started >= measure_from:
                        out["latencies"].append(loop.time() - started)
                except grpc.RpcError as err:
                    if started >= measure_from:
                        out["errors"].append(f"{method}: {err.code().name}")
                await asyncio.sleep(max(0.0, period - (loop.time() - started)))

        await asyncio.gather(*(every(*c) for c in calls))
    except grpc.RpcError as err:
        out["errors"].append(f"tunnel: {err.code().name}: {err.details()}")
    finally:
        tunnel.cancel()
        await channel.close()


def _generator(address: str, tokens: list[str], ramp: float, seconds: float, conn) -> None:
    async def main() -> dict:
        out: dict = {"latencies": [], "errors": [], "tunnels": 0}
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + ramp
        stop_at = measure_from + seconds
        tasks = []
        for i, token in enumerate(tokens):
            tasks.append(asyncio.create_task(_agent(address, token, stop_at, measure_from, out)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, as a fleet would
        await asyncio.gather(*tasks)
        return out

    conn.send(asyncio.run(main()))
    conn.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_step(server: AgentplaneProcess, tokens: list[str]) -> dict:
    n = len(tokens)
    ramp = 10.0 + n / 200
    shares = [tokens[i::GENERATORS] for i in range(GENERATORS)]
    pipes, procs = [], []
    ctx = multiprocessing.get_context("spawn")
    for share in shares:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_generator, args=(server.grpc, share, ramp, MEASURE_SECONDS, child)
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    # The core's memory while every tunnel is up (sampled mid-measurement).
    time.sleep(ramp + MEASURE_SECONDS / 2)
    rss = rss_kib(server.proc.pid)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = [e for r in results for e in r["errors"]]
    tunnels = sum(r["tunnels"] for r in results)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0] * 99
    return {
        "n": n,
        "tunnels": tunnels,
        "calls_per_s": len(latencies) / MEASURE_SECONDS,
        "p50_ms": q[49] * 1000,
        "p95_ms": q[94] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:3],
        "rss_kib": rss,
    }


def load(backend: str) -> None:
    if backend == "postgresql":
        import psycopg

        schema = f"bench_tunnel_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        url = None
    server = AgentplaneProcess(url)
    try:
        started = time.monotonic()
        tokens = provision_agents(server, max(STEPS))
        print(
            f"  provisioned {len(tokens)} agents in {time.monotonic() - started:.0f} s", flush=True
        )
        base = rss_kib(server.proc.pid)
        best = 0
        for n in STEPS:
            row = run_step(server, tokens[:n])
            per_agent = (row["rss_kib"] - base) / n
            ok = row["p95_ms"] <= P95_LIMIT_MS and row["errors"] == 0 and row["tunnels"] == n
            best = n if ok else best
            print(
                f"  {backend:10} N={n:5} tunnels={row['tunnels']:5} "
                f"calls/s={row['calls_per_s']:7.1f} p50={row['p50_ms']:6.1f} ms "
                f"p95={row['p95_ms']:6.1f} ms p99={row['p99_ms']:6.1f} ms "
                f"errors={row['errors']} core RSS={row['rss_kib'] / 1024:.0f} MiB "
                f"(+{per_agent:.0f} KiB/agent) {'ok' if ok else 'over'} {row['error_kinds']}",
                flush=True,
            )
            if not ok:
                break
        print(f"  {backend}: largest N with p95 <= {P95_LIMIT_MS:.0f} ms and 0 errors: {best}")
    finally:
        server.close()
        if backend == "postgresql":
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- terminal latency -----------------------------------------------------------

KEYSTROKES = 200
BULK_BYTES = 10 << 20
BULK_COMMAND = f"head -c {BULK_BYTES} /dev/zero | tr '\\0' x; sleep 1"


def _local_pty() -> tuple[list[float], float]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("cat", ["cat"])
    latencies = []
    try:
        time.sleep(0.3)
        for i in range(KEYSTROKES):
            ch = bytes([97 + i % 26])
            t0 = time.perf_counter()
            os.write(fd, ch)
            got = b""
            while ch not in got:
                got += os.read(fd, 1024)
            latencies.append(time.perf_counter() - t0)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", BULK_COMMAND])
    got = 0
    t0 = time.perf_counter()
    while got < BULK_BYTES:
        try:
            got += os.read(fd, 65536).count(b"x")
        except OSError:
            break
    elapsed = time.perf_counter() - t0
    os.waitpid(pid, 0)
    os.close(fd)
    return latencies, elapsed


def _facade_pty(server: AgentplaneProcess, info: dict) -> tuple[list[float], float]:
    """The same through the facade: GET {id}/pty (WebSocket, JSON keystrokes
    in, binary output out), as a browser's terminal does."""
    import json
    import urllib.parse
    import uuid

    import websocket

    def open_terminal(command: str) -> websocket.WebSocket:
        query = urllib.parse.urlencode({"reconnect": str(uuid.uuid4()), "command": command})
        return websocket.create_connection(
            f"ws://{server.http}/api/v2/workspaceagents/{info['agent_id']}/pty?{query}",
            header=[f"Coder-Session-Token: {info['api_key']}"],
            timeout=60,
        )

    term = open_terminal("cat")
    latencies = []
    for i in range(KEYSTROKES):
        ch = bytes([97 + i % 26])
        t0 = time.perf_counter()
        term.send(json.dumps({"data": ch.decode()}))
        got = b""
        while ch not in got:
            got += term.recv_data()[1]
        latencies.append(time.perf_counter() - t0)
    term.close()
    term = open_terminal(BULK_COMMAND)
    got = 0
    t0 = time.perf_counter()
    while got < BULK_BYTES:
        got += term.recv_data()[1].count(b"x")
    elapsed = time.perf_counter() - t0
    term.close()
    return latencies, elapsed


def _rpc_pty(
    server: AgentplaneProcess,
) -> tuple[tuple[list[float], float], tuple[list[float], float]]:
    import queue

    from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
    from agentplane.agenttunnel.v1 import agent_conn_pb2_grpc as cpb_grpc

    info = server.provision("pty")
    agent = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "agent", "--url", server.grpc, "--token",
         info["agent_token"]],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    md = (("coder-session-token", info["api_key"]),)
    channel = grpc.insecure_channel(server.grpc)
    stub = cpb_grpc.AgentConnServiceStub(channel)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                stub.ListPtySessions(
                    cpb.ListPtySessionsRequest(agent_id=info["agent_id"]), metadata=md, timeout=5
                )
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def terminal(command: str):
            requests: queue.Queue = queue.Queue()
            requests.put(
                cpb.PtyRequest(open=cpb.PtyOpen(agent_id=info["agent_id"], command=command))
            )

            def gen():
                while (item := requests.get()) is not None:
                    yield item

            call = stub.Pty(gen(), metadata=md)
            next(call)  # the session
            return requests, call

        requests, call = terminal("cat")
        latencies = []
        for i in range(KEYSTROKES):
            ch = bytes([97 + i % 26])
            t0 = time.perf_counter()
            requests.put(cpb.PtyRequest(data=ch))
            got = b""
            while ch not in got:
                got += next(call).output
            latencies.append(time.perf_counter() - t0)
        requests.put(None)
        call.cancel()

        requests, call = terminal(BULK_COMMAND)
        got = 0
        t0 = time.perf_counter()
        for message in call:
            got += message.output.count(b"x")
            if got >= BULK_BYTES:
                break
        elapsed = time.perf_counter() - t0
        requests.put(None)
        call.cancel()
        facade = _facade_pty(server, info)
        return (latencies, elapsed), facade
    finally:
        channel.close()
        agent.terminate()
        agent.wait(30)


def _ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def terminal() -> None:
    local, local_bulk = _local_pty()
    server = AgentplaneProcess()
    try:
        (remote, remote_bulk), (facade, facade_bulk) = _rpc_pty(server)
    finally:
        server.close()
    print(
        f"  keystroke -> echo, local PTY:        p50 {_ms(local, 50):6.2f} ms  "
        f"p99 {_ms(local, 99):6.2f} ms"
    )
    print(
        f"  keystroke -> echo, Pty RPC + tunnel: p50 {_ms(remote, 50):6.2f} ms  "
        f"p99 {_ms(remote, 99):6.2f} ms"
    )
    print(
        f"  keystroke -> echo, facade WebSocket: p50 {_ms(facade, 50):6.2f} ms  "
        f"p99 {_ms(facade, 99):6.2f} ms"
    )
    mib = BULK_BYTES / (1 << 20)
    print(
        f"  10 MiB of output: local {mib / local_bulk:6.1f} MiB/s, through the tunnel "
        f"{mib / remote_bulk:6.1f} MiB/s "
        f"({remote_bulk and local_bulk / remote_bulk:.0%} of local), "
        f"through the facade {mib / facade_bulk:6.1f} MiB/s "
        f"({facade_bulk and local_bulk / facade_bulk:.0%} of local)"
    )


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("all", "pty"):
        print("Terminal: keystroke echo and output throughput")
        terminal()
    if which in ("all", "load"):
        print(
            f"Agent tunnels: N agents on one replica, Coder's steady traffic "
            f"x{COMPRESS:g} ({MEASURE_SECONDS:.0f} s measured per N, "
            f"{GENERATORS} generator processes)"
        )
        for backend in os.environ.get("BENCH_TUNNEL_BACKENDS", "sqlite,postgresql").split(","):
            load(backend)


if __name__ == "__main__":
    main()
