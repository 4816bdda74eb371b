"""Resources monitoring: the configuration from the spec (none by default)
and stored usage datapoints."""

from __future__ import annotations

import copy
import datetime as dt
import uuid

from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.clock import as_utc
from server.storage import resourcemonitors
from tests.conftest import DEFAULT_SPEC, token_md

Push = agent_pb2.PushResourcesMonitoringUsageRequest


def _config(channel, token: str):
    return agent_pb2_grpc.AgentStub(channel).GetResourcesMonitoringConfiguration(
        agent_pb2.GetResourcesMonitoringConfigurationRequest(), metadata=token_md(token)
    )


def test_default_monitors_nothing(channel, provision) -> None:
    config = _config(channel, provision.workspace().agent("main").auth_token)
    assert (config.config.num_datapoints, config.config.collection_interval_seconds) == (20, 10)
    assert not config.HasField("memory") and list(config.volumes) == []


def test_monitors_from_the_spec(channel, provision) -> None:
    spec = copy.deepcopy(DEFAULT_SPEC)
    spec["resources"][0]["agents"][0]["resources_monitoring"] = {
        "memory": {"enabled": True, "threshold": 80},
        "volumes": [{"path": "/home", "threshold": 90}, {"path": "/", "enabled": False}],
    }
    config = _config(channel, provision.workspace(spec).agent("main").auth_token)
    assert config.HasField("memory") and config.memory.enabled
    assert [(v.path, v.enabled) for v in config.volumes] == [("/", False), ("/home", True)]


def test_usage_is_stored_once_per_datapoint(db, clock, channel, provision) -> None:
    main = provision.workspace().agent("main")
    stub = agent_pb2_grpc.AgentStub(channel)
    t0 = clock.now()

    def point(seconds: int) -> Push.Datapoint:
        d = Push.Datapoint(
            memory=Push.Datapoint.MemoryUsage(used=100 + seconds, total=1000),
            volumes=[Push.Datapoint.VolumeUsage(volume="/home", used=5, total=10)],
        )
        d.collected_at.FromDatetime(t0 - dt.timedelta(seconds=seconds))
        return d

    stub.PushResourcesMonitoringUsage(
        Push(datapoints=[point(20), point(10)]), metadata=token_md(main.auth_token)
    )
    # The agent re-sends its window; repeats are stored once.
    stub.PushResourcesMonitoringUsage(
        Push(datapoints=[point(10), point(0)]), metadata=token_md(main.auth_token)
    )
    with db.read() as conn:
        rows = resourcemonitors.list_usage(conn, agent_id=uuid.UUID(main.id))
    assert [as_utc(r.collected_at) for r in rows] == [
        t0 - dt.timedelta(seconds=20),
        t0 - dt.timedelta(seconds=10),
        t0,
    ]
    assert [r.memory_used for r in rows] == [120, 110, 100]
    assert rows[0].volumes == [{"volume": "/home", "used": 5, "total": 10}]
    # Datapoints past the retention window are dropped as new ones arrive.
    clock.advance(hours=25)
    stub.PushResourcesMonitoringUsage(
        Push(datapoints=[point(0)]), metadata=token_md(main.auth_token)
    )
    with db.read() as conn:
        assert resourcemonitors.list_usage(conn, agent_id=uuid.UUID(main.id)) == []
