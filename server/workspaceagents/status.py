"""Connection status and health of an agent, derived like Coder's.

Pure functions of the stored timestamps and an injected ``now`` so every
boundary is testable with a manual clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from server.clock import as_utc
from server.storage.agents import WorkspaceAgent

SHUTTING_DOWN = ("shutting_down", "shutdown_timeout", "shutdown_error")


@dataclasses.dataclass(frozen=True)
class ConnectionStatus:
    status: str
    # Coder reports last_connected_at as disconnected_at once the agent has
    # been silent past the inactivity timeout.
    disconnected_at: dt.datetime | None


def connection_status(
    agent: WorkspaceAgent, *, now: dt.datetime, inactive_timeout: dt.timedelta
) -> ConnectionStatus:
    first = as_utc(agent.first_connected_at)
    last = as_utc(agent.last_connected_at)
    disconnected = as_utc(agent.disconnected_at)
    if first is None:
        timeout = agent.connection_timeout_seconds
        if timeout > 0 and now - as_utc(agent.created_at) > dt.timedelta(seconds=timeout):
            return ConnectionStatus("timeout", disconnected)
        return ConnectionStatus("connecting", disconnected)
    if disconnected is not None and (last is None or disconnected >= last):
        return ConnectionStatus("disconnected", disconnected)
    if last is None or now - last > inactive_timeout:
        return ConnectionStatus("disconnected", last)
    return ConnectionStatus("connected", disconnected)


def health(status: str, lifecycle_state: str) -> tuple[bool, str]:
    """(healthy, reason) — the first matching rule wins, as in Coder."""
    if status != "connected" and lifecycle_state == "off":
        return False, "agent is not running"
    if status == "connecting":
        return False, "agent has not yet connected"
    if status == "timeout":
        return False, "agent is taking too long to connect"
    if status == "disconnected":
        return False, "agent has lost connection"
    if lifecycle_state == "start_error":
        return False, "agent startup script exited with an error"
    if lifecycle_state in SHUTTING_DOWN:
        return False, "agent is shutting down"
    # start_timeout is deliberately healthy: the agent works, a script was slow.
    return True, ""
