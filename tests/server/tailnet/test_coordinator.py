"""Coder's coordinator rules, each over a real gRPC server and real
Coordinate streams, on SQLite and PostgreSQL (one replica).

Barriers instead of sleeps: an agent's ``ready_for_handshake`` to a peer it
shares no tunnel with is answered with an error, and a user-scoped client's
tunnel to a second agent is answered with that agent's node; each proves
every earlier request of that stream was handled."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wgrpc
from coder.tailnet.v2 import tailnet_pb2 as tpb

from server.embedded import EmbeddedCore
from server.tailnet.coordinator import encode_peer_update, encode_response
from tests.conftest import ADMIN_TOKEN, Provisioner
from tests.rest_facade._live import wait_until
from tests.server.tailnet._coordinate import (
    DISCONNECTED,
    LOST,
    NODE,
    RFH,
    Coordination,
    add_tunnel,
    agent_node,
    client_node,
    disconnect,
    md,
    ready_for_handshake,
    remove_tunnel,
    update_self,
)


def agent_barrier(agent: Coordination) -> None:
    """Every earlier request of this agent has been handled."""
    probe = uuid.uuid4()
    agent.send(ready_for_handshake(probe))
    agent.wait_for(lambda r: r.error == f'you do not share a tunnel with "{probe}"')


def client_barrier(client: Coordination, other_agent_id: str) -> None:
    """Every earlier request of this user-scoped client has been handled
    (``other_agent_id``: a connected agent with a node, not otherwise used);
    nothing else may arrive before the answer."""
    client.send(remove_tunnel(other_agent_id), add_tunnel(other_agent_id))
    while True:
        update = client.next_update()
        assert update.id == uuid.UUID(other_agent_id).bytes, update
        if update.kind == NODE:
            assert update.reason == "add tunnel"
            return


def connected_agent(streams, agent, n: int = 1) -> Coordination:
    stream = streams.agent(agent)
    stream.send(update_self(agent_node(agent.id, n)))
    agent_barrier(stream)
    return stream


def test_add_tunnel_exchanges_nodes_both_ways(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    client, client_id = streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    got = client.next_update()
    assert (got.id, got.kind, got.reason) == (uuid.UUID(main.id).bytes, NODE, "add tunnel")
    assert got.node == agent_node(main.id)
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (client_id.bytes, NODE, "add tunnel")
    assert got.node == client_node()


def test_tunnel_to_an_agent_not_connected_yet_is_kept(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    connected_agent(streams, other)
    client, client_id = streams.client(ws2)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client_barrier(client, other.id)
    # The agent connects later: its first response is the init batch.
    agent = streams.agent(main)
    init = agent.next()
    assert [(u.id, u.kind, u.reason) for u in init.peer_updates] == [
        (client_id.bytes, NODE, "init")
    ]
    agent.send(update_self(agent_node(main.id)))
    got = client.next_update()
    assert (got.id, got.kind, got.reason) == (uuid.UUID(main.id).bytes, NODE, "node update")


def test_a_reconnecting_agent_gets_its_clients_in_one_init_batch(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    clients = [streams.client(ws, main) for _ in range(3)]
    for n, (client, _) in enumerate(clients):
        client.send(update_self(client_node(n)), add_tunnel(main.id))
        client.wait_update(main.id, NODE)
    for _ in clients:
        agent.next_update()
    agent.cancel()
    for client, _ in clients:
        assert client.wait_update(main.id, LOST).reason == "lost"
    # Tunnels to the lost agent stayed.
    again = streams.agent(main)
    init = again.next()
    assert {u.id for u in init.peer_updates} == {cid.bytes for _, cid in clients}
    assert {(u.kind, u.reason) for u in init.peer_updates} == {(NODE, "init")}
    again.send(update_self(agent_node(main.id, 2)))
    for client, _ in clients:
        got = client.next_update()
        assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 2)


def test_the_same_id_replaces_the_old_stream(streams, ws) -> None:
    main = ws.agent("main")
    first = connected_agent(streams, main)
    client, _ = streams.client(ws, main)
    client.send(add_tunnel(main.id))
    client.wait_update(main.id, NODE)
    second = streams.agent(main)
    assert first.end() is None
    # The client was told nothing about the replacement; the new stream
    # is the agent now.
    second.send(update_self(agent_node(main.id, 7)))
    got = client.next_update()
    assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 7)


def test_update_self_reaches_tunnel_peers_once_per_distinct_node(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    agent = connected_agent(streams, main, 1)
    connected_agent(streams, other)
    client, _ = streams.client(ws2)
    client.send(add_tunnel(main.id))
    assert client.next_update().node.id == 1
    # The same node again is not re-sent; the next different one is.
    agent.send(update_self(agent_node(main.id, 1)), update_self(agent_node(main.id, 2)))
    got = client.next_update()
    assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 2)
    agent.send(update_self(agent_node(main.id, 2)))
    agent_barrier(agent)
    client_barrier(client, other.id)


def test_remove_tunnel_disconnects_both_sides(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    agent = connected_agent(streams, main)
    connected_agent(streams, other)
    client, client_id = streams.client(ws2)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    client.send(remove_tunnel(main.id))
    got = client.next_update()
    assert (got.id, got.kind, got.reason) == (
        uuid.UUID(main.id).bytes,
        DISCONNECTED,
        "remove tunnel",
    )
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (client_id.bytes, DISCONNECTED, "remove tunnel")
    # No tunnel, no more updates either way.
    agent.send(update_self(agent_node(main.id, 3)))
    agent_barrier(agent)
    client_barrier(client, other.id)


def test_ready_for_handshake_reaches_the_tunnel_peer(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    client, client_id = streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    agent.send(ready_for_handshake(client_id))
    got = client.next_update()
    assert (got.id, got.kind, got.reason, got.HasField("node")) == (
        uuid.UUID(main.id).bytes,
        RFH,
        "",
        False,
    )
    # Without a tunnel: an error in the response, and the stream goes on.
    stranger = uuid.uuid4()
    agent.send(ready_for_handshake(stranger))
    response = agent.next()
    assert response.error == f'you do not share a tunnel with "{stranger}"'
    assert not response.peer_updates
    agent_barrier(agent)


def test_graceful_disconnect_takes_the_peers_tunnels(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    agent = connected_agent(streams, main)
    connected_agent(streams, other)
    token = streams.resume_token(ws2.api_key)
    client, client_id = streams.client(ws2, token=token)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    client.send(disconnect())
    assert client.end() is None
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (client_id.bytes, DISCONNECTED, "graceful disconnect")
    # The same peer comes back without re-adding its tunnel: the tunnel
    # went with it, so the agent's news no longer reaches it.
    back, back_id = streams.client(ws2, token=token)
    assert back_id == client_id
    agent.send(update_self(agent_node(main.id, 5)))
    agent_barrier(agent)
    client_barrier(back, other.id)


def test_a_stream_that_just_ends_is_lost(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    client, client_id = streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.next_update()
    client.close_sending()
    assert client.end() is None
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (client_id.bytes, LOST, "lost")
    cancelled, cancelled_id = streams.client(ws, main)
    cancelled.send(update_self(client_node(2)), add_tunnel(main.id))
    cancelled.next_update()
    agent.next_update()
    cancelled.cancel()
    got = agent.next_update()
    assert (got.id, got.kind, got.reason) == (cancelled_id.bytes, LOST, "lost")


def test_nobody_hears_of_a_peer_it_was_never_sent(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    connected_agent(streams, other)
    agent = streams.agent(main)  # connected, but never posts a node
    client, _ = streams.client(ws2)
    client.send(add_tunnel(main.id))
    client_barrier(client, other.id)
    agent.send(disconnect())
    assert agent.end() is None
    # No DISCONNECTED about an agent the client never heard of.
    client_barrier(client, other.id)


def test_a_peer_that_stops_reading_is_dropped_without_delaying_others(streams, ws, core) -> None:
    coordinator = core.core.coordinator
    coordinator.response_buffer = 8
    coordinator.updates_per_second = 10_000.0
    coordinator.update_burst = 10_000
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    stuck, stuck_id = streams.client(ws, main, read=False)
    stuck.send(update_self(client_node(1)), add_tunnel(main.id))
    assert agent.wait_update(stuck_id, NODE).reason == "add tunnel"
    healthy, _ = streams.client(ws, main)
    healthy.send(add_tunnel(main.id))
    healthy.wait_update(main.id, NODE)
    # Big nodes fill the stuck client's transport window, then its outbox.
    padding = ["x" * 1000] * 60

    def told_about_stuck() -> list:
        agent.poll()
        return [u for r in agent.history for u in r.peer_updates if u.id == stuck_id.bytes]

    n = 100
    while len(told_about_stuck()) < 2:
        n += 1
        assert n < 3000, "the stuck client was never dropped"
        agent.send(update_self(agent_node(main.id, n, allowed_ips=padding)))
        # Every update reaches the healthy client at once, stuck one or not.
        assert healthy.next_update().node.id == n
    dropped = told_about_stuck()[1]
    assert (dropped.kind, dropped.reason) == (DISCONNECTED, "failed update")
    assert coordinator.stats["failed_updates"] == 1
    # Its stream was cut, not left open holding what it did not read.
    stuck.start_reading()
    _, ending = stuck.end_after_updates()
    assert isinstance(ending, grpc.RpcError)


def test_shutdown_tells_every_peer_lost(settings, db, clock) -> None:
    core = EmbeddedCore(settings, db, clock, admin_token=ADMIN_TOKEN).start()
    try:
        channel = grpc.insecure_channel(core.address)
        ws = Provisioner(channel).workspace()
        main = ws.agent("main")
        agent = Coordination(channel, md(main.auth_token))
        agent.send(update_self(agent_node(main.id)))
        agent_barrier(agent)
        client = Coordination(channel, md(ws.api_key, agent_id=main.id))
        client.send(update_self(client_node()), add_tunnel(main.id))
        client.next_update()
        agent.next_update()
    finally:
        stopping = threading.Thread(target=core.stop)
        stopping.start()
    got = client.next_update()
    assert (got.kind, got.reason) == (LOST, "coordinator close")
    got = agent.next_update()
    assert (got.kind, got.reason) == (LOST, "coordinator close")
    assert client.end() is None
    assert agent.end() is None
    stopping.join(30)
    channel.close()


# -- the hand-made wire encoding ----------------------------------------------------


@pytest.mark.parametrize(
    ("node", "kind", "reason"),
    [
        (agent_node(uuid.uuid4(), 3, derp_latency={"1-v4": 0.5}), NODE, "node update"),
        (None, DISCONNECTED, "graceful disconnect"),
        (None, RFH, ""),
        (tpb.Node(), NODE, "init"),
        (client_node(2, disco="é" * 300), LOST, "x" * 200),
    ],
)
def test_responses_are_encoded_as_protobuf_would(node, kind, reason) -> None:
    about = uuid.uuid4().bytes
    node_bytes = node.SerializeToString(deterministic=True) if node is not None else None
    ours = encode_response([encode_peer_update(about, node_bytes, kind, reason)] * 2)
    theirs = tpb.CoordinateResponse(
        peer_updates=[
            tpb.CoordinateResponse.PeerUpdate(id=about, node=node, kind=kind, reason=reason)
        ]
        * 2
    )
    assert tpb.CoordinateResponse.FromString(ours) == theirs
    assert ours == theirs.SerializeToString(deterministic=True)
    error = 'you do not share a tunnel with "x"'
    assert encode_response(error=error) == tpb.CoordinateResponse(error=error).SerializeToString()


def test_an_agents_coordinate_stream_is_its_live_connection(streams, ws, channel) -> None:
    """While an agent's Coordinate stream is open the agent is connected
    (connection status), and disconnected once it ends."""
    main = ws.agent("main")
    stub = wgrpc.WorkspaceAgentsServiceStub(channel)

    def status() -> str:
        return stub.GetWorkspaceAgent(
            wpb.GetWorkspaceAgentRequest(id=main.id), metadata=md(ws.api_key)
        ).agent.status

    assert status() == "connecting"
    agent = connected_agent(streams, main)
    assert status() == "connected"
    agent.send(disconnect())
    assert agent.end() is None
    # The disconnection is written as its own task, right after the stream.
    wait_until(lambda: status() == "disconnected", what="the agent disconnected")
