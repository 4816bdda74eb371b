"""UpdateLifecycle through the live core: every state is stored in any
order, started_at/ready_at follow Coder's rules, and the unspecified state
is refused with Coder's text."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from google.protobuf import timestamp_pb2

from server.clock import as_utc
from server.errors import DATABASE_BUSY
from server.storage.agents import LIFECYCLE_STATES, WorkspaceAgent
from tests.conftest import token_md, write_locked

State = agent_pb2.Lifecycle.State


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _row(db, agent_id: str) -> WorkspaceAgent:
    with db.session() as s:
        return s.get(WorkspaceAgent, uuid.UUID(agent_id))


def _update(channel, token: str, state: int, changed_at: dt.datetime | None = None):
    lifecycle = agent_pb2.Lifecycle(state=state)
    if changed_at is not None:
        lifecycle.changed_at.CopyFrom(_ts(changed_at))
    return agent_pb2_grpc.AgentStub(channel).UpdateLifecycle(
        agent_pb2.UpdateLifecycleRequest(lifecycle=lifecycle), metadata=token_md(token)
    )


def test_every_state_is_stored_in_any_order(db, channel, provision) -> None:
    main = provision.workspace().agent("main")
    # Coder's own test walks all nine; the server never checks transitions.
    for name in (*LIFECYCLE_STATES, "starting", "created"):
        _update(channel, main.auth_token, State.Value(name.upper()))
        assert _row(db, main.id).lifecycle_state == name


def test_starting_then_ready_stamps_times(db, clock, channel, provision) -> None:
    main = provision.workspace().agent("main")
    t1 = clock.now() + dt.timedelta(seconds=5)
    t2 = t1 + dt.timedelta(seconds=7)
    echo = _update(channel, main.auth_token, State.STARTING, t1)
    assert echo.state == State.STARTING and echo.changed_at.ToDatetime(tzinfo=dt.UTC) == t1
    row = _row(db, main.id)
    assert as_utc(row.started_at) == t1 and row.ready_at is None
    _update(channel, main.auth_token, State.READY, t2)
    row = _row(db, main.id)
    assert (as_utc(row.started_at), as_utc(row.ready_at)) == (t1, t2)
    # Restarting clears ready_at again.
    t3 = t2 + dt.timedelta(seconds=1)
    _update(channel, main.auth_token, State.STARTING, t3)
    row = _row(db, main.id)
    assert as_utc(row.started_at) == t3 and row.ready_at is None


@pytest.mark.parametrize("end", [State.START_TIMEOUT, State.START_ERROR, State.READY])
def test_startup_end_without_starting_sets_both(db, clock, channel, provision, end) -> None:
    main = provision.workspace().agent("main")
    t = clock.now() + dt.timedelta(seconds=3)
    _update(channel, main.auth_token, end, t)
    row = _row(db, main.id)
    assert as_utc(row.started_at) == t and as_utc(row.ready_at) == t


def test_unset_changed_at_is_server_now(db, clock, channel, provision) -> None:
    main = provision.workspace().agent("main")
    clock.advance(seconds=42)
    echo = _update(channel, main.auth_token, State.STARTING)
    assert echo.changed_at.ToDatetime(tzinfo=dt.UTC) == clock.now()
    assert as_utc(_row(db, main.id).started_at) == clock.now()


def test_shutdown_states_keep_times(db, clock, channel, provision) -> None:
    main = provision.workspace().agent("main")
    t = clock.now()
    _update(channel, main.auth_token, State.READY, t)
    _update(channel, main.auth_token, State.SHUTTING_DOWN, t + dt.timedelta(seconds=9))
    row = _row(db, main.id)
    assert row.lifecycle_state == "shutting_down" and as_utc(row.ready_at) == t


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (State.STATE_UNSPECIFIED, 'unknown lifecycle state "STATE_UNSPECIFIED"'),
        (99, 'unknown lifecycle state "99"'),
    ],
)
def test_unknown_state_is_refused(db, channel, provision, state, text) -> None:
    main = provision.workspace().agent("main")
    with pytest.raises(grpc.RpcError) as info:
        _update(channel, main.auth_token, state)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == text
    assert _row(db, main.id).lifecycle_state == "created"


def test_needs_an_agent_token(channel, provision) -> None:
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError) as info:
        _update(channel, ws.api_key, State.READY)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_write_waiting_on_a_lock_gives_up_with_unavailable(db, channel, provision) -> None:
    """Another transaction holds what the call writes (the agent's row on
    PostgreSQL, the database's write lock on SQLite): the call waits for the
    lock timeout (db.LOCK_WAIT_SECONDS), not as long as that transaction
    lasts, then answers UNAVAILABLE with nothing written; once the lock is
    gone the same call passes."""
    main = provision.workspace().agent("main")
    _update(channel, main.auth_token, State.STARTING)
    with write_locked(db, main.id), pytest.raises(grpc.RpcError) as err:
        agent_pb2_grpc.AgentStub(channel).UpdateLifecycle(
            agent_pb2.UpdateLifecycleRequest(lifecycle=agent_pb2.Lifecycle(state=State.READY)),
            metadata=token_md(main.auth_token),
            timeout=60,
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == DATABASE_BUSY
    assert _row(db, main.id).lifecycle_state == "starting"
    _update(channel, main.auth_token, State.READY)
    assert _row(db, main.id).lifecycle_state == "ready"
