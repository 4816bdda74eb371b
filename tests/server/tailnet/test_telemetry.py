"""PostTelemetry keeps each peer's newest event and newest netcheck, and an
agent's diagnosis (gRPC and REST) shows its last netcheck: the preferred
DERP region (by name) and whether UDP works."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wgrpc
from coder.tailnet.v2 import tailnet_pb2 as tpb
from google.protobuf import timestamp_pb2

from server.storage import tailnettelemetry
from tests.conftest import token_md
from tests.server.tailnet._coordinate import md
from tests.server.tailnet.conftest import token_subject


def _event(when: dt.datetime, netcheck: tpb.Netcheck | None = None, **fields) -> tpb.TelemetryEvent:
    event = tpb.TelemetryEvent(
        time=timestamp_pb2.Timestamp(seconds=int(when.timestamp())), **fields
    )
    if netcheck is not None:
        event.latest_netcheck.CopyFrom(netcheck)
    return event


def _diagnosis(channel, ws) -> wpb.Diagnosis:
    return (
        wgrpc.WorkspaceAgentsServiceStub(channel)
        .GetWorkspaceAgentDiagnosis(
            wpb.GetWorkspaceAgentDiagnosisRequest(id=ws.agent("main").id),
            metadata=token_md(ws.api_key),
        )
        .diagnosis
    )


def test_an_agents_last_netcheck_shows_in_its_diagnosis(streams, ws, channel, clock, rest) -> None:
    main = ws.agent("main")
    assert not _diagnosis(channel, ws).HasField("netcheck")
    now = clock.now()
    post = streams.stub.PostTelemetry
    check = tpb.Netcheck(UDP=True, IPv4=True, PreferredDERP=999)
    post(
        tpb.TelemetryRequest(
            events=[
                _event(now - dt.timedelta(minutes=2), check, application="agent"),
                # A newer event without a netcheck does not hide it.
                _event(now - dt.timedelta(minutes=1), application="later"),
            ]
        ),
        metadata=md(main.auth_token),
    )
    # An older report arriving late changes nothing.
    post(
        tpb.TelemetryRequest(
            events=[_event(now - dt.timedelta(hours=1), tpb.Netcheck(UDP=False, PreferredDERP=1))]
        ),
        metadata=md(main.auth_token),
    )
    got = _diagnosis(channel, ws).netcheck
    assert (got.preferred_derp, got.preferred_derp_name, got.udp, got.ipv4, got.ipv6) == (
        999,
        "Coder Embedded Relay",
        True,
        True,
        False,
    )
    assert got.reported_at.ToDatetime(tzinfo=dt.UTC) == (now - dt.timedelta(minutes=2)).replace(
        microsecond=0
    )
    body = rest.get(
        f"/api/v2/workspaceagents/{main.id}/diagnosis",
        headers={"Coder-Session-Token": ws.api_key},
    ).get_json()
    assert body["netcheck"] == {
        "ipv4": True,
        "ipv6": False,
        "preferred_derp": 999,
        "preferred_derp_name": "Coder Embedded Relay",
        "reported_at": got.reported_at.ToDatetime().isoformat() + "Z",
        "udp": True,
    }
    # A new netcheck replaces it; a region the map lacks is "Unnamed <id>".
    post(
        tpb.TelemetryRequest(events=[_event(now, tpb.Netcheck(UDP=False, PreferredDERP=42))]),
        metadata=md(main.auth_token),
    )
    got = _diagnosis(channel, ws).netcheck
    assert (got.preferred_derp_name, got.udp) == ("Unnamed 42", False)


def test_events_are_kept_per_peer_without_their_derp_map(streams, ws, db, clock) -> None:
    token = streams.resume_token(ws.api_key)
    peer = token_subject(token)
    event = _event(clock.now(), application="cli", client_type=tpb.TelemetryEvent.CLI)
    event.derp_map.regions[1].region_name = "big"
    streams.stub.PostTelemetry(
        tpb.TelemetryRequest(events=[event]), metadata=md(ws.api_key, resume_token=token)
    )
    with db.read() as conn:
        row = tailnettelemetry.get_telemetry(conn, peer_id=peer)
    stored = tpb.TelemetryEvent.FromString(row.event)
    assert stored.application == "cli" and not stored.HasField("derp_map")
    # A client without a peer id is accepted, and nothing is kept.
    streams.stub.PostTelemetry(tpb.TelemetryRequest(events=[event]), metadata=md(ws.api_key))


def test_telemetry_needs_credentials(streams) -> None:
    with pytest.raises(grpc.RpcError) as err:
        streams.stub.PostTelemetry(tpb.TelemetryRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
