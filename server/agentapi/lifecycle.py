"""UpdateLifecycle: the agent reports a lifecycle transition.

Serves ``coder.agent.v2.Agent/UpdateLifecycle``. As in Coder the server does
not validate transitions (the agent only moves forward); it stores the state
and keeps ``started_at``/``ready_at`` in step with it.
"""

from __future__ import annotations

from coder.agent.v2 import agent_pb2

from server.agentapi.gotext import enum_text
from server.clock import Clock, as_utc
from server.errors import InvalidArgument
from server.prototime import from_timestamp, to_timestamp
from server.storage import agentstatus
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

_State = agent_pb2.Lifecycle.State
# Explicit table: STATE_UNSPECIFIED and unknown numbers are refused.
LIFECYCLE_STATE = {
    _State.CREATED: "created",
    _State.STARTING: "starting",
    _State.START_TIMEOUT: "start_timeout",
    _State.START_ERROR: "start_error",
    _State.READY: "ready",
    _State.SHUTTING_DOWN: "shutting_down",
    _State.SHUTDOWN_TIMEOUT: "shutdown_timeout",
    _State.SHUTDOWN_ERROR: "shutdown_error",
    _State.OFF: "off",
}
# States that end startup: they stamp ready_at.
_STARTUP_DONE = ("ready", "start_timeout", "start_error")


def update_lifecycle(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.UpdateLifecycleRequest,
) -> agent_pb2.Lifecycle:
    lifecycle = request.lifecycle
    state = LIFECYCLE_STATE.get(lifecycle.state)
    if state is None:
        raise InvalidArgument(
            f"unknown lifecycle state {enum_text(agent_pb2.Lifecycle.State, lifecycle.state)}"
        )
    # Go's zero time (an unset Timestamp) means "now".
    if lifecycle.HasField("changed_at") and (
        lifecycle.changed_at.seconds or lifecycle.changed_at.nanos
    ):
        changed_at = from_timestamp(lifecycle.changed_at, "lifecycle.changed_at")
    else:
        changed_at = clock.now()
    agent = caller.agent
    started_at = as_utc(agent.started_at)
    ready_at = as_utc(agent.ready_at)
    if state == "starting":
        # (Re)starting: not ready until it says so again.
        started_at, ready_at = changed_at, None
    elif state in _STARTUP_DONE:
        started_at = started_at or changed_at
        ready_at = changed_at
    with db.engine.begin() as conn:
        agentstatus.update_lifecycle(
            conn, agent_id=agent.id, state=state, started_at=started_at, ready_at=ready_at
        )
    reply = agent_pb2.Lifecycle()
    reply.CopyFrom(lifecycle)
    reply.changed_at.CopyFrom(to_timestamp(changed_at))
    return reply
