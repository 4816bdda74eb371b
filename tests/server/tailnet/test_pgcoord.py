"""Several replicas on one PostgreSQL: peers on different cores see each
other exactly as on one replica — nodes, tunnels, reasons, handshakes — and
a replica that stops heartbeating is reported LOST to the others' peers and
its rows removed. Two real cores (their own loops, databases, LISTEN
connections) in this process; tests/test_tailnet_replicas.py does it with
real server processes and SIGKILL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wgrpc
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc

from server.clock import SystemClock
from server.config import Settings
from server.embedded import EmbeddedCore
from server.storage.db import Database, create_engine, migrate
from tests.conftest import ADMIN_METADATA, ADMIN_TOKEN, Provisioner, new_backend_url
from tests.server.tailnet._coordinate import (
    DISCONNECTED,
    LOST,
    NODE,
    RFH,
    add_tunnel,
    agent_node,
    client_node,
    disconnect,
    md,
    ready_for_handshake,
    remove_tunnel,
    update_self,
)
from tests.server.tailnet.conftest import TWO_AGENTS, Streams, token_subject
from tests.server.tailnet.test_coordinator import agent_barrier, client_barrier


class Replica:
    def __init__(self, url: str, data_dir: Path, heartbeat: float) -> None:
        self.engine = create_engine(url, pool_size=4)
        self.db = Database(self.engine)
        settings = Settings(
            data_dir=data_dir, admin_token=ADMIN_TOKEN, replica_heartbeat_seconds=heartbeat
        )
        self.core = EmbeddedCore(settings, self.db, SystemClock(), admin_token=ADMIN_TOKEN).start()
        self.channel = grpc.insecure_channel(self.core.address)
        self.streams = Streams(self.channel)
        self.stopped = False

    @property
    def id(self) -> uuid.UUID:
        return self.core.core.registry.replica_id

    def freeze(self) -> None:
        """Stops heartbeating and mirroring without a goodbye, as a killed
        process would (its rows stay behind)."""
        core = self.core.core

        async def freeze() -> None:
            core.registry._task.cancel()
            for task in core.mirror._tasks:
                task.cancel()

        self.core._run(freeze())

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.streams.close_all()
            self.core.stop()
            self.channel.close()
            self.engine.dispose()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    backend = new_backend_url("postgresql", tmp_path)
    engine = create_engine(backend.url)
    migrate(engine)
    engine.dispose()
    # Fast heartbeats: a frozen replica is dead after 3 x 0.3 s.
    a = Replica(backend.url, tmp_path / "a", 0.3)
    b = Replica(backend.url, tmp_path / "b", 0.3)
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()
        backend.cleanup()


def rows_of(engine: sa.Engine, replica_id: uuid.UUID) -> dict[str, int]:
    """The rows a replica still owns, per table (none listed: none left)."""
    out = {}
    with engine.connect() as conn:
        for table, owner in (
            ("replicas", "id"),
            ("tailnet_peers", "replica_id"),
            ("tailnet_tunnels", "replica_id"),
        ):
            count = conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE {owner} = :r"), {"r": replica_id}
            ).scalar()
            if count:
                out[table] = count
    return out


def connected_agent(replica: Replica, agent, n: int = 1):
    """An agent on ``replica`` whose node every replica can read (a client
    tunnelling before that would hear it as a "node update", as on one
    replica)."""
    stream = replica.streams.agent(agent)
    stream.send(update_self(agent_node(agent.id, n)))
    agent_barrier(stream)
    stored(replica, "SELECT count(*) FROM tailnet_peers WHERE id = :p", p=uuid.UUID(agent.id))
    return stream


def stored(replica: Replica, query: str, **params) -> None:
    """Waits until ``query`` counts a row (a replica's writer commits a
    moment after its coordinator has acted)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with replica.engine.connect() as conn:
            if conn.execute(sa.text(query), params).scalar():
                return
        time.sleep(0.02)
    raise AssertionError(f"never stored: {query} {params}")


def test_peers_on_two_replicas_exchange_nodes(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    agent = connected_agent(a, main)
    client, client_id = b.streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    got = client.next_update()
    assert (got.id, got.kind, got.reason) == (uuid.UUID(main.id).bytes, NODE, "add tunnel")
    assert got.node == agent_node(main.id)
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (client_id.bytes, NODE, "add tunnel")
    # Updates both ways, each once.
    agent.send(update_self(agent_node(main.id, 2)), update_self(agent_node(main.id, 2)))
    got = client.next_update()
    assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 2)
    client.send(update_self(client_node(3)))
    got = agent.next_update()
    assert (got.kind, got.reason, got.node.id) == (NODE, "node update", client_node(3).id)
    agent.send(update_self(agent_node(main.id, 4)))
    assert client.next_update().node.id == 4


