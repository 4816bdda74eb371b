"""Slow, idle and long-lived clients against a real `agentplane server`
(issue 11, item 1), printed from one run:

1. A normal client's latency (``GET /workspaceagents/{id}``, keep-alive and
   a new connection per request) alone, then with 1,000 half-sent requests
   held open by another process (half stop in the middle of the head, half
   after 10 of 1,000 declared body bytes; each is re-opened when the server
   closes it at its read timeout, so 1,000 stay open). Target: p99 ≤ 100 ms.
2. 10,000 idle WebSocket log follows held open by another process: the
   facade's resident memory and threads before and after (per connection),
   and the core's (each follow holds a core stream); beside it the floor of
   this design, a bare grpc.aio client holding as many core streams.

Environment: ``BENCH_SLOW_CLIENTS`` (1000), ``BENCH_IDLE_WEBSOCKETS`` (10000),
``BENCH_SECONDS`` (5).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import multiprocessing
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.harness import AgentplaneProcess
from rest_facade.serve import raise_file_limit

SLOW = int(os.environ.get("BENCH_SLOW_CLIENTS", "1000"))
IDLE_WS = int(os.environ.get("BENCH_IDLE_WEBSOCKETS", "10000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
PER_SESSION = 1000


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def _facade_pid(server: AgentplaneProcess) -> int:
    children = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(children[0])


# -- the other process: half-sent requests ----------------------------------------


async def _hold_half_sent(addr: str, count: int, ready: object, stop: object) -> None:
    host, port = addr.rsplit(":", 1)
    heads = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 1000\r\n\r\n0123456789",
    )

    async def one(i: int) -> None:
        while not stop.is_set():  # type: ignore[attr-defined]
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.write(heads[i % 2])
            await writer.drain()
            # Held until the server gives up on it (its read timeout), then again.
            await reader.read()
            writer.close()

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(1)
    ready.set()  # type: ignore[attr-defined]
    while not stop.is_set():  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()


def _slow_process(addr: str, count: int, ready: object, stop: object) -> None:
    raise_file_limit()
    asyncio.run(_hold_half_sent(addr, count, ready, stop))


# -- the other process: idle WebSockets --------------------------------------------


async def _hold_websockets(
    addr: str, path: str, tokens: list[str], count: int, opened: object, stop: object
) -> None:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import Ping

    host, port = addr.rsplit(":", 1)
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task[None]] = []

    async def answer_pings(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(ConnectionType.CLIENT)
        while data := await reader.read(65536):
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, Ping):
                    writer.write(conn.send(event.response()))

    async def open_one(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16))
        token = tokens[i // PER_SESSION].encode()
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Coder-Session-Token: %s\r\n\r\n" % (path.encode(), key, token)
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket {i} refused: {head[:200]!r}")
        writers.append(writer)
        # Answered from the start, as any client library does.
        tasks.append(asyncio.create_task(answer_pings(reader, writer)))

    # Opened 64 at a time, as many clients connecting at once would.
    gate = asyncio.Semaphore(64)

    async def gated(i: int) -> None:
        async with gate:
            await open_one(i)

    await asyncio.gather(*(gated(i) for i in range(count)))
    opened.set()  # type: ignore[attr-defined]
    while not stop.is_set():  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    for writer in writers:
        writer.close()


async def _hold_core_streams(addr: str, key: str, agent_id: str, count: int, out: object) -> None:
    import grpc
    from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc

    channel = grpc.aio.insecure_channel(addr)
    stub = logs_pb2_grpc.LogsServiceStub(channel)
    request = logs_pb2.WatchWorkspaceAgentLogsRequest(agent_id=agent_id)
    metadata = (("coder-session-token", key),)
    calls = []

    async def open_one() -> None:
        call = stub.WatchWorkspaceAgentLogs(request, metadata=metadata)
        await call.read()
        calls.append(call)

    await open_one()
    before = _proc_status(os.getpid())["VmRSS"]
    gate = asyncio.Semaphore(64)

    async def gated() -> None:
        async with gate:
            await open_one()

    await asyncio.gather(*(gated() for _ in range(count)))
    await asyncio.sleep(1)
    out.value = (_proc_status(os.getpid())["VmRSS"] - before) / count  # type: ignore[attr-defined]
    for call in calls:
        call.cancel()
    await channel.close()


def _core_stream_process(addr: str, key: str, agent_id: str, count: int, out: object) -> None:
    """The floor of any facade that relays a WebSocket onto its own core
    stream: a bare grpc.aio client holding as many streams."""
    raise_file_limit()
    asyncio.run(_hold_core_streams(addr, key, agent_id, count, out))


def _websocket_process(
    addr: str, path: str, tokens: list[str], count: int, opened: object, stop: object
) -> None:
    raise_file_limit()
    asyncio.run(_hold_websockets(addr, path, tokens, count, opened, stop))


# -- the normal client -------------------------------------------------------------


def _latencies(addr: str, path: str, key: str, seconds: float, keepalive: bool) -> list[float]:
    host, port = addr.rsplit(":", 1)
    out: list[float] = []
    conn = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", path, headers={"Coder-Session-Token": key})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"normal request failed: {resp.status}")
        if not keepalive:
            conn.close()
            conn = None
        out.append(time.perf_counter() - start)
    if conn is not None:
        conn.close()
    return out


def _summary(values: list[float]) -> str:
    values = sorted(values)
    p50 = statistics.median(values) * 1000
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
    return f"{len(values):6d} requests  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1000


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    results: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    try:
        ids = server.provision()
        path = f"/api/v2/workspaceagents/{ids['agent_id']}"
        print(f"\nA normal client beside {SLOW} half-sent requests (one run)")
        rows = {}
        for keepalive in (True, False):
            rows[("alone", keepalive)] = _latencies(
                server.http, path, ids["api_key"], SECONDS, keepalive
            )
        ready, stop = ctx.Event(), ctx.Event()
        attacker = ctx.Process(target=_slow_process, args=(server.http, SLOW, ready, stop))
        attacker.start()
        ready.wait(60)
        facade = _facade_pid(server)
        # All of them connected and held (the facade holds a descriptor each).
        deadline = time.monotonic() + 60
        while _proc_status(facade)["fds"] < SLOW and time.monotonic() < deadline:
            time.sleep(0.1)
        during = _proc_status(facade)
        for keepalive in (True, False):
            rows[("held", keepalive)] = _latencies(
                server.http, path, ids["api_key"], SECONDS, keepalive
            )
        stop.set()
        attacker.join(30)
        for (when, keepalive), values in rows.items():
            label = f"{'keep-alive' if keepalive else 'new connection'}, {when}"
            print(f"  {label:34s} {_summary(values)}")
            results[f"p99_{when}_{'keepalive' if keepalive else 'new'}_ms"] = _p99(values)
        print(
            f"  facade while held: {during['fds']} descriptors, {during['Threads']} threads, "
            f"{during['VmRSS'] / 1024:.0f} MiB resident"
        )
        print("  target: p99 <= 100 ms with the slow clients held")

        print(f"\n{IDLE_WS} idle WebSocket log follows (one run)")
        tokens = [ids["api_key"]] + [
            server.create_token() for _ in range(max(0, (IDLE_WS - 1) // PER_SESSION))
        ]
        core = server.proc.pid
        before_facade, before_core = _proc_status(facade), _proc_status(core)
        opened, stop = ctx.Event(), ctx.Event()
        holder = ctx.Process(
            target=_websocket_process,
            args=(server.http, f"{path}/logs?follow", tokens, IDLE_WS, opened, stop),
        )
        started = time.monotonic()
        holder.start()
        if not opened.wait(600):
            raise RuntimeError("the WebSockets did not open within 10 minutes")
        took = time.monotonic() - started
        time.sleep(2)
        after_facade, after_core = _proc_status(facade), _proc_status(core)
        keep = _latencies(server.http, path, ids["api_key"], SECONDS, True)
        stop.set()
        holder.join(60)
        per_facade = (after_facade["VmRSS"] - before_facade["VmRSS"]) / IDLE_WS
        per_core = (after_core["VmRSS"] - before_core["VmRSS"]) / IDLE_WS
        print(f"  opened in {took:.1f} s")
        print(
            f"  facade: {before_facade['VmRSS'] / 1024:.0f} -> {after_facade['VmRSS'] / 1024:.0f}"
            f" MiB ({per_facade:.1f} KiB per WebSocket), threads {before_facade['Threads']} -> "
            f"{after_facade['Threads']}, descriptors {before_facade['fds']} -> "
            f"{after_facade['fds']}"
        )
        print(
            f"  core (one follow stream each): {before_core['VmRSS'] / 1024:.0f} -> "
            f"{after_core['VmRSS'] / 1024:.0f} MiB ({per_core:.1f} KiB per stream), threads "
            f"{before_core['Threads']} -> {after_core['Threads']}"
        )
        print(f"  a normal client meanwhile (keep-alive): {_summary(keep)}")
        floor = ctx.Value("d", 0.0)
        bare = ctx.Process(
            target=_core_stream_process,
            args=(server.grpc, ids["api_key"], ids["agent_id"], IDLE_WS, floor),
        )
        bare.start()
        bare.join(600)
        print(
            f"  floor: a bare grpc.aio client holding {IDLE_WS} such core streams: "
            f"{floor.value:.1f} KiB per stream ({floor.value / per_facade:.0%} of the facade's "
            "cost per WebSocket)"
        )
        results.update(
            grpc_client_kib_per_stream=floor.value,
            facade_kib_per_websocket=per_facade,
            core_kib_per_stream=per_core,
            facade_threads_added=after_facade["Threads"] - before_facade["Threads"],
        )
    finally:
        server.close()
    return results


if __name__ == "__main__":
    main()
