"""UpdateStats on Coder's wire (dRPC over yamux, loopback TCP for now: the
WebSocket door comes with the HTTP front) against the same call over gRPC,
on one real `agentplane server` (SQLite), in one run (target: the dRPC
path >= 50% of the gRPC calls/s).

The door runs in a process of its own, as the facade does: it accepts
yamux sessions and bridges each call to the core's gRPC port. Both clients
are asyncio clients in this process, keeping ``concurrency`` calls in
flight on one connection (a grpc.aio channel; a yamux session).

``python -m bench.wire_rpcs`` runs the comparison; ``--door PORT CORE TOKEN``
is the door process it starts.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
from coder.agent.v2 import agent_pb2

from bench.harness import ROOT, AgentplaneProcess, free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
TARGET = 0.50
RPC = "/coder.agent.v2.Agent/UpdateStats"
REQUEST = agent_pb2.UpdateStatsRequest(
    stats=agent_pb2.Stats(
        connections_by_proto={"ssh": 1},
        connection_count=1,
        connection_median_latency_ms=4.2,
        rx_packets=12,
        rx_bytes=3400,
        tx_packets=9,
        tx_bytes=2100,
        session_count_ssh=1,
    )
).SerializeToString()


async def serve_door(port: int, core: str, token: str) -> None:
    from rest_facade.wire.bridge import CoreBridge, call_metadata
    from rest_facade.wire.drpc import serve_session
    from rest_facade.wire.transport import StreamTransport

    channel = grpc.aio.insecure_channel(core)
    handlers = CoreBridge(channel).handlers(call_metadata(token=token, api_version="2.13"))

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_session(StreamTransport(reader, writer), handlers)

    server = await asyncio.start_server(on_conn, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def start_door(core: str, token: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.wire_rpcs", "--door", str(port), core, token],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, port


async def drive(call: Callable[[], Awaitable[object]], concurrency: int) -> dict:
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        while (t0 := time.perf_counter()) < stop:
            await call()
            latencies.append(time.perf_counter() - t0)

    for _ in range(50):  # warm-up
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


async def measure(core: str, door_port: int, token: str, concurrency: int) -> dict[str, dict]:
    from rest_facade.wire.drpc import DRPCClient
    from rest_facade.wire.transport import StreamTransport
    from rest_facade.wire.yamux import YamuxSession

    rows: dict[str, dict] = {}
    async with grpc.aio.insecure_channel(core) as channel:
        method = channel.unary_unary(RPC)
        md = (("coder-session-token", token),)

        async def grpc_call() -> object:
            return await method(REQUEST, metadata=md, timeout=10)

        rows["gRPC (grpc.aio -> core)"] = await drive(grpc_call, concurrency)
    reader, writer = await asyncio.open_connection("127.0.0.1", door_port)
    session = YamuxSession(StreamTransport(reader, writer), client=True).start()
    client = DRPCClient(session)

    async def drpc_call() -> object:
        return await client.unary(RPC, REQUEST)

    rows["dRPC/yamux (door -> core)"] = await drive(drpc_call, concurrency)
    await session.close()
    return rows


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    door = None
    try:
        token = server.provision()["agent_token"]
        door, port = start_door(server.grpc, token)
        results: dict[str, float] = {}
        for concurrency in (1, 8):
            rows = asyncio.run(measure(server.grpc, port, token, concurrency))
            base = rows["gRPC (grpc.aio -> core)"]["rps"]
            print(f"\nUpdateStats, {concurrency} call(s) in flight, same core")
            for name, r in rows.items():
                print(
                    f"  {name:<30} {r['rps']:>8.0f} calls/s  p50 {r['p50_ms']:6.2f} ms  "
                    f"p99 {r['p99_ms']:6.2f} ms  ratio {r['rps'] / base:6.1%}"
                )
            results[f"c{concurrency}"] = rows["dRPC/yamux (door -> core)"]["rps"] / base
        print(f"\ntarget: dRPC/yamux >= {TARGET:.0%} of gRPC")
        for name, ratio in results.items():
            print(f"  UpdateStats_{name:<20} {ratio:6.1%}  {'ok' if ratio >= TARGET else 'BELOW'}")
        return results
    finally:
        if door is not None:
            door.terminate()
            door.wait(10)
        server.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--door":
        asyncio.run(serve_door(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    else:
        main()