def test_a_tunnel_to_an_agent_on_no_replica_yet(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace(TWO_AGENTS)
    main, other = ws.agent("main"), ws.agent("other")
    connected_agent(b, other)
    client, client_id = b.streams.client(ws)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client_barrier(client, other.id)
    stored(
        b,
        "SELECT count(*) FROM tailnet_tunnels WHERE src_id = :s AND dst_id = :d",
        s=client_id,
        d=uuid.UUID(main.id),
    )
    agent = a.streams.agent(main)
    init = agent.next()
    assert [(u.id, u.kind, u.reason) for u in init.peer_updates] == [
        (client_id.bytes, NODE, "init")
    ]
    agent.send(update_self(agent_node(main.id)))
    got = client.next_update()
    assert (got.kind, got.reason) == (NODE, "node update")


def test_remove_tunnel_and_leaving_across_replicas(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    agent = connected_agent(a, main)
    first, first_id = b.streams.client(ws, main)
    first.send(update_self(client_node(1)), add_tunnel(main.id))
    first.next_update()
    agent.wait_update(first_id, NODE)
    first.send(remove_tunnel(main.id))
    got = first.next_update()
    assert (got.kind, got.reason) == (DISCONNECTED, "remove tunnel")
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (first_id.bytes, DISCONNECTED, "remove tunnel")

    graceful, graceful_id = b.streams.client(ws, main)
    graceful.send(update_self(client_node(2)), add_tunnel(main.id))
    graceful.next_update()
    agent.wait_update(graceful_id, NODE)
    graceful.send(disconnect())
    assert graceful.end() is None
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (
        graceful_id.bytes,
        DISCONNECTED,
        "graceful disconnect",
    )

    lost, lost_id = b.streams.client(ws, main)
    lost.send(update_self(client_node(3)), add_tunnel(main.id))
    lost.next_update()
    agent.wait_update(lost_id, NODE)
    lost.cancel()
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (lost_id.bytes, LOST, "lost")


def test_an_agent_moving_replicas_keeps_its_clients(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    agent = connected_agent(a, main)
    client, client_id = b.streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    agent.cancel()
    got = client.next_update()
    assert (got.kind, got.reason) == (LOST, "lost")
    # Back on the client's replica: the tunnel to it stayed.
    moved = b.streams.agent(main)
    init = moved.next()
    assert [(u.id, u.kind, u.reason) for u in init.peer_updates] == [
        (client_id.bytes, NODE, "init")
    ]
    moved.send(update_self(agent_node(main.id, 9)))
    got = client.next_update()
    assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 9)


def test_ready_for_handshake_across_replicas(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    agent = connected_agent(a, main)
    client, client_id = b.streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    agent.send(ready_for_handshake(client_id))
    got = client.next_update()
    assert (got.id, got.kind) == (uuid.UUID(main.id).bytes, RFH)


def test_a_replica_that_stops_heartbeating_is_dead(replicas) -> None:
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    connected_agent(a, main)
    client, _ = b.streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    assert {r.id for r in b.core.core.registry.live()} == {a.id, b.id}
    assert set(rows_of(b.engine, a.id)) == {"replicas", "tailnet_peers"}
    frozen_at = time.monotonic()
    a.freeze()
    got = client.next_update()
    assert (got.kind, got.reason) == (LOST, "lost")
    # 3 beats of 0.3 s, checked every 0.15 s (8 s with the default 2 s).
    assert time.monotonic() - frozen_at < 3.0
    # Its rows are removed right after.
    deadline = time.monotonic() + 10
    while (left := rows_of(b.engine, a.id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left
    assert {r.id for r in b.core.core.registry.live()} == {b.id}


def test_shared_state_across_replicas(replicas) -> None:
    """The DERP map, resume tokens and an agent's latency are the same on
    every replica."""
    a, b = replicas
    ws = Provisioner(a.channel).workspace()
    main = ws.agent("main")
    follower = tgrpc.TailnetStub(b.channel).StreamDERPMaps(tpb.StreamDERPMapsRequest())
    first = next(follower)
    assert 999 in first.regions
    new_map = {"regions": {"7": {"regionID": 7, "regionName": "Seven", "nodes": []}}}
    admin_pb2_grpc.AdminServiceStub(a.channel).SetDERPMap(
        admin_pb2.SetDERPMapRequest(derp_map_json=json.dumps(new_map)), metadata=ADMIN_METADATA
    )
    changed_at = time.monotonic()
    second = next(follower)
    assert list(second.regions) == [7] and time.monotonic() - changed_at < 5
    follower.cancel()

    token = a.streams.resume_token(ws.api_key)
    # Signed on one replica, accepted (and refreshed for the same peer) on
    # the other.
    assert token_subject(b.streams.resume_token(ws.api_key, token)) == token_subject(token)
    # The agent's node (latency) as seen from the replica it is not on.
    agent = a.streams.agent(main)
    node = agent_node(main.id, derp_latency={"7-v4": 0.025}, preferred_derp=7)
    agent.send(update_self(node))
    agent_barrier(agent)
    deadline = time.monotonic() + 10
    while True:
        got = (
            wgrpc.WorkspaceAgentsServiceStub(b.channel)
            .GetWorkspaceAgent(wpb.GetWorkspaceAgentRequest(id=main.id), metadata=md(ws.api_key))
            .agent
        )
        if got.latency or time.monotonic() > deadline:
            break
        time.sleep(0.02)  # the node is on its way to the database
    assert dict(got.latency)["Seven"].latency_ms == 25
    assert dict(got.latency)["Seven"].preferred
