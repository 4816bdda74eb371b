"""BatchUpdateAppHealths and UpdateAppStatus through the live core: Coder's
rules and texts, only this agent's apps, revision bumps, and what
GetWorkspaceAgent then shows."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wpb_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from sqlmodel import select

from server.agentapi.apps import ui_sanitize
from server.storage.agents import WorkspaceAgent
from server.storage.appstatus import WorkspaceAppStatus
from tests.conftest import token_md

H = agent_pb2.AppHealth
S = agent_pb2.UpdateAppStatusRequest.AppStatusState
Update = agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate


def _agent_json(channel, ws, name: str = "main") -> wpb.WorkspaceAgent:
    return (
        wpb_grpc.WorkspaceAgentsServiceStub(channel)
        .GetWorkspaceAgent(
            wpb.GetWorkspaceAgentRequest(id=ws.agent(name).id), metadata=token_md(ws.api_key)
        )
        .agent
    )


def _apps(channel, ws) -> dict[str, wpb.App]:
    return {a.slug: a for a in _agent_json(channel, ws).apps}


def _revision(db, agent_id: str) -> int:
    with db.session() as s:
        return s.get(WorkspaceAgent, uuid.UUID(agent_id)).revision


def _healths(channel, token: str, updates: list[Update]):
    return agent_pb2_grpc.AgentStub(channel).BatchUpdateAppHealths(
        agent_pb2.BatchUpdateAppHealthRequest(updates=updates), metadata=token_md(token)
    )


def test_health_change_is_written_and_shown(db, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    app = _apps(channel, ws)["code-server"]
    assert app.health == "initializing"
    before = _revision(db, main.id)
    _healths(channel, main.auth_token, [Update(id=uuid.UUID(app.id).bytes, health=H.HEALTHY)])
    assert _apps(channel, ws)["code-server"].health == "healthy"
    assert _revision(db, main.id) == before + 1
    # An unchanged value writes nothing (and so does not bump the revision).
    _healths(channel, main.auth_token, [Update(id=uuid.UUID(app.id).bytes, health=H.HEALTHY)])
    assert _revision(db, main.id) == before + 1
    # Empty batches are fine and change nothing.
    _healths(channel, main.auth_token, [])
    assert _revision(db, main.id) == before + 1


def _refused(channel, token: str, updates: list[Update]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _healths(channel, token, updates)
    return info.value


def test_health_refusals_use_coder_texts(db, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    apps = _apps(channel, ws)
    code, docs = uuid.UUID(apps["code-server"].id), uuid.UUID(apps["docs"].id)
    stranger = uuid.uuid4()
    err = _refused(channel, main.auth_token, [Update(id=stranger.bytes, health=H.HEALTHY)])
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == f'workspace app ID "{stranger}" not found'
    err = _refused(channel, main.auth_token, [Update(id=docs.bytes, health=H.HEALTHY)])
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == f'workspace app "{docs}" ("docs") does not have healthchecks enabled'
    err = _refused(
        channel, main.auth_token, [Update(id=code.bytes, health=H.APP_HEALTH_UNSPECIFIED)]
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        f'unknown health status "APP_HEALTH_UNSPECIFIED" for app "{code}" ("code-server")'
    )
    err = _refused(channel, main.auth_token, [Update(id=b"\x01\x02", health=H.HEALTHY)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == 'parse workspace app ID "\\x01\\x02": invalid UUID (got 2 bytes)'
    # One bad update in a batch writes nothing at all.
    _refused(
        channel,
        main.auth_token,
        [Update(id=code.bytes, health=H.UNHEALTHY), Update(id=stranger.bytes, health=H.HEALTHY)],
    )
    assert _apps(channel, ws)["code-server"].health == "initializing"


def test_health_only_for_this_agents_apps(db, channel, provision) -> None:
    ws = provision.workspace()
    other = provision.workspace()
    foreign = uuid.UUID(_apps(channel, other)["code-server"].id)
    err = _refused(
        channel, ws.agent("main").auth_token, [Update(id=foreign.bytes, health=H.UNHEALTHY)]
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert _apps(channel, other)["code-server"].health == "initializing"


def _status(channel, token: str, **kw):
    return agent_pb2_grpc.AgentStub(channel).UpdateAppStatus(
        agent_pb2.UpdateAppStatusRequest(**kw), metadata=token_md(token)
    )


def test_statuses_are_appended_and_shown_newest_first(db, clock, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    before = _revision(db, main.id)
    _status(channel, main.auth_token, slug="docs", state=S.WORKING, message="reading", uri="a")
    clock.advance(seconds=1)
    _status(channel, main.auth_token, slug="docs", state=S.COMPLETE, message="  done \n\t now ")
    assert _revision(db, main.id) == before + 2
    statuses = _apps(channel, ws)["docs"].statuses
    assert [s.state for s in statuses] == ["complete", "working"]
    assert statuses[0].message == "done now" and statuses[1].uri == "a"
    assert statuses[0].created_at.ToDatetime(tzinfo=dt.UTC) == clock.now()
    assert statuses[0].app_id == _apps(channel, ws)["docs"].id
    assert statuses[0].workspace_id == ws.workspace_id and statuses[0].agent_id == main.id
    assert _apps(channel, ws)["code-server"].statuses == []


def test_status_message_limit_is_160_bytes(db, channel, provision) -> None:
    main = provision.workspace().agent("main")
    _status(channel, main.auth_token, slug="docs", state=S.IDLE, message="x" * 160)
    with pytest.raises(grpc.RpcError) as info:
        # 80 two-byte characters: 160 characters would fit, 161 bytes do not.
        _status(channel, main.auth_token, slug="docs", state=S.IDLE, message="\u00e9" * 80 + "x")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Message is too long."


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"slug": "docs", "state": 7}, "Invalid state provided."),
        ({"slug": "nope", "state": S.IDLE}, "Failed to get workspace app."),
    ],
)
def test_status_refusals(db, channel, provision, kw, text) -> None:
    main = provision.workspace().agent("main")
    with pytest.raises(grpc.RpcError) as info:
        _status(channel, main.auth_token, **kw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == text
    with db.session() as s:
        assert list(s.exec(select(WorkspaceAppStatus))) == []


def test_status_for_another_agents_app_slug(db, channel, provision) -> None:
    ws = provision.workspace()
    # The child agent has no apps: "docs" belongs to main only.
    with pytest.raises(grpc.RpcError) as info:
        _status(channel, ws.agent("child").auth_token, slug="docs", state=S.IDLE)
    assert info.value.details() == "Failed to get workspace app."


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("  a \n\t b  ", "a b"),
        ("<b>bold</b> text", "bold text"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("bell\x07 here", "bell here"),
        ("", ""),
    ],
)
def test_ui_sanitize(raw: str, clean: str) -> None:
    assert ui_sanitize(raw) == clean
