"""ScriptCompleted: the agent reports how one run of one of its scripts went.

Serves ``coder.agent.v2.Agent/ScriptCompleted``. Stricter than Coder (which
accepts any script id the database knows): the script must be one of the
calling agent's own. A repeated report of the same run is accepted once.
"""

from __future__ import annotations

from coder.agent.v2 import agent_pb2

from server.agentapi.gotext import quote, uuid_from_bytes
from server.clock import Clock
from server.errors import InvalidArgument, NotFound
from server.prototime import from_timestamp
from server.storage import scripttimings
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

_Timing = agent_pb2.Timing
# Explicit tables; START and OK are the proto zero values.
STAGE = {_Timing.Stage.START: "start", _Timing.Stage.STOP: "stop", _Timing.Stage.CRON: "cron"}
STATUS = {
    _Timing.Status.OK: "ok",
    _Timing.Status.EXIT_FAILURE: "exit_failure",
    _Timing.Status.TIMED_OUT: "timed_out",
    _Timing.Status.PIPES_LEFT_OPEN: "pipes_left_open",
}


def script_completed(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.WorkspaceAgentScriptCompletedRequest,
) -> agent_pb2.WorkspaceAgentScriptCompletedResponse:
    timing = request.timing
    try:
        script_id = uuid_from_bytes(timing.script_id)
    except ValueError as err:
        raise InvalidArgument(f"script id from bytes: {err}") from None
    stage = STAGE.get(timing.stage)
    status = STATUS.get(timing.status)
    if stage is None or status is None:
        raise InvalidArgument(
            "insert workspace agent script timings into database: "
            f"unknown stage {timing.stage} or status {timing.status}"
        )
    started_at = from_timestamp(timing.start, "timing.start")
    ended_at = from_timestamp(timing.end, "timing.end")
    with db.engine.begin() as conn:
        if not scripttimings.is_script_of_agent(
            conn, script_id=script_id, agent_id=caller.agent.id
        ):
            raise NotFound(
                "insert workspace agent script timings into database: "
                f"script {quote(str(script_id))} is not a script of this agent"
            )
        scripttimings.insert_timing(
            conn,
            script_id=script_id,
            started_at=started_at,
            ended_at=ended_at,
            exit_code=timing.exit_code,
            stage=stage,
            status=status,
            now=clock.now(),
        )
    return agent_pb2.WorkspaceAgentScriptCompletedResponse()
