"""coder.agent.v2.Agent/GetManifest through the live core, and the
not-yet-implemented RPCs answering UNIMPLEMENTED."""

from __future__ import annotations

import uuid

import grpc
import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from tests.conftest import token_md


def test_manifest(channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    m = agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(main.auth_token)
    )
    assert uuid.UUID(bytes=m.agent_id) == uuid.UUID(main.id)
    assert m.agent_name == "main" and m.owner_username == ws.username
    assert uuid.UUID(bytes=m.workspace_id) == uuid.UUID(ws.workspace_id)
    assert m.workspace_name == "ws"
    assert m.directory == "/home/coder" and dict(m.environment_variables) == {"EDITOR": "vim"}
    assert [a.slug for a in m.apps] == ["code-server", "docs"]
    app = m.apps[0]
    assert app.health == agent_pb2.WorkspaceApp.Health.INITIALIZING
    assert app.sharing_level == agent_pb2.WorkspaceApp.SharingLevel.OWNER
    assert app.healthcheck.interval.seconds == 5 and app.healthcheck.threshold == 6
    assert m.scripts[0].timeout.seconds == 300 and m.scripts[0].start_blocks_login
    assert m.metadata[0].key == "load" and m.metadata[0].interval.seconds == 10
    assert 999 in m.derp_map.regions
    assert not m.HasField("parent_id")
    child = agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(ws.agent("child").auth_token)
    )
    assert uuid.UUID(bytes=child.parent_id) == uuid.UUID(main.id)


def test_manifest_needs_agent_token(channel, provision) -> None:
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError) as info:
        agent_pb2_grpc.AgentStub(channel).GetManifest(
            agent_pb2.GetManifestRequest(), metadata=token_md(ws.api_key)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_later_rpcs_answer_unimplemented(channel, provision) -> None:
    ws = provision.workspace()
    md = token_md(ws.agent("main").auth_token)
    with pytest.raises(grpc.RpcError) as info:
        agent_pb2_grpc.AgentStub(channel).ListSubAgents(
            agent_pb2.ListSubAgentsRequest(), metadata=md
        )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
