"""Tailnet coordination benchmarks (``python -m bench.tailnet``), ratios
measured in the same run against a bare grpc.aio server speaking the same
messages (``bench/tailnet_bare.py``):

* fan-out: one agent's update_self reaching 1,000 tunnelled clients, vs the
  bare server broadcasting one message to 1,000 streams (target <= 2x);
* idle streams: core RSS per connected Coordinate stream (10,000 of them)
  vs the bare server holding 10,000 idle bidi streams (target <= 1.5x);
* node propagation, client -> agent, with 1,000 peers connected: p99 on one
  replica (target <= 20 ms) and across two replicas on PostgreSQL
  (target <= 100 ms).

Clients run in this process on grpc.aio; the servers are real processes.
``BENCH_TAILNET_PEERS`` / ``BENCH_TAILNET_IDLE`` change the counts.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc

from bench.harness import ROOT, AgentplaneProcess, free_port
from server.tailnet.policies import service_addresses

PEERS = int(os.environ.get("BENCH_TAILNET_PEERS", "1000"))
IDLE = int(os.environ.get("BENCH_TAILNET_IDLE", "10000"))
ROUNDS = 30
SAMPLES = 1000
STREAMS_PER_CHANNEL = 500
PG_URL = os.environ.get("AGENTPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

Req = tpb.CoordinateRequest


def _agent_address(agent_id: str) -> str:
    addresses = sorted(str(a) for a in service_addresses(uuid.UUID(agent_id)))
    return next(a for a in addresses if a.startswith("fd7a:") and "49d6" not in a) + "/128"


def agent_node(agent_id: str, n: int) -> tpb.Node:
    return tpb.Node(
        id=n,
        preferred_derp=999,
        addresses=[_agent_address(agent_id)],
        endpoints=["10.0.0.1:41641", "[fd00::1]:41641"],
        derp_latency={"999-v4": 0.012, "999-v6": 0.015},
        key=os.urandom(32),
        disco="discokey:" + "ab" * 32,
    )


def client_node(n: int) -> tpb.Node:
    return tpb.Node(
        id=n,
        preferred_derp=999,
        addresses=[f"fd7a:115c:a1e0::{n % 65535:x}/128"],
        endpoints=["192.168.1.2:41641"],
        derp_latency={"999-v4": 0.02},
        key=os.urandom(32),
        disco="discokey:" + "cd" * 32,
    )


def update_self(node: tpb.Node) -> tpb.CoordinateRequest:
    return Req(update_self=Req.UpdateSelf(node=node))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Bare:
    def __init__(self) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.tailnet_bare", self.address],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Peers:
    """Many Coordinate streams from this process, each read by a task that
    hands every response to ``on_response``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []

    def _stub(self) -> Any:
        if len(self.calls) >= len(self.channels) * STREAMS_PER_CHANNEL:
            self.channels.append(grpc.aio.insecure_channel(self.address))
        return tgrpc.TailnetStub(self.channels[-1])

    async def open(
        self,
        metadata: tuple[tuple[str, str], ...],
        first: list[tpb.CoordinateRequest],
        on_response: Callable[[tpb.CoordinateResponse], None] | None = None,
        *,
        answered: bool = False,
    ) -> Any:
        """``answered``: wait for the stream's first response (proof that
        the server took it all in) and read no further."""
        call = self._stub().Coordinate(metadata=metadata)
        for request in first:
            await call.write(request)
        self.calls.append(call)
        if answered:
            response = await call.read()
            assert response is not grpc.aio.EOF, "the stream ended"
        if on_response is not None:

            async def read() -> None:
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        return
                    on_response(response)

            self.readers.append(asyncio.create_task(read()))
        return call

    async def open_many(self, count: int, make: Callable[[int], Any], parallel: int = 100) -> None:
        todo = iter(range(count))

        async def worker() -> None:
            for i in todo:
                await make(i)

        await asyncio.gather(*(worker() for _ in range(parallel)))

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            await channel.close()


