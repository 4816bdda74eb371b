"""Resource monitoring: which resources the agent samples, and the samples.

Serves ``coder.agent.v2.Agent/GetResourcesMonitoringConfiguration`` and
``PushResourcesMonitoringUsage``. The monitors come from the workspace spec
(an agent's ``resources_monitoring: {memory: {enabled, threshold}, volumes:
[{path, enabled, threshold}]}``, like Terraform's
``coder_agent.resources_monitoring``); without one, memory is absent and the
volume list empty, so the agent samples nothing. Pushed datapoints are stored
(a recent window per agent). Coder's OK/NOK states and owner notifications
are not implemented.
"""

from __future__ import annotations

from typing import Any

from coder.agent.v2 import agent_pb2

from server.clock import Clock
from server.prototime import from_timestamp
from server.storage import resourcemonitors
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

# Coder's fixed sampling plan: a datapoint every 10 s, a window of 20.
COLLECTION_INTERVAL_SECONDS = 10
NUM_DATAPOINTS = 20

_Config = agent_pb2.GetResourcesMonitoringConfigurationResponse


def get_configuration(db: Database, *, caller: AgentInWorkspace) -> _Config:
    agent_id = caller.agent.id
    with db.read() as conn:
        memory = resourcemonitors.get_memory_monitor(conn, agent_id=agent_id)
        volumes = resourcemonitors.list_volume_monitors(conn, agent_id=agent_id)
    reply = _Config(
        config=_Config.Config(
            num_datapoints=NUM_DATAPOINTS, collection_interval_seconds=COLLECTION_INTERVAL_SECONDS
        ),
        volumes=[_Config.Volume(enabled=v.enabled, path=v.path) for v in volumes],
    )
    if memory is not None:
        reply.memory.enabled = memory.enabled
    return reply


def push_usage(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.PushResourcesMonitoringUsageRequest,
) -> agent_pb2.PushResourcesMonitoringUsageResponse:
    points: list[dict[str, Any]] = []
    for d in request.datapoints:
        point: dict[str, Any] = {
            "collected_at": from_timestamp(d.collected_at, "datapoints.collected_at"),
            "memory_used": d.memory.used if d.HasField("memory") else None,
            "memory_total": d.memory.total if d.HasField("memory") else None,
            "volumes": [{"volume": v.volume, "used": v.used, "total": v.total} for v in d.volumes],
        }
        points.append(point)
    with db.engine.begin() as conn:
        resourcemonitors.insert_usage(
            conn, agent_id=caller.agent.id, datapoints=points, now=clock.now()
        )
    return agent_pb2.PushResourcesMonitoringUsageResponse()
