"""Containers and devcontainers seen by the agent (Docker and devcontainer
CLIs): ListContainers, WatchContainers, DeleteDevcontainer,
RecreateDevcontainer (REST ``GET /workspaceagents/{id}/containers``,
``…/containers/watch``, ``DELETE …/containers/devcontainers/{dc}``,
``POST …/recreate``).

Label filtering is the core's, as in Coder: a container is kept when it
carries every requested ``key=value``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb

from server.tunnel.dialer import AgentDialer, Operation, What, check_frame, failure
from server.tunnel.tunnel import TunnelClosed

# Coder's 202 answer to a recreate (codersdk.Response).
RECREATE_MESSAGE = "Devcontainer recreation initiated"


def filter_by_labels(listing: tpb.ContainerList, labels: Mapping[str, str]) -> tpb.ContainerList:
    if not labels:
        return listing
    kept = tpb.ContainerList()
    kept.CopyFrom(listing)
    del kept.containers[:]
    kept.containers.extend(
        c for c in listing.containers if all(c.labels.get(k) == v for k, v in labels.items())
    )
    return kept


async def list_containers(
    dialer: AgentDialer, *, user: Any, request: cpb.ListContainersRequest
) -> cpb.ListContainersResponse:
    conn = dialer.dial(user=user, agent_id_text=request.agent_id)
    answer = await conn.call(Operation.CONTAINERS, list_containers=tpb.ListContainersCall())
    return cpb.ListContainersResponse(list=filter_by_labels(answer.containers, request.labels))


async def watch_containers(
    dialer: AgentDialer, *, user: Any, request: cpb.WatchContainersRequest
) -> AsyncIterator[cpb.WatchContainersResponse]:
    conn = dialer.dial(user=user, agent_id_text=request.agent_id)
    handle = conn.start(Operation.WATCH_CONTAINERS, watch_containers=tpb.WatchContainersCall())
    try:
        frame = await conn.first_answer(Operation.WATCH_CONTAINERS, handle)
        while True:
            if frame.WhichOneof("frame") == "done":
                return
            yield cpb.WatchContainersResponse(list=frame.containers)
            try:
                frame = check_frame(Operation.WATCH_CONTAINERS, await handle.next())
            except TunnelClosed as err:
                raise failure(Operation.WATCH_CONTAINERS, What.FAILED, str(err)) from None
    finally:
        handle.close()


async def delete_devcontainer(
    dialer: AgentDialer, *, user: Any, request: cpb.DeleteDevcontainerRequest
) -> cpb.DeleteDevcontainerResponse:
    conn = dialer.dial(user=user, agent_id_text=request.agent_id)
    await conn.call(
        Operation.DELETE_DEVCONTAINER,
        delete_devcontainer=tpb.DeleteDevcontainerCall(devcontainer_id=request.devcontainer_id),
    )
    return cpb.DeleteDevcontainerResponse()


async def recreate_devcontainer(
    dialer: AgentDialer, *, user: Any, request: cpb.RecreateDevcontainerRequest
) -> cpb.RecreateDevcontainerResponse:
    conn = dialer.dial(user=user, agent_id_text=request.agent_id)
    await conn.call(
        Operation.RECREATE_DEVCONTAINER,
        recreate_devcontainer=tpb.RecreateDevcontainerCall(devcontainer_id=request.devcontainer_id),
    )
    return cpb.RecreateDevcontainerResponse(
        message=RECREATE_MESSAGE,
        detail=f"Recreation of devcontainer {request.devcontainer_id!r} has started; "
        "watch the containers for its status.",
    )
