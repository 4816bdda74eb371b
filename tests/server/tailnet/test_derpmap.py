"""DERP map: config loading, the no-direct rewrite, proto conversion, and the
--derp-config map reaching clients through the core."""

from __future__ import annotations

import json

import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc

from rest_facade.coderjson import derp_map as derp_json
from server.embedded import EmbeddedCore
from server.tailnet.derpmap import (
    DERPConfigError,
    DERPMapSource,
    default_derp_map,
    load_derp_config,
    to_proto,
    without_direct_connections,
)
from tests.conftest import ADMIN_TOKEN, token_md

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
