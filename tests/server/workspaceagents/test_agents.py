"""GetWorkspaceAgent: at the concern function and through the live servicer."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc

from rest_facade.errors import from_rpc_error
from server.errors import RESOURCE_NOT_FOUND, InvalidArgument, NotFound
from server.storage import users as user_store
from server.storage.agents import WorkspaceAgent
from server.workspaceagents.agents import get_workspace_agent
from tests.conftest import token_md
from tests.server.tailnet._coordinate import Coordination, agent_node, md, update_self
from tests.server.tailnet.test_coordinator import agent_barrier

INACTIVE = dt.timedelta(seconds=30)


def _user(db, user_id: str) -> user_store.User:
    with db.session() as s:
        return s.get(user_store.User, uuid.UUID(user_id))


def test_concern_reads_everything(db, clock, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    agent = get_workspace_agent(
        db, clock, user=_user(db, ws.user_id), agent_id_text=main.id, inactive_timeout=INACTIVE
    )
    assert agent.name == "main" and agent.id == main.id
    assert agent.status == "connecting" and agent.lifecycle_state == "created"
    assert (agent.health.healthy, agent.health.reason) == (False, "agent has not yet connected")
    assert agent.startup_script_behavior == "blocking"
    assert [a.slug for a in agent.apps] == ["code-server", "docs"]
    assert [a.health for a in agent.apps] == ["initializing", "disabled"]
    assert agent.scripts[0].log_source_id == agent.log_sources[0].id
    assert agent.log_sources[0].display_name == "Startup"
    assert dict(agent.environment_variables) == {"EDITOR": "vim"}
    assert not agent.HasField("parent_id")
    child = get_workspace_agent(
        db,
        clock,
        user=_user(db, ws.user_id),
        agent_id_text=ws.agent("child").id,
        inactive_timeout=INACTIVE,
    )
    assert child.parent_id == main.id


def test_status_follows_the_clock(db, clock, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    user = _user(db, ws.user_id)
    before = get_workspace_agent(
        db, clock, user=user, agent_id_text=main.id, inactive_timeout=INACTIVE
    )
    assert before.status == "connecting"
    # Same stored row (its message is reused), later time: a new status.
    clock.advance(seconds=121)
    agent = get_workspace_agent(
        db, clock, user=user, agent_id_text=main.id, inactive_timeout=INACTIVE
    )
    assert agent.status == "timeout"
    assert before.status == "connecting"  # replies are copies, never shared
    with db.session() as s:
        row = s.get(WorkspaceAgent, uuid.UUID(main.id))
        row.first_connected_at = row.last_connected_at = clock.now()
        s.add(row)
    agent = get_workspace_agent(
        db, clock, user=user, agent_id_text=main.id, inactive_timeout=INACTIVE
    )
    assert agent.status == "connected" and agent.health.healthy
    assert not agent.HasField("disconnected_at")
    connected_at = agent.last_connected_at
    clock.advance(seconds=INACTIVE.total_seconds() + 1)
    agent = get_workspace_agent(
        db, clock, user=user, agent_id_text=main.id, inactive_timeout=INACTIVE
    )
    assert agent.status == "disconnected" and not agent.health.healthy
    assert agent.disconnected_at == connected_at


def test_other_users_get_the_same_404_as_missing(db, clock, provision) -> None:
    ws = provision.workspace()
    stranger = _user(db, provision.user().id)
    with pytest.raises(NotFound) as forbidden:
        get_workspace_agent(
            db, clock, user=stranger, agent_id_text=ws.agent("main").id, inactive_timeout=INACTIVE
        )
    with pytest.raises(NotFound) as missing:
        get_workspace_agent(
            db, clock, user=stranger, agent_id_text=str(uuid.uuid4()), inactive_timeout=INACTIVE
        )
    assert forbidden.value.message == missing.value.message == RESOURCE_NOT_FOUND


def test_owner_role_reads_all(db, clock, provision) -> None:
    ws = provision.workspace()
    admin = _user(db, provision.user(role="owner").id)
    agent = get_workspace_agent(
        db, clock, user=admin, agent_id_text=ws.agent("main").id, inactive_timeout=INACTIVE
    )
    assert agent.name == "main"


def test_invalid_uuid(db, clock, provision) -> None:
    ws = provision.workspace()
    with pytest.raises(InvalidArgument) as info:
        get_workspace_agent(
            db, clock, user=_user(db, ws.user_id), agent_id_text="abc", inactive_timeout=INACTIVE
        )
    assert info.value.message == 'Invalid UUID "abc".'


def test_servicer(channel, provision) -> None:
    ws = provision.workspace()
    stub = pb_grpc.WorkspaceAgentsServiceStub(channel)
    resp = stub.GetWorkspaceAgent(
        pb.GetWorkspaceAgentRequest(id=ws.agent("main").id), metadata=token_md(ws.api_key)
    )
    assert resp.agent.name == "main"
    stranger = provision.user()
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkspaceAgent(
            pb.GetWorkspaceAgentRequest(id=ws.agent("main").id), metadata=token_md(stranger.api_key)
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert from_rpc_error(info.value) == (404, {"message": RESOURCE_NOT_FOUND})
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkspaceAgent(pb.GetWorkspaceAgentRequest(id="x"), metadata=token_md(ws.api_key))
    assert from_rpc_error(info.value) == (
        400,
        {"message": 'Invalid UUID "x".', "detail": "invalid UUID length: 1"},
    )


def test_connection_info_servicer(channel, provision, settings) -> None:
    ws = provision.workspace()
    stub = pb_grpc.WorkspaceAgentsServiceStub(channel)
    resp = stub.GetConnectionInfo(
        pb.GetConnectionInfoRequest(agent_id=ws.agent("main").id), metadata=token_md(ws.api_key)
    )
    assert resp.hostname_suffix == "coder"
    assert 999 in resp.derp_map.regions
    deployment = stub.GetConnectionInfo(
        pb.GetConnectionInfoRequest(), metadata=token_md(ws.api_key)
    )
    assert deployment == resp
    with pytest.raises(grpc.RpcError) as info:
        stub.GetConnectionInfo(
            pb.GetConnectionInfoRequest(agent_id=ws.agent("main").id),
            metadata=token_md(provision.user().api_key),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_latency_comes_from_the_agents_tailnet_node(channel, provision, rest) -> None:
    """coderd's ``latency``: the agent's latest node's DERP latencies keyed
    by region name (``Unnamed <id>`` outside the map), in ms, with the
    preferred region marked; none before the agent posts a node."""
    ws = provision.workspace()
    main = ws.agent("main")
    stub = pb_grpc.WorkspaceAgentsServiceStub(channel)

    def latency() -> dict:
        return rest.get(
            f"/api/v2/workspaceagents/{main.id}", headers={"Coder-Session-Token": ws.api_key}
        ).get_json()["latency"]

    assert latency() == {}
    agent = Coordination(channel, md(main.auth_token))
    node = agent_node(
        main.id,
        preferred_derp=999,
        derp_latency={"999-v4": 0.0125, "999-v6": 0.02, "3-v4": 0.1, "bogus": 1.0},
    )
    agent.send(update_self(node))
    agent_barrier(agent)
    assert latency() == {
        "Coder Embedded Relay": {"latency_ms": 12.5, "preferred": True},
        "Unnamed 3": {"latency_ms": 100, "preferred": False},
    }
    got = stub.GetWorkspaceAgent(
        pb.GetWorkspaceAgentRequest(id=main.id), metadata=token_md(ws.api_key)
    )
    assert got.agent.latency["Unnamed 3"].latency_ms == 100
    # A lost agent has no node to show.
    agent.cancel()
    assert agent.end() is not None
    deadline = time.monotonic() + 10
    while latency() and time.monotonic() < deadline:
        time.sleep(0.02)  # the server notices the cancelled stream
    assert latency() == {}
