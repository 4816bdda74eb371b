"""Who may do what on a Coordinate stream (Coder's coordinatee policies),
the peer ids clients get (resume tokens), and the credentials checks; each
refusal ends the stream with Coder's message and the right status."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import jwt
import pytest
from coder.tailnet.v2 import tailnet_pb2 as tpb
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.errors import RESOURCE_NOT_FOUND
from server.tailnet.policies import LEGACY_AGENT_ADDRESS, service_addresses
from tests.conftest import ADMIN_METADATA
from tests.server.tailnet._coordinate import (
    LOST,
    NODE,
    add_tunnel,
    client_node,
    md,
    ready_for_handshake,
    update_self,
)
from tests.server.tailnet.conftest import token_subject
from tests.server.tailnet.test_coordinator import agent_barrier, connected_agent


def refused(stream, code: grpc.StatusCode, message: str) -> None:
    err = stream.end()
    assert isinstance(err, grpc.RpcError), "the stream should have been refused"
    assert (err.code(), err.details()) == (code, message)


# -- agents -------------------------------------------------------------------


def test_agents_cannot_open_tunnels_and_their_peers_hear_them_lost(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    client, _ = streams.client(ws, main)
    client.send(add_tunnel(main.id))
    client.wait_update(main.id, NODE)
    agent.send(add_tunnel(uuid.uuid4()))
    refused(agent, grpc.StatusCode.PERMISSION_DENIED, "agents cannot open tunnels")
    assert client.next_update().kind == LOST


@pytest.mark.parametrize("which", ["tailscale", "coder", "legacy"])
def test_an_agent_may_claim_its_service_addresses(streams, ws, which: str) -> None:
    main = ws.agent("main")
    addresses = {str(a) for a in service_addresses(uuid.UUID(main.id))}
    legacy = str(LEGACY_AGENT_ADDRESS)
    pick = {
        "legacy": legacy,
        "tailscale": next(a for a in addresses if a.startswith("fd7a:") and a != legacy),
        "coder": next(a for a in addresses if a.startswith("fd60:627a:a42b:")),
    }[which]
    agent = streams.agent(main)
    agent.send(update_self(tpb.Node(id=1, addresses=[f"{pick}/128"])))
    agent_barrier(agent)


@pytest.mark.parametrize(
    ("address", "code", "message"),
    [
        (
            "fd7a:115c:a1e0:1234::1/128",
            grpc.StatusCode.PERMISSION_DENIED,
            "invalid node address, got fd7a:115c:a1e0:1234::1",
        ),
        (
            "fd7a:115c:a1e0::/64",
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid address bits, expected 128, got 64",
        ),
        (
            "10.0.0.1/32",
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid address bits, expected 128, got 32",
        ),
    ],
)
def test_an_agent_may_not_claim_other_addresses(streams, ws, address, code, message) -> None:
    agent = streams.agent(ws.agent("main"))
    agent.send(update_self(tpb.Node(id=1, addresses=[address])))
    refused(agent, code, message)


def test_an_unparseable_address_is_refused(streams, ws) -> None:
    agent = streams.agent(ws.agent("main"))
    agent.send(update_self(tpb.Node(id=1, addresses=["not an address"])))
    err = agent.end()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith('parse node address: netip.ParsePrefix("not an address")')


# -- clients of one agent ----------------------------------------------------------


def test_a_client_of_one_agent_tunnels_only_to_it(streams, ws2) -> None:
    main, other = ws2.agent("main"), ws2.agent("other")
    client, _ = streams.client(ws2, main)
    client.send(add_tunnel(other.id))
    refused(
        client,
        grpc.StatusCode.PERMISSION_DENIED,
        f"invalid agent id, expected {main.id}, got {other.id}",
    )


@pytest.mark.parametrize("agent_scoped", [True, False])
def test_clients_may_not_send_ready_for_handshake(streams, ws, agent_scoped: bool) -> None:
    main = ws.agent("main")
    client, _ = streams.client(ws, main if agent_scoped else None)
    client.send(ready_for_handshake(main.id))
    refused(client, grpc.StatusCode.PERMISSION_DENIED, "clients may not send ready_for_handshake")


@pytest.mark.parametrize("agent_scoped", [True, False])
def test_client_addresses_must_be_single_hosts(streams, ws, agent_scoped: bool) -> None:
    client, _ = streams.client(ws, ws.agent("main") if agent_scoped else None)
    client.send(update_self(tpb.Node(addresses=["fd7a:115c:a1e0::/96"])))
    refused(client, grpc.StatusCode.INVALID_ARGUMENT, "invalid address bits, expected 128, got 96")


def test_a_client_of_an_agent_it_may_not_see_is_not_found(streams, provision, ws) -> None:
    stranger = provision.user()
    main = ws.agent("main")
    for agent_id in (main.id, str(uuid.uuid4())):
        stream = streams.open(md(stranger.api_key, agent_id=agent_id))
        refused(stream, grpc.StatusCode.NOT_FOUND, RESOURCE_NOT_FOUND)
    stream = streams.open(md(stranger.api_key, agent_id="nope"))
    refused(stream, grpc.StatusCode.INVALID_ARGUMENT, 'Invalid UUID "nope".')
    # A deployment owner may reach anyone's agent.
    admin = provision.user(role="owner")
    connected_agent(streams, main)
    stream = streams.open(md(admin.api_key, agent_id=main.id))
    stream.send(add_tunnel(main.id))
    assert stream.next_update().reason == "add tunnel"


# -- user-scoped clients -------------------------------------------------------------


def test_a_user_scoped_client_tunnels_to_its_own_agents_only(streams, provision, ws) -> None:
    main = ws.agent("main")
    connected_agent(streams, main)
    stranger = provision.user()
    theirs = streams.open(md(stranger.api_key))
    theirs.send(add_tunnel(main.id))
    refused(
        theirs, grpc.StatusCode.NOT_FOUND, "workspace agent not found or you do not have permission"
    )
    missing = streams.open(md(ws.api_key))
    missing.send(add_tunnel(uuid.uuid4()))
    refused(
        missing,
        grpc.StatusCode.NOT_FOUND,
        "workspace agent not found or you do not have permission",
    )
    own = streams.open(md(ws.api_key))
    own.send(add_tunnel(main.id))
    assert own.next_update().reason == "add tunnel"
    admin = streams.open(md(provision.user(role="owner").api_key))
    admin.send(add_tunnel(main.id))
    assert admin.next_update().reason == "add tunnel"


def test_a_deleted_workspaces_agent_is_not_reachable(streams, provision, ws) -> None:
    main = ws.agent("main")
    provision.rebuild(ws, transition="delete")
    stream = streams.open(md(ws.api_key))
    stream.send(add_tunnel(main.id))
    refused(
        stream, grpc.StatusCode.NOT_FOUND, "workspace agent not found or you do not have permission"
    )


# -- credentials and peer ids ------------------------------------------------------------


def test_a_stream_needs_credentials(streams, ws) -> None:
    for metadata in ((), md("nope-nope"), md(str(uuid.uuid4()))):
        err = streams.open(metadata).end()
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_resume_token_keeps_the_peer_id(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    first = streams.resume_token(ws.api_key)
    again = streams.resume_token(ws.api_key, first)
    assert token_subject(again) == token_subject(first)
    fresh = streams.resume_token(ws.api_key)
    assert token_subject(fresh) != token_subject(first)
    client = streams.open(md(ws.api_key, agent_id=main.id, resume_token=again))
    client.send(update_self(client_node()), add_tunnel(main.id))
    assert agent.wait_update(token_subject(first), NODE).node == client_node()


def test_a_token_without_a_key_id_means_a_new_peer(streams, ws) -> None:
    main = ws.agent("main")
    agent = connected_agent(streams, main)
    old = jwt.encode({"sub": str(uuid.uuid4()), "exp": 2**40}, "k" * 64, algorithm="HS256")
    client = streams.open(md(ws.api_key, agent_id=main.id, resume_token=old))
    client.send(update_self(client_node()), add_tunnel(main.id))
    got = agent.next_update()
    assert got.kind == NODE and got.id != token_subject(old).bytes


def _invalid_token(err: grpc.RpcError) -> None:
    assert (err.code(), err.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Invalid resume token",
    )
    status = rpc_status.from_call(err)
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("resume_token", "Invalid resume token")
    ]


def test_invalid_resume_tokens_are_refused(streams, provision, ws, clock) -> None:
    main = ws.agent("main")
    good = streams.resume_token(ws.api_key)
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    someone_elses = streams.resume_token(provision.user().api_key)
    for token in ("garbage", forged, someone_elses, "x" * 5000):
        stream = streams.open(md(ws.api_key, agent_id=main.id, resume_token=token))
        _invalid_token(stream.end())
        with pytest.raises(grpc.RpcError) as refresh:
            streams.resume_token(ws.api_key, token)
        _invalid_token(refresh.value)
    clock.advance(hours=24, seconds=1)
    stream = streams.open(md(ws.api_key, agent_id=main.id, resume_token=good))
    _invalid_token(stream.end())


def test_refresh_resume_token_lifetime(streams, ws, clock) -> None:
    response = streams.stub.RefreshResumeToken(
        tpb.RefreshResumeTokenRequest(), metadata=md(ws.api_key), timeout=10
    )
    assert response.refresh_in.ToTimedelta() == dt.timedelta(hours=12)
    assert response.expires_at.ToDatetime(tzinfo=dt.UTC) == clock.now() + dt.timedelta(hours=24)
    header = jwt.get_unverified_header(response.token)
    assert header["alg"] == "HS256"
    # An agent's token is for the agent itself.
    main = ws.agent("main")
    agent_token = streams.stub.RefreshResumeToken(
        tpb.RefreshResumeTokenRequest(), metadata=md(main.auth_token), timeout=10
    ).token
    assert token_subject(agent_token) == uuid.UUID(main.id)


def test_rotating_the_key_keeps_issued_tokens_valid(streams, ws, channel) -> None:
    from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc

    before = streams.resume_token(ws.api_key)
    rotated = admin_pb2_grpc.AdminServiceStub(channel).RotateResumeTokenKey(
        admin_pb2.RotateResumeTokenKeyRequest(), metadata=ADMIN_METADATA
    )
    after = streams.resume_token(ws.api_key)
    assert jwt.get_unverified_header(after)["kid"] == str(rotated.sequence)
    assert jwt.get_unverified_header(before)["kid"] != str(rotated.sequence)
    # The old key still verifies what it signed.
    assert token_subject(streams.resume_token(ws.api_key, before)) == token_subject(before)


def test_an_accepted_stream_names_its_peer_id_first(streams, ws) -> None:
    """Initial metadata ``tailnet-peer-id`` before any response; a refused
    caller gets the status instead (what a REST door waits on before it
    upgrades)."""
    main = ws.agent("main")
    agent = streams.agent(main)
    assert dict(agent.call.initial_metadata())["tailnet-peer-id"] == main.id
    token = streams.resume_token(ws.api_key)
    client = streams.open(md(ws.api_key, agent_id=main.id, resume_token=token))
    assert dict(client.call.initial_metadata())["tailnet-peer-id"] == str(token_subject(token))
    fresh = streams.open(md(ws.api_key))
    uuid.UUID(dict(fresh.call.initial_metadata())["tailnet-peer-id"])
    refused = streams.open(md(ws.api_key, agent_id=main.id, resume_token="garbage"))
    assert "tailnet-peer-id" not in dict(refused.call.initial_metadata())
    _invalid_token(refused.end())