class FanOut:
    """Counts, per round, when the last of the receivers got node ``target``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.target = -1
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def on_response(self, response: tpb.CoordinateResponse) -> None:
        for update in response.peer_updates:
            if update.node.id == self.target:
                self.count += 1
                if self.count == self.expected:
                    self.last = time.perf_counter()
                    self.done.set()

    async def round(self, send: Callable[[int], Any], target: int) -> float:
        self.target, self.count = target, 0
        self.done.clear()
        started = time.perf_counter()
        await send(target)
        async with asyncio.timeout(30):
            await self.done.wait()
        return self.last - started


class Arrivals:
    """Futures for node ids a peer is waiting to hear about."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[float]] = {}

    def on_response(self, response: tpb.CoordinateResponse) -> None:
        for update in response.peer_updates:
            fut = self.waiting.pop(update.node.id, None)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    def expect(self, node_id: int) -> asyncio.Future[float]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[node_id] = fut
        return fut


def _md(token: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return (("coder-session-token", token), *((k.replace("_", "-"), v) for k, v in extra.items()))


async def coordinated(
    agent_side: str, client_side: str, creds: dict[str, str], peers: int
) -> tuple[Peers, Any, FanOut, Arrivals]:
    """An agent on one server and ``peers`` clients (of that agent, with a
    node each) on another (or the same); returns when every client has the
    agent's node and the agent every client's."""
    agent_id = creds["agent_id"]
    conns = Peers(agent_side)
    clients = conns if client_side == agent_side else Peers(client_side)
    fan = FanOut(peers)
    arrivals = Arrivals()
    setup = [arrivals.expect(1_000_000 + i) for i in range(peers)]
    agent = await conns.open(
        _md(creds["agent_token"]), [update_self(agent_node(agent_id, 0))], arrivals.on_response
    )
    fan.target = 0
    await clients.open_many(
        peers,
        lambda i: clients.open(
            _md(creds["api_key"], agent_id=agent_id),
            [
                update_self(client_node(1_000_000 + i)),
                Req(add_tunnel=Req.Tunnel(id=uuid.UUID(agent_id).bytes)),
            ],
            fan.on_response,
        ),
    )
    async with asyncio.timeout(120):
        await asyncio.gather(*setup)
        if fan.count < peers:
            await fan.done.wait()
    if clients is not conns:
        conns.readers += clients.readers
        conns.calls += clients.calls
        conns.channels += clients.channels
    return conns, agent, fan, arrivals


async def fan_out_rounds(
    agent: Any, fan: FanOut, agent_id: str, bare_pub: Any, bare_fan: FanOut
) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    theirs: list[float] = []
    for n in range(1, ROUNDS + 1):
        ours.append(await fan.round(lambda t: agent.write(update_self(agent_node(agent_id, t))), n))
        theirs.append(
            await bare_fan.round(lambda t: bare_pub.write(update_self(agent_node(agent_id, t))), n)
        )
        # Under the agent's update rate (10/s after a burst of 20).
        await asyncio.sleep(0.12)
    return ours, theirs


async def propagation(conns: Peers, arrivals: Arrivals, samples: int) -> list[float]:
    """Client -> agent: a client posts a new node, until the agent has it."""
    clients = conns.calls[1:]
    out = []
    for k in range(samples):
        node_id = 2_000_000 + k
        fut = arrivals.expect(node_id)
        started = time.perf_counter()
        await clients[k % len(clients)].write(update_self(client_node(node_id)))
        async with asyncio.timeout(10):
            out.append(await fut - started)
        await asyncio.sleep(0.002)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


async def run_one_replica(server: AgentplaneProcess, bare: Bare) -> dict[str, Any]:
    creds = server.provision()
    conns, agent, fan, arrivals = await coordinated(server.grpc, server.grpc, creds, PEERS)
    bare_peers = Peers(bare.address)
    bare_fan = FanOut(PEERS)
    await bare_peers.open_many(
        PEERS,
        lambda i: bare_peers.open((), [update_self(client_node(i))], bare_fan.on_response),
    )
    publisher = await bare_peers.open((("role", "publisher"),), [])
    try:
        ours, theirs = await fan_out_rounds(agent, fan, creds["agent_id"], publisher, bare_fan)
        latency = await propagation(conns, arrivals, SAMPLES)
    finally:
        await conns.close()
        await bare_peers.close()
    return {"fan_ours": ours, "fan_bare": theirs, "latency": latency}


async def run_idle(server: AgentplaneProcess, bare: Bare) -> dict[str, float]:
    """RSS growth per stream, each stream answered once (the core sends a
    client its agent's node; the bare server echoes the first request)
    and idle after."""
    creds = server.provision()
    agent_id = creds["agent_id"]
    tunnel = Req(add_tunnel=Req.Tunnel(id=uuid.UUID(agent_id).bytes))
    out: dict[str, float] = {}
    for name, address, pid in (
        ("ours", server.grpc, server.proc.pid),
        ("bare", bare.address, bare.proc.pid),
    ):
        peers = Peers(address)
        if name == "ours":
            metadata = _md(creds["api_key"], agent_id=agent_id)
            first = [tunnel]
            # The agent, read all along (it hears of every client).
            await peers.open(
                _md(creds["agent_token"]), [update_self(agent_node(agent_id, 0))], lambda r: None
            )
        else:
            metadata, first = (), []

        def opener(
            i: int, offset: int, peers: Peers = peers, metadata: Any = metadata, first: Any = first
        ) -> Any:
            return peers.open(
                metadata, [update_self(client_node(offset + i)), *first], answered=True
            )

        # Warm: the first streams bring in what any stream needs once.
        await peers.open_many(50, lambda i: opener(i, 0))
        await asyncio.sleep(1)
        before = rss_kib(pid)
        await peers.open_many(IDLE, lambda i: opener(i, 100), parallel=50)
        await asyncio.sleep(1)
        out[name] = (rss_kib(pid) - before) * 1024 / IDLE
        await peers.close()
    return out


async def run_two_replicas(a: AgentplaneProcess, b: AgentplaneProcess) -> list[float]:
    creds = a.provision()
    conns, _agent, _fan, arrivals = await coordinated(a.grpc, b.grpc, creds, PEERS)
    try:
        return await propagation(conns, arrivals, SAMPLES)
    finally:
        await conns.close()


def main() -> None:
    print(
        f"\nTailnet coordination ({PEERS} peers; {IDLE} idle streams; "
        f"load average before {os.getloadavg()[0]:.1f})"
    )
    server, bare = AgentplaneProcess(), Bare()
    try:
        one = asyncio.run(run_one_replica(server, bare))
    finally:
        server.close()
        bare.close()
    ours, theirs = statistics.median(one["fan_ours"]), statistics.median(one["fan_bare"])
    print(
        f"  fan-out of one update_self to {PEERS} clients      median {ours * 1e3:7.2f} ms  "
        f"(bare grpc.aio broadcast {theirs * 1e3:7.2f} ms)  ratio {ours / theirs:4.2f}x  "
        "target <= 2x"
    )
    lat = one["latency"]
    print(
        f"  propagation client -> agent, one replica (SQLite)  p50 {pct(lat, 0.5):6.2f} ms  "
        f"p99 {pct(lat, 0.99):6.2f} ms  target p99 <= 20 ms"
    )

    server, bare = AgentplaneProcess(), Bare()
    try:
        idle = asyncio.run(run_idle(server, bare))
    finally:
        server.close()
        bare.close()
    print(
        f"  RSS per idle Coordinate stream                     {idle['ours'] / 1024:6.1f} KiB  "
        f"(bare grpc.aio bidi stream {idle['bare'] / 1024:6.1f} KiB)  "
        f"ratio {idle['ours'] / idle['bare']:4.2f}x  target <= 1.5x"
    )

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as err:
        print(f"  (two replicas on PostgreSQL skipped: {err.__class__.__name__})")
        return
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        a = AgentplaneProcess(url)
        b = AgentplaneProcess(url)
        try:
            lat = asyncio.run(run_two_replicas(a, b))
        finally:
            a.close()
            b.close()
        print(
            f"  propagation client -> agent, two replicas (PG)     p50 {pct(lat, 0.5):6.2f} ms  "
            f"p99 {pct(lat, 0.99):6.2f} ms  target p99 <= 100 ms"
        )
        print(f"  (load average after {os.getloadavg()[0]:.1f}; the machine is shared)")
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
