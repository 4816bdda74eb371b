"""GetWorkspaceAgentDiagnosis: which step an agent waits on, with the facts
— never connected, refused token (and why), stuck starting on a script,
last seen where and when."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wpb_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from tests.conftest import token_md
from tests.server.agentapi.test_scripts import completed, script_id

State = agent_pb2.Lifecycle.State
Timing = agent_pb2.Timing


def diagnose(channel, api_key: str, agent_id: str) -> wpb.Diagnosis:
    return (
        wpb_grpc.WorkspaceAgentsServiceStub(channel)
        .GetWorkspaceAgentDiagnosis(
            wpb.GetWorkspaceAgentDiagnosisRequest(id=agent_id), metadata=token_md(api_key)
        )
        .diagnosis
    )


def _stats(channel, token: str) -> None:
    agent_pb2_grpc.AgentStub(channel).UpdateStats(
        agent_pb2.UpdateStatsRequest(), metadata=token_md(token)
    )


def _lifecycle(channel, token: str, state: int) -> None:
    agent_pb2_grpc.AgentStub(channel).UpdateLifecycle(
        agent_pb2.UpdateLifecycleRequest(lifecycle=agent_pb2.Lifecycle(state=state)),
        metadata=token_md(token),
    )


def test_never_connected(clock, channel, provision) -> None:
    ws = provision.workspace()
    clock.advance(seconds=50)
    d = diagnose(channel, ws.api_key, ws.agent("main").id)
    assert (d.status, d.waiting_on, d.build_number) == ("connecting", "connect", 1)
    assert d.summary.startswith(
        "The agent has never connected since build 1 was created at 2026-01-01T00:00:00Z (50 s ago)"
    )
    assert not d.HasField("token_rejection") and not d.HasField("first_connected_at")
    clock.advance(seconds=100)
    d = diagnose(channel, ws.api_key, ws.agent("main").id)
    assert d.status == "timeout" and "connection timeout of 120 s has passed" in d.summary


def test_an_old_builds_token_is_named(clock, channel, provision) -> None:
    ws = provision.workspace()
    old = ws.agent("main")
    clock.advance(seconds=10)
    build = provision.rebuild(ws)
    new = next(a for a in build.agents if a.name == "main")
    clock.advance(seconds=10)
    with pytest.raises(grpc.RpcError) as info:
        _stats(channel, old.auth_token)
    # The agent still gets Coder's 401; the reason is kept for the owner.
    assert info.value.details() == "Workspace agent not authorized."
    d = diagnose(channel, ws.api_key, new.id)
    assert (d.status, d.waiting_on, d.build_number) == ("connecting", "token", 2)
    r = d.token_rejection
    assert (r.build_number, r.attempts) == (1, 1)
    assert r.reason.startswith(
        "the token belongs to build 1, but the workspace's latest build is 2"
    )
    assert r.rejected_at.ToDatetime(tzinfo=dt.UTC) == clock.now()
    assert "was refused because the token belongs to build 1" in d.summary
    # Every refused call counts, however quickly the agent retries.
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            _stats(channel, old.auth_token)
    assert diagnose(channel, ws.api_key, new.id).token_rejection.attempts == 3
    clock.advance(seconds=5)
    with pytest.raises(grpc.RpcError):
        _stats(channel, old.auth_token)
    r = diagnose(channel, ws.api_key, new.id).token_rejection
    assert r.attempts == 4 and r.rejected_at.ToDatetime(tzinfo=dt.UTC) == clock.now()


def test_a_newer_builds_refused_token_is_not_an_older_agents(clock, channel, provision) -> None:
    """The diagnosis of build 2's agent shows build 1's refused token (it is
    why the agent is stuck), never build 3's: that one is no clue to it."""
    ws = provision.workspace()
    second = next(a for a in provision.rebuild(ws).agents if a.name == "main")
    third = next(a for a in provision.rebuild(ws).agents if a.name == "main")
    provision.rebuild(ws)
    clock.advance(seconds=1)
    with pytest.raises(grpc.RpcError):
        _stats(channel, third.auth_token)
    assert not diagnose(channel, ws.api_key, second.id).HasField("token_rejection")
    third_view = diagnose(channel, ws.api_key, third.id).token_rejection
    assert (third_view.build_number, third_view.attempts) == (3, 1)


def test_a_deleted_workspace_is_named(channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    provision.rebuild(ws, transition="delete")
    with pytest.raises(grpc.RpcError):
        _stats(channel, main.auth_token)
    d = diagnose(channel, ws.api_key, main.id)
    assert d.waiting_on == "token"
    assert d.token_rejection.reason == "the workspace was deleted (its last build is 2)"


def test_unknown_tokens_leave_no_trace(channel, provision) -> None:
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError):
        _stats(channel, "00000000-0000-4000-8000-000000000000")
    assert not diagnose(channel, ws.api_key, ws.agent("main").id).HasField("token_rejection")


def test_connected_then_starting_on_a_script(clock, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    _stats(channel, main.auth_token)
    d = diagnose(channel, ws.api_key, main.id)
    assert (d.status, d.waiting_on) == ("connected", "lifecycle")
    _lifecycle(channel, main.auth_token, State.STARTING)
    started = clock.now()
    clock.advance(seconds=75)
    _stats(channel, main.auth_token)
    d = diagnose(channel, ws.api_key, main.id)
    assert (d.waiting_on, list(d.pending_scripts), d.state_seconds) == (
        "startup_scripts",
        ["Startup"],
        75,
    )
    assert d.state_since.ToDatetime(tzinfo=dt.UTC) == started
    assert d.summary == (
        'The agent has been starting for 75 s; waiting on startup script(s) "Startup".'
    )
    completed(
        channel,
        main.auth_token,
        script_id(channel, ws).bytes,
        started,
        exit_code=1,
        stage=Timing.START,
        status=Timing.EXIT_FAILURE,
    )
    d = diagnose(channel, ws.api_key, main.id)
    assert list(d.pending_scripts) == [] and "every startup script has reported" in d.summary
    _lifecycle(channel, main.auth_token, State.START_ERROR)
    d = diagnose(channel, ws.api_key, main.id)
    assert d.waiting_on == ""
    assert d.summary == 'Startup failed: "Startup" exited with 1 (exit_failure).'
    assert [(f.display_name, f.exit_code, f.status) for f in d.failed_scripts] == [
        ("Startup", 1, "exit_failure")
    ]


def test_ready_and_then_gone(clock, core, channel, provision) -> None:
    ws = provision.workspace()
    main = ws.agent("main")
    _lifecycle(channel, main.auth_token, State.READY)
    d = diagnose(channel, ws.api_key, main.id)
    assert (d.status, d.waiting_on, d.summary) == (
        "connected",
        "",
        "The agent is connected and ready.",
    )
    replica = str(core.core.sessions.replica_id)
    assert d.last_connected_replica_id == replica
    clock.advance(seconds=31)
    d = diagnose(channel, ws.api_key, main.id)
    assert (d.status, d.waiting_on) == ("disconnected", "reconnect")
    assert d.summary == (
        "The agent lost its connection; it was last seen at 2026-01-01T00:00:00Z (31 s ago) "
        f"on replica {replica}."
    )


def test_only_readers_may_diagnose(channel, provision) -> None:
    ws = provision.workspace()
    stranger = provision.user()
    with pytest.raises(grpc.RpcError) as info:
        diagnose(channel, stranger.api_key, ws.agent("main").id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        diagnose(channel, ws.api_key, "zzz")
    assert info.value.details() == 'Invalid UUID "zzz".'
