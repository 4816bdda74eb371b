"""Tailnet coordination's doors on the facade's front: ``/derp-map`` (the map,
then changes), the v1 JSON protocol on ``me/coordinate`` and
``{id}/coordinate`` (nodes both ways, bridged to the core's coordinator),
and Coder's dRPC on ``{id}/coordinate?version=2.x`` and ``/tailnet`` (with
resume tokens), each exchanging nodes with peers on the other wires."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from agentplane.admin.v1 import admin_pb2
from coder.tailnet.v2 import tailnet_pb2 as tpb

from tests.conftest import ADMIN_METADATA
from tests.rest_facade import wsclient
from tests.rest_facade.wire.specclient import (
    CLOSE_SEND,
    MESSAGE,
    SpecDRPCClient,
    SpecYamuxClient,
)
from tests.server.tailnet._coordinate import (
    Coordination,
    add_tunnel,
    agent_address,
    agent_node,
    client_node,
    md,
    update_self,
)

API = "/api/v2"
NODE_KEY = "nodekey:" + "ab" * 32


def _node_json(node_id: int, address: str) -> dict:
    return {
        "id": node_id,
        "as_of": "2026-12-04T12:00:00Z",
        "key": NODE_KEY,
        "disco": "discokey:" + "cd" * 32,
        "preferred_derp": 999,
        "derp_latency": {"999-v4": 0.012},
        "derp_forced_websockets": {},
        "addresses": [address],
        "allowed_ips": [address],
        "endpoints": ["10.1.2.3:41641"],
    }


async def _json_arrays(ws: wsclient.WSClient, want: int) -> list:
    """Node arrays from the socket until one holds a node with id ``want``."""
    decoder = json.JSONDecoder()
    text = ""
    while True:
        chunk = await asyncio.wait_for(ws.texts.get(), 15)
        text += chunk
        while text.strip():
            value, end = decoder.raw_decode(text.lstrip())
            text = text.lstrip()[end:]
            if any(n.get("id") == want for n in value):
                return value


def test_derp_map_stream_sends_the_map_then_changes(facade_url, provision) -> None:
    async def main() -> tuple[dict, dict]:
        ws = await wsclient.connect(facade_url, f"{API}/derp-map")
        try:
            first = json.loads(await asyncio.wait_for(ws.stream.read(65536), 15))
            new_map = {
                "regions": {
                    "7": {
                        "regionID": 7,
                        "regionCode": "seven",
                        "regionName": "Seven",
                        "nodes": [{"name": "7a", "regionID": 7, "hostName": "relay.example"}],
                    }
                }
            }
            await asyncio.to_thread(
                provision.stub.SetDERPMap,
                admin_pb2.SetDERPMapRequest(derp_map_json=json.dumps(new_map)),
                metadata=ADMIN_METADATA,
            )
            second = json.loads(await asyncio.wait_for(ws.stream.read(65536), 15))
            return first, second
        finally:
            await ws.aclose()

    first, second = asyncio.run(main())
    assert "999" in first["regions"]
    assert list(second["regions"]) == ["7"]
    assert second["regions"]["7"]["nodes"][0]["hostName"] == "relay.example"


def test_v1_json_nodes_flow_between_agent_and_client(facade_url, provision) -> None:
    ws = provision.workspace()
    agent = ws.agent("main")

    async def main() -> tuple[list, list]:
        agent_ws = await wsclient.connect(
            facade_url, f"{API}/workspaceagents/me/coordinate", token=agent.auth_token
        )
        client_ws = await wsclient.connect(
            facade_url, f"{API}/workspaceagents/{agent.id}/coordinate", token=ws.api_key
        )
        try:
            agent_ws.send_text(json.dumps(_node_json(1, agent_address(agent.id))))
            client_ws.send_text(json.dumps(_node_json(77, "fd7a:115c:a1e0::77/128")))
            at_client = await _json_arrays(client_ws, 1)
            at_agent = await _json_arrays(agent_ws, 77)
            return at_client, at_agent
        finally:
            await agent_ws.aclose()
            await client_ws.aclose()

    at_client, at_agent = asyncio.run(main())
    node = next(n for n in at_client if n["id"] == 1)
    assert node["key"] == NODE_KEY and node["addresses"] == [agent_address(agent.id)]
    assert node["derp_latency"] == {"999-v4": 0.012}
    assert next(n for n in at_agent if n["id"] == 77)["endpoints"] == ["10.1.2.3:41641"]


def test_v1_bad_node_closes_only_that_socket(facade_url, provision) -> None:
    ws = provision.workspace()
    agent = ws.agent("main")

    async def main() -> int | None:
        sock = await wsclient.connect(
            facade_url, f"{API}/workspaceagents/me/coordinate", token=agent.auth_token
        )
        try:
            sock.send_text(json.dumps({"id": 1, "key": "not a key"}))
            await asyncio.wait_for(sock.closed.wait(), 15)
            return sock.close_code
        finally:
            await sock.aclose()

    assert asyncio.run(main()) == 1008


def test_coordinate_refusals_before_the_upgrade(facade_url, provision) -> None:
    ws = provision.workspace()
    stranger = provision.user()
    agent_id = ws.agent("main").id

    async def refused(path: str, token: str) -> wsclient.Refused:
        with pytest.raises(wsclient.Refused) as info:
            await wsclient.connect(facade_url, path, token=token)
        return info.value

    async def main() -> list[wsclient.Refused]:
        return [
            await refused(f"{API}/workspaceagents/{agent_id}/coordinate", stranger.api_key),
            await refused(f"{API}/workspaceagents/{uuid.uuid4()}/coordinate", stranger.api_key),
            await refused(f"{API}/workspaceagents/{agent_id}/coordinate?version=3.0", ws.api_key),
            await refused(f"{API}/tailnet?resume_token=forged.token.here", ws.api_key),
            await refused(f"{API}/tailnet", ws.agent("main").auth_token),
        ]

    theirs, missing, version, resume, agent_token = asyncio.run(main())
    assert theirs.status == missing.status == 404 and theirs.body == missing.body
    assert version.status == 400 and version.body["message"] == "Unknown or unsupported API version"
    assert resume.status == 401 and resume.body["message"] == "Invalid resume token"
    assert resume.body["validations"][0]["field"] == "resume_token"
    assert agent_token.status == 401


async def _drpc(base: str, path: str, token: str):  # type: ignore[no-untyped-def]
    ws = await wsclient.connect(base, path, token=token)
    yamux = SpecYamuxClient(ws.stream, wsclient.MessageWriter(ws))
    return ws, yamux, SpecDRPCClient(yamux)


def test_drpc_coordinate_exchanges_nodes_with_a_grpc_agent(facade_url, provision, channel) -> None:
    ws = provision.workspace()
    agent = ws.agent("main")
    agent_stream = Coordination(channel, md(agent.auth_token))
    agent_stream.send(update_self(agent_node(agent.id)))

    async def main() -> tpb.CoordinateResponse:
        sock, yamux, drpc = await _drpc(
            facade_url, f"{API}/workspaceagents/{agent.id}/coordinate?version=2.0", ws.api_key
        )
        try:
            call = await drpc.start("/coder.tailnet.v2.Tailnet/Coordinate")
            await call.packet(MESSAGE, update_self(client_node(5)).SerializeToString())
            await call.packet(MESSAGE, add_tunnel(agent.id).SerializeToString())
            while True:
                response = tpb.CoordinateResponse.FromString(await call.recv())
                if any(u.node.id == 1 for u in response.peer_updates):
                    await call.packet(CLOSE_SEND)
                    return response
        finally:
            await yamux.close()
            await sock.aclose()

    response = asyncio.run(main())
    assert uuid.UUID(bytes=response.peer_updates[0].id) == uuid.UUID(agent.id)
    # The gRPC agent hears of the dRPC client too.
    assert agent_stream.wait_for(lambda r: any(u.node.id == 1005 for u in r.peer_updates))
    agent_stream.close()


def test_tailnet_drpc_resume_token_keeps_the_peer_id(facade_url, provision) -> None:
    ws = provision.workspace()

    async def token_from(path: str) -> tpb.RefreshResumeTokenResponse:
        sock, yamux, drpc = await _drpc(facade_url, path, ws.api_key)
        try:
            raw = await drpc.unary("/coder.tailnet.v2.Tailnet/RefreshResumeToken", b"")
            return tpb.RefreshResumeTokenResponse.FromString(raw)
        finally:
            await yamux.close()
            await sock.aclose()

    async def main() -> tuple[tpb.RefreshResumeTokenResponse, tpb.RefreshResumeTokenResponse]:
        first = await token_from(f"{API}/tailnet")
        again = await token_from(f"{API}/tailnet?resume_token={first.token}")
        return first, again

    first, again = asyncio.run(main())
    import jwt  # the claims only: the signature is the core's to check

    def subject(token: str) -> str:
        return jwt.decode(token, options={"verify_signature": False})["sub"]

    assert first.token and again.token and first.refresh_in.seconds == 12 * 3600
    assert subject(first.token) == subject(again.token)


def test_drpc_agent_on_me_rpc_meets_a_grpc_client(facade_url, provision, channel) -> None:
    """The other way round: the agent coordinates over Coder's own wire
    (``me/rpc``), a client over gRPC."""
    ws = provision.workspace()
    agent = ws.agent("main")

    async def main() -> tpb.CoordinateResponse:
        sock, yamux, drpc = await _drpc(
            facade_url, f"{API}/workspaceagents/me/rpc?version=2.13", agent.auth_token
        )
        try:
            call = await drpc.start("/coder.tailnet.v2.Tailnet/Coordinate")
            await call.packet(MESSAGE, update_self(agent_node(agent.id)).SerializeToString())
            client = await asyncio.to_thread(
                Coordination, channel, md(ws.api_key, agent_id=agent.id)
            )
            client.send(update_self(client_node(9)), add_tunnel(agent.id))
            seen = await asyncio.to_thread(
                client.wait_for, lambda r: any(u.node.id == 1 for u in r.peer_updates)
            )
            # And the agent, on dRPC, hears of the client.
            while True:
                response = tpb.CoordinateResponse.FromString(await call.recv())
                if any(u.node.id == 1009 for u in response.peer_updates):
                    break
            client.close()
            return seen
        finally:
            await yamux.close()
            await sock.aclose()

    seen = asyncio.run(main())
    assert seen.peer_updates[0].node.addresses == [agent_address(agent.id)]
