"""DERP map: config loading, the no-direct rewrite, proto conversion, the
--derp-config map reaching clients through the core, StreamDERPMaps
(the map, then each change, however it is made) and SetDERPMap."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rest_facade.coderjson import derp_map as derp_json
from server.embedded import EmbeddedCore
from server.storage import derp as derp_store
from server.tailnet.derpmap import (
    DERPConfigError,
    DERPMapSource,
    default_derp_map,
    load_derp_config,
    to_proto,
    without_direct_connections,
)
from tests.conftest import ADMIN_METADATA, ADMIN_TOKEN, token_md

CUSTOM = {
    "regions": {
        "1": {
            "regionID": 1,
            "regionCode": "eu",
            "regionName": "Europe",
            "nodes": [
                {
                    "name": "1a",
                    "regionID": 1,
                    "hostName": "derp.example.com",
                    "derpport": 443,
                    "stunport": 3478,
                },
                {
                    "name": "1s",
                    "regionID": 1,
                    "hostName": "stun.example.com",
                    "stunonly": True,
                    "stunport": 3478,
                },
            ],
        }
    }
}


def test_default_map_points_at_the_access_url() -> None:
    m = default_derp_map("https://coder.example.com")
    node = m["regions"]["999"]["nodes"][0]
    assert node["hostName"] == "coder.example.com" and node["derpport"] == 443
    assert node["forceHTTP"] is False


def test_without_direct_connections_drops_stun() -> None:
    rewritten = without_direct_connections(CUSTOM)
    nodes = rewritten["regions"]["1"]["nodes"]
    assert [n["name"] for n in nodes] == ["1a"] and nodes[0]["stunport"] == -1
    assert CUSTOM["regions"]["1"]["nodes"][0]["stunport"] == 3478  # input untouched


def test_proto_round_trip_through_rest_json() -> None:
    assert derp_json(to_proto(CUSTOM)) == CUSTOM


@pytest.mark.parametrize(
    "content", ["{", "[]", '{"regions": {"x": {"regionID": 1}}}', '{"regions": {"1": {}}}']
)
def test_bad_config_files(tmp_path, content: str) -> None:
    path = tmp_path / "derp.json"
    path.write_text(content)
    with pytest.raises(DERPConfigError):
        load_derp_config(path)
    with pytest.raises(DERPConfigError, match="cannot read"):
        load_derp_config(tmp_path / "missing.json")


def test_configured_map_reaches_clients(tmp_path, settings, db, clock) -> None:
    path = tmp_path / "derp.json"
    path.write_text(json.dumps(CUSTOM))
    DERPMapSource(db, clock, access_url="http://x", disable_direct=False).install(
        load_derp_config(path)
    )
    import dataclasses

    blocked = dataclasses.replace(settings, disable_direct_connections=True)
    with EmbeddedCore(blocked, db, clock, admin_token=ADMIN_TOKEN) as core:
        import grpc

        with grpc.insecure_channel(core.address) as ch:
            from tests.conftest import Provisioner

            ws = Provisioner(ch).workspace()
            resp = pb_grpc.WorkspaceAgentsServiceStub(ch).GetConnectionInfo(
                pb.GetConnectionInfoRequest(agent_id=ws.agent("main").id),
                metadata=token_md(ws.api_key),
            )
    assert resp.disable_direct_connections is True
    assert list(resp.derp_map.regions) == [1]
    assert [n.name for n in resp.derp_map.regions[1].nodes] == ["1a"]
    assert resp.derp_map.regions[1].nodes[0].stun_port == -1


# -- StreamDERPMaps and replacing the map -------------------------------------


def _set_map(channel, derp_map) -> Any:
    text = derp_map if isinstance(derp_map, str) else json.dumps(derp_map)
    return admin_pb2_grpc.AdminServiceStub(channel).SetDERPMap(
        admin_pb2.SetDERPMapRequest(derp_map_json=text), metadata=ADMIN_METADATA, timeout=10
    )


def _follow(channel) -> Any:
    return tgrpc.TailnetStub(channel).StreamDERPMaps(tpb.StreamDERPMapsRequest(), timeout=60)


def test_stream_derp_maps_sends_the_map_then_each_change(channel) -> None:
    follower = _follow(channel)
    assert list(next(follower).regions) == [999]
    assert list(_set_map(channel, CUSTOM).region_ids) == [1]
    started = time.monotonic()
    got = next(follower)
    assert derp_json(got) == CUSTOM and time.monotonic() - started < 5
    # The same map again sends nothing; the next change arrives next.
    _set_map(channel, CUSTOM)
    other = json.loads(json.dumps(CUSTOM))
    other["regions"]["1"]["regionName"] = "Elsewhere"
    _set_map(channel, other)
    assert next(follower).regions[1].region_name == "Elsewhere"
    follower.cancel()


def test_a_change_made_behind_the_servers_back_reaches_followers(channel, db, clock) -> None:

    follower = _follow(channel)
    next(follower)
    with db.session() as session:
        derp_store.upsert_derp_map(session, derp_map=CUSTOM, now=clock.now())
    started = time.monotonic()
    assert list(next(follower).regions) == [1]
    # Coder's 5 s re-read (plus a little for a busy machine).
    assert time.monotonic() - started < 7
    follower.cancel()


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{", "not valid JSON"),
        ('{"regions": []}', "a DERP map is an object with a 'regions' object"),
        ('{"regions": {"1": {"regionID": 1, "nodes": [{"derpport": "443"}]}}}', "derp_map:"),
        ('{"regions": {"99999999999999999999": {"regionID": 1}}}', "Value out of range"),
    ],
)
def test_set_derp_map_refuses_bad_maps(channel, text: str, detail: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _set_map(channel, text)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Validation failed."
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in rpc_status.from_call(err.value).details)
    assert bad.field_violations[0].field == "derp_map"
    assert detail in bad.field_violations[0].description


def test_set_derp_map_needs_the_admin_token(channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        admin_pb2_grpc.AdminServiceStub(channel).SetDERPMap(
            admin_pb2.SetDERPMapRequest(derp_map_json=json.dumps(CUSTOM)),
            metadata=(("authorization", "Bearer wrong"),),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
