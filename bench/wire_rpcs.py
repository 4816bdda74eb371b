"""UpdateStats on Coder's wire against the same call over gRPC, on one real
`agentplane server` (SQLite), in one run (target: dRPC >= 50% of the gRPC
calls/s):

* gRPC straight to the core (the baseline);
* dRPC over yamux over the real door, ``GET /api/v2/workspaceagents/me/rpc``
  (a binary WebSocket on the facade's front, bridged to the core) — what a
  Coder agent does;
* dRPC over yamux on loopback TCP to a bare door process that only bridges
  (no HTTP front, no WebSocket framing): what the bridge itself costs.

Every client is an asyncio client in this process, keeping ``concurrency``
calls in flight on one connection (a grpc.aio channel; a yamux session).

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


DOOR_ROW = "dRPC/yamux, me/rpc WebSocket -> core"


async def measure(
    core: str, http: str, door_port: int, token: str, concurrency: int
) -> dict[str, dict]:
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

    rows["dRPC/yamux, bare TCP door -> core"] = await drive(drpc_call, concurrency)
    await session.close()
    ws = await websocket_transport(http, "/api/v2/workspaceagents/me/rpc?version=2.13", token)
    session = YamuxSession(ws, client=True).start()
    client = DRPCClient(session)
    rows[DOOR_ROW] = await drive(drpc_call, concurrency)
    await session.close()
    return rows


class _ClientWebSocket:
    """A client's binary WebSocket as a ByteTransport (wsproto framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from wsproto import ConnectionType
        from wsproto.connection import Connection

        self._reader, self._writer = reader, writer
        self._ws = Connection(ConnectionType.CLIENT)
        self._pending: list[bytes] = []

    async def read(self) -> bytes:
        from wsproto.events import BytesMessage, CloseConnection, Ping

        while not self._pending:
            data = await self._reader.read(256 << 10)
            if not data:
                return b""
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, BytesMessage):
                    self._pending.append(bytes(event.data))
                elif isinstance(event, Ping):
                    self._writer.write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return b""
        return b"".join(self._pending.pop(0) for _ in range(len(self._pending)))

    async def write(self, data: bytes) -> None:
        from wsproto.events import BytesMessage

        self._writer.write(self._ws.send(BytesMessage(data=bytes(data))))
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()


async def websocket_transport(http: str, path: str, token: str) -> _ClientWebSocket:
    import base64

    host, port = http.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nCoder-Session-Token: {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"me/rpc refused: {head[:200]!r}")
    return _ClientWebSocket(reader, writer)


def main() -> dict[str, float]:
    server = AgentplaneProcess()
    door = None
    try:
        token = server.provision()["agent_token"]
        door, port = start_door(server.grpc, token)
        results: dict[str, float] = {}
        for concurrency in (1, 8):
            rows = asyncio.run(measure(server.grpc, server.http, port, token, concurrency))
            base = rows["gRPC (grpc.aio -> core)"]["rps"]
            print(f"\nUpdateStats, {concurrency} call(s) in flight, same core")
            for name, r in rows.items():
                print(
                    f"  {name:<30} {r['rps']:>8.0f} calls/s  p50 {r['p50_ms']:6.2f} ms  "
                    f"p99 {r['p99_ms']:6.2f} ms  ratio {r['rps'] / base:6.1%}"
                )
            results[f"c{concurrency}"] = rows[DOOR_ROW]["rps"] / base
            results[f"bare_door_c{concurrency}"] = (
                rows["dRPC/yamux, bare TCP door -> core"]["rps"] / base
            )
        print(f"\ntarget: dRPC/yamux over me/rpc >= {TARGET:.0%} of gRPC")
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
