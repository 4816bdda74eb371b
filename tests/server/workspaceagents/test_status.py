"""Connection status and health at every boundary, with an injected clock."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from server.storage.agents import WorkspaceAgent
from server.workspaceagents.status import connection_status, health

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INACTIVE = dt.timedelta(seconds=30)


def _agent(**kw) -> WorkspaceAgent:
    base = {
        "created_at": T0,
        "updated_at": T0,
        "name": "a",
        "resource_id": uuid.uuid4(),
        "connection_timeout_seconds": 120,
    }
    base.update(kw)
    return WorkspaceAgent(**base)


def _status(agent: WorkspaceAgent, seconds: float) -> str:
    return connection_status(
        agent, now=T0 + dt.timedelta(seconds=seconds), inactive_timeout=INACTIVE
    ).status


def test_connecting_until_timeout_then_timeout() -> None:
    agent = _agent()
    assert _status(agent, 120) == "connecting"
    assert _status(agent, 120.001) == "timeout"


def test_zero_timeout_never_times_out() -> None:
    assert _status(_agent(connection_timeout_seconds=0), 10**6) == "connecting"


def test_connected_until_inactive_timeout() -> None:
    agent = _agent(first_connected_at=T0, last_connected_at=T0)
    assert _status(agent, 30) == "connected"
    result = connection_status(
        agent, now=T0 + dt.timedelta(seconds=30.001), inactive_timeout=INACTIVE
    )
    assert result.status == "disconnected"
    # Coder reports the last contact as the disconnection time.
    assert result.disconnected_at == T0


def test_disconnected_at_not_before_last_connected() -> None:
    same = _agent(first_connected_at=T0, last_connected_at=T0, disconnected_at=T0)
    assert _status(same, 1) == "disconnected"
    earlier = _agent(
        first_connected_at=T0, last_connected_at=T0, disconnected_at=T0 - dt.timedelta(seconds=1)
    )
    assert _status(earlier, 1) == "connected"


def test_naive_stored_times_are_utc() -> None:
    agent = _agent(
        first_connected_at=T0.replace(tzinfo=None),
        last_connected_at=T0.replace(tzinfo=None),
        created_at=T0.replace(tzinfo=None),
    )
    assert _status(agent, 1) == "connected"


@pytest.mark.parametrize(
    ("status", "lifecycle", "expected"),
    [
        ("disconnected", "off", (False, "agent is not running")),
        ("connecting", "created", (False, "agent has not yet connected")),
        ("timeout", "created", (False, "agent is taking too long to connect")),
        ("disconnected", "ready", (False, "agent has lost connection")),
        ("connected", "start_error", (False, "agent startup script exited with an error")),
        ("connected", "shutting_down", (False, "agent is shutting down")),
        ("connected", "shutdown_error", (False, "agent is shutting down")),
        ("connected", "start_timeout", (True, "")),
        ("connected", "ready", (True, "")),
        ("connected", "off", (True, "")),
    ],
)
def test_health_rules(status: str, lifecycle: str, expected: tuple[bool, str]) -> None:
    assert health(status, lifecycle) == expected
