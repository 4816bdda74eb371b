"""DERP: 1 KiB packets between two clients through the embedded relay
against a bare asyncio TCP relay that only forwards (the same frames, no
login, no queues, no checks), each relay in a process of its own, in one run
(target: the relay >= 50% of the bare relay's packets/s; the p99 latency it
adds is printed).

Throughput: the sender keeps at most ``WINDOW`` packets in flight (the
receiver's count opens the window again), so neither relay drops. Latency:
one packet at a time, sender and receiver in this process on one clock.

``python -m bench.derp_relay`` runs it; ``--serve relay|bare PORT`` is the
relay process it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import struct
import subprocess
import sys
import time

from nacl.public import PrivateKey

from bench.harness import ROOT, free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
TARGET = 0.50
PACKET = 1024
WINDOW = 256
LATENCY_SAMPLES = 2000
HDR = struct.Struct(">BI")
SEND_PACKET, RECV_PACKET = 0x04, 0x05


# -- the relays (run in their own process) -----------------------------------


async def serve_relay(port: int) -> None:
    from rest_facade.derp.relay import DERPRelay
    from rest_facade.wire.transport import StreamTransport

    relay = DERPRelay(bytes(PrivateKey.generate()))

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay.serve(StreamTransport(reader, writer))

    await _serve(on_conn, port)


async def serve_bare(port: int) -> None:
    """Forwarding only, at asyncio's local limit (a Protocol, no streams, no
    per-packet await): a client's first 32 bytes are its key; then every
    send-packet frame goes straight out as a receive-packet frame."""
    transports: dict[bytes, asyncio.Transport] = {}

    class Forward(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.key = b""
            self.buf = bytearray()

        def data_received(self, data: bytes) -> None:
            buf = self.buf
            buf += data
            if not self.key:
                if len(buf) < 32:
                    return
                self.key = bytes(buf[:32])
                del buf[:32]
                transports[self.key] = self.transport  # type: ignore[assignment]
            pos = 0
            while len(buf) - pos >= 5:
                _kind, length = HDR.unpack_from(buf, pos)
                if len(buf) - pos - 5 < length:
                    break
                start = pos + 5
                dst = transports.get(bytes(buf[start : start + 32]))
                if dst is not None:
                    dst.write(
                        HDR.pack(RECV_PACKET, length) + self.key + buf[start + 32 : start + length]
                    )
                pos = start + length
            del buf[:pos]

        def connection_lost(self, exc: Exception | None) -> None:
            transports.pop(self.key, None)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Forward, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _serve(on_conn, port: int) -> None:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(on_conn, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def start(kind: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.derp_relay", "--serve", kind, str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, port


# -- the clients ---------------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.key = PrivateKey.generate()
        self.public = bytes(self.key.public_key)

    @classmethod
    async def connect(cls, port: int, derp: bool) -> Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        if derp:
            await client._login()
        else:
            client.writer.write(client.public)
        return client

    async def _login(self) -> None:
        import json

        from nacl.public import Box, PublicKey

        _kind, length = HDR.unpack(await self.reader.readexactly(5))
        server_key = (await self.reader.readexactly(length))[8:40]
        sealed = Box(self.key, PublicKey(server_key)).encrypt(json.dumps({"version": 2}).encode())
        payload = self.public + bytes(sealed)
        self.writer.write(HDR.pack(0x02, len(payload)) + payload)
        _kind, length = HDR.unpack(await self.reader.readexactly(5))
        await self.reader.readexactly(length)  # server info

    def send(self, dst: bytes, packet: bytes) -> None:
        self.writer.write(HDR.pack(SEND_PACKET, 32 + len(packet)) + dst + packet)

    async def recv(self) -> bytes:
        while True:
            kind, length = HDR.unpack(await self.reader.readexactly(5))
            payload = await self.reader.readexactly(length)
            if kind == RECV_PACKET:
                return payload[32:]


async def measure(port: int, derp: bool) -> dict:
    sender = await Client.connect(port, derp)
    receiver = await Client.connect(port, derp)
    await asyncio.sleep(0.2)  # both registered before the first packet
    # Throughput with a bounded window.
    payload = os.urandom(PACKET)
    received = 0
    window_open = asyncio.Event()
    stop = time.perf_counter() + SECONDS

    async def receive() -> None:
        nonlocal received
        while True:
            await receiver.recv()
            received += 1
            window_open.set()

    reader = asyncio.create_task(receive())
    sent = 0
    started = time.perf_counter()
    while time.perf_counter() < stop:
        while sent - received >= WINDOW:
            window_open.clear()
            await window_open.wait()
        sender.send(receiver.public, payload)
        sent += 1
        if sent % 32 == 0:
            await sender.writer.drain()
    while received < sent:
        window_open.clear()
        await asyncio.wait_for(window_open.wait(), 10)
    elapsed = time.perf_counter() - started
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    # Latency: one packet at a time.
    latencies = []
    for _ in range(LATENCY_SAMPLES):
        t0 = time.perf_counter()
        sender.send(receiver.public, payload)
        await sender.writer.drain()
        await receiver.recv()
        latencies.append(time.perf_counter() - t0)
    for c in (sender, receiver):
        c.writer.close()
    ordered = sorted(latencies)
    return {
        "pps": received / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def main() -> dict[str, float]:
    rows = {}
    for kind, derp in (("bare", False), ("relay", True)):
        proc, port = start(kind)
        try:
            rows[kind] = asyncio.run(measure(port, derp))
        finally:
            proc.terminate()
            proc.wait(10)
    base = rows["bare"]
    print(f"\nDERP, {PACKET}-byte packets between two clients, window {WINDOW}")
    names = {"bare": "bare asyncio TCP forwarder", "relay": "embedded DERP relay"}
    for kind, r in rows.items():
        print(
            f"  {names[kind]:<30} {r['pps']:>9.0f} packets/s  p50 {r['p50_ms']:6.3f} ms  "
            f"p99 {r['p99_ms']:6.3f} ms  ratio {r['pps'] / base['pps']:6.1%}"
        )
    ratio = rows["relay"]["pps"] / base["pps"]
    added = rows["relay"]["p99_ms"] - base["p99_ms"]
    print(f"\ntarget: relay >= {TARGET:.0%} of the bare forwarder")
    print(f"  packets/s ratio {ratio:6.1%}  {'ok' if ratio >= TARGET else 'BELOW'}")
    print(f"  p99 latency added by the relay: {added:+.3f} ms")
    return {"ratio": ratio, "p99_added_ms": added}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve = serve_relay if sys.argv[2] == "relay" else serve_bare
        asyncio.run(serve(int(sys.argv[3])))
    else:
        main()
