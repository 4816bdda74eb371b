"""Careless and hostile peers: oversize and malformed messages, bad UUIDs,
absurd nodes, update floods. Each gets a clear error (or is coalesced), and
the coordinator and every other peer go on. Nothing of one user's peers
reaches a peer without a tunnel to it."""

from __future__ import annotations

import math
import uuid

import grpc
import pytest
from coder.tailnet.v2 import tailnet_pb2 as tpb
from google.protobuf import timestamp_pb2

from tests.server.tailnet._coordinate import (
    LOST,
    NODE,
    Req,
    add_tunnel,
    agent_node,
    client_node,
    md,
    ready_for_handshake,
    remove_tunnel,
    update_self,
)
from tests.server.tailnet.test_coordinator import agent_barrier, connected_agent
from tests.server.tailnet.test_policies import refused


def _still_coordinating(streams, ws, agent) -> None:
    """A new client still gets the agent's node at once."""
    client, _ = streams.client(ws, ws.agent("main"))
    client.send(add_tunnel(ws.agent("main").id))
    assert client.next_update().reason == "add tunnel"
    agent_barrier(agent)


def test_an_oversize_message_ends_only_that_stream(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    client, client_id = streams.client(ws, main)
    client.send(update_self(client_node()), add_tunnel(main.id))
    client.next_update()
    agent.wait_update(client_id, NODE)
    huge = tpb.Node(addresses=["fd7a:115c:a1e0::1/128"], endpoints=["x" * 1024] * (5 * 1024))
    assert huge.ByteSize() > 4 << 20
    client.send(update_self(huge))
    err = client.end()
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert agent.next_update().kind == LOST
    _still_coordinating(streams, ws, agent)


def test_a_malformed_message_ends_only_that_stream(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    raw = streams.open(md(ws.api_key, agent_id=main.id), raw=True)
    raw.send(
        update_self(client_node()).SerializeToString(), add_tunnel(main.id).SerializeToString()
    )
    assert raw.next_update().reason == "add tunnel"
    assert agent.next_update().kind == NODE
    raw.send(b"\x0a\xff\xff\xff\xff\x0f garbage")
    refused(
        raw,
        grpc.StatusCode.INVALID_ARGUMENT,
        "The request could not be read as a coder.tailnet.v2.CoordinateRequest.",
    )
    assert agent.next_update().kind == LOST
    _still_coordinating(streams, ws, agent)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (add_tunnel(b"\x01\x02\x03"), "parse add tunnel id: invalid UUID (got 3 bytes)"),
        (
            remove_tunnel(b"\x01" * 17),
            "unable to convert bytes to UUID: invalid UUID (got 17 bytes)",
        ),
        (add_tunnel(b""), "parse add tunnel id: invalid UUID (got 0 bytes)"),
    ],
)
def test_bad_uuids_in_tunnel_ids(streams, ws, request_, message: str) -> None:
    client, _ = streams.client(ws)
    client.send(request_)
    refused(client, grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_bad_uuid_in_ready_for_handshake(streams, ws) -> None:
    agent = streams.agent(ws.agent("main"))
    agent.send(ready_for_handshake(b"\x00" * 15))
    refused(
        agent,
        grpc.StatusCode.INVALID_ARGUMENT,
        "unable to convert bytes to UUID: invalid UUID (got 15 bytes)",
    )


def _absurd(main_id: str) -> list[tuple[tpb.Node, str]]:
    def node(**fields) -> tpb.Node:
        return agent_node(main_id, **fields)

    nan = node()
    nan.derp_latency["1-v4"] = math.nan
    negative = node()
    negative.derp_latency["1-v4"] = -1.0
    slow = node()
    slow.derp_latency["1-v4"] = 1e9
    many = node()
    for i in range(600):
        many.derp_latency[f"{i}-v4"] = 0.01
    return [
        (nan, "invalid node: derp_latency['1-v4'] = nan"),
        (negative, "invalid node: derp_latency['1-v4'] = -1.0"),
        (slow, "invalid node: derp_latency['1-v4'] = 1000000000.0"),
        (many, "invalid node: 600 derp_latency entries, at most 512"),
        (node(preferred_derp=-5), "invalid node: preferred_derp -5"),
        (node(allowed_ips=["10.0.0.0/8"] * 2000), "invalid node: 2000 allowed_ips, at most 1024"),
        (node(key=b"k" * 200), "invalid node: key of 200 bytes"),
        (node(disco="d" * 2000), "invalid node: disco key too long"),
        (
            node(as_of=timestamp_pb2.Timestamp(seconds=10**13)),
            "invalid node: as_of is not a valid timestamp",
        ),
        (node(allowed_ips=["y" * 1000] * 100), "invalid node: 10"),
    ]


@pytest.mark.parametrize("case", range(10))
def test_absurd_node_values_are_refused(streams, ws, case: int) -> None:
    main = ws.agent("main")
    node, message = _absurd(main.id)[case]
    agent = streams.agent(main)
    agent.send(update_self(node))
    err = agent.end()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(message), err.details()


def test_update_self_without_a_node(streams, ws) -> None:
    agent = streams.agent(ws.agent("main"))
    agent.send(Req(update_self=Req.UpdateSelf()))
    refused(agent, grpc.StatusCode.INVALID_ARGUMENT, "update_self without a node")


def test_a_flood_of_updates_is_coalesced_and_the_newest_wins(streams, ws, core) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main, 1)
    client, _ = streams.client(ws, main)
    client.send(add_tunnel(main.id))
    assert client.next_update().node.id == 1
    agent.send(*(update_self(agent_node(main.id, n)) for n in range(2, 302)))
    seen = []
    while not seen or seen[-1] != 301:
        seen.append(client.next_update().node.id)
    # The newest arrived, in order, and far from every one of them did.
    assert seen == sorted(seen)
    assert len(seen) < 100, len(seen)
    assert core.core.coordinator.stats["coalesced_updates"] > 0


def test_nothing_of_one_users_peers_reaches_another(streams, provision, ws) -> None:
    other_ws = provision.workspace()
    mine, theirs = ws.agent("main"), other_ws.agent("main")
    my_agent = connected_agent(streams, mine, 1)
    their_agent = connected_agent(streams, theirs, 2)
    my_client, my_client_id = streams.client(ws, mine)
    their_client, their_client_id = streams.client(other_ws)
    my_client.send(update_self(client_node(1)), add_tunnel(mine.id))
    their_client.send(update_self(client_node(2)), add_tunnel(theirs.id))
    my_client.next_update()
    their_client.next_update()
    for n in range(3, 10):
        my_agent.send(update_self(agent_node(mine.id, n)))
        assert my_client.next_update().node.id == n
    my_client.send(update_self(client_node(5)))
    my_agent.wait_update(my_client_id, NODE)
    # The other user's client and agent hear only of each other.
    their_agent.wait_update(their_client_id, NODE)
    agent_barrier(their_agent)
    their_client.send(remove_tunnel(theirs.id))
    assert their_client.next_update().reason == "remove tunnel"
    mine_ids = {uuid.UUID(mine.id).bytes, my_client_id.bytes}
    for stream in (their_client, their_agent):
        heard = {u.id for r in stream.history for u in r.peer_updates}
        assert not heard & mine_ids
