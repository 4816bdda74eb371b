"""Stored times as protobuf Timestamps: the arithmetic agrees with the
library's FromDatetime, naive values are UTC, before-epoch values keep
non-negative nanos."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import timestamp_pb2

from server.prototime import to_timestamp


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 25, 6, 7, 8, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 25, 6, 7, 8, 123456),  # naive, as SQLite returns it
        dt.datetime(2026, 1, 1, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1960, 1, 1, 0, 0, 0, 1),
    ],
)
def test_matches_from_datetime(value: dt.datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    expected.FromDatetime(aware.astimezone(dt.UTC))
    got = to_timestamp(value)
    assert got == expected
    assert got is not None and 0 <= got.nanos < 1_000_000_000


def test_none_stays_none() -> None:
    assert to_timestamp(None) is None


def test_times_nothing_can_hold_are_invalid_arguments(channel, provision) -> None:
    """A Timestamp outside years 1-9999 (or with nanos past a second) is
    not a time: each RPC taking one answers INVALID_ARGUMENT naming the
    field, not INTERNAL."""
    import uuid

    import grpc
    from agentplane.admin.v1 import admin_pb2
    from coder.agent.v2 import agent_pb2, agent_pb2_grpc

    from tests.conftest import ADMIN_METADATA, token_md

    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    md = token_md(ws.agent("main").auth_token)
    far = timestamp_pb2.Timestamp(seconds=2**62)
    bad_nanos = timestamp_pb2.Timestamp(seconds=1, nanos=2**31 - 1)
    connection = agent_pb2.Connection(
        id=uuid.uuid4().bytes,
        action=agent_pb2.Connection.Action.CONNECT,
        type=agent_pb2.Connection.Type.SSH,
        timestamp=far,
    )
    timing = agent_pb2.Timing(script_id=uuid.uuid4().bytes, start=bad_nanos, end=far)
    calls = [
        (
            stub.UpdateLifecycle,
            agent_pb2.UpdateLifecycleRequest(
                lifecycle=agent_pb2.Lifecycle(state=agent_pb2.Lifecycle.READY, changed_at=far)
            ),
            md,
            "lifecycle.changed_at",
        ),
        (
            stub.ReportConnection,
            agent_pb2.ReportConnectionRequest(connection=connection),
            md,
            "connection.timestamp",
        ),
        (
            stub.ScriptCompleted,
            agent_pb2.WorkspaceAgentScriptCompletedRequest(timing=timing),
            md,
            "timing.start",
        ),
        (
            stub.PushResourcesMonitoringUsage,
            agent_pb2.PushResourcesMonitoringUsageRequest(
                datapoints=[
                    agent_pb2.PushResourcesMonitoringUsageRequest.Datapoint(collected_at=far)
                ]
            ),
            md,
            "datapoints.collected_at",
        ),
        (
            provision.stub.LinkExternalAuth,
            admin_pb2.LinkExternalAuthRequest(
                user=ws.username, provider_id="gh", access_token="t", expires_at=far
            ),
            ADMIN_METADATA,
            "expires_at",
        ),
    ]
    for method, request, metadata, field in calls:
        with pytest.raises(grpc.RpcError) as err:
            method(request, metadata=metadata, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
        assert err.value.details() == f"Invalid {field}."
