"""PostLogSource: an agent registers a log source of its own.

Serves ``agentplane.logs.v1.LogsService/PostLogSource`` (REST ``POST
/api/v2/workspaceagents/me/log-source``, 201 whether new or not — Coder
treats the same id again as success).
"""

from __future__ import annotations

import uuid

from agentplane.logs.v1 import logs_pb2

from server.clock import Clock
from server.errors import InvalidArgument
from server.prototime import to_timestamp
from server.storage import logs as log_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

MAX_DISPLAY_NAME = 127  # Coder's VARCHAR(127)


def post_log_source(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: logs_pb2.PostLogSourceRequest,
) -> logs_pb2.PostLogSourceResponse:
    problems = []
    try:
        source_id = uuid.UUID(request.id)
    except ValueError:
        problems.append(("id", "must be a UUID"))
    if not request.display_name.strip():
        problems.append(("display_name", "is required"))
    elif len(request.display_name) > MAX_DISPLAY_NAME:
        problems.append(("display_name", f"must be at most {MAX_DISPLAY_NAME} characters"))
    if problems:
        raise InvalidArgument("Validation failed.", validations=problems)
    with db.write() as conn:
        row, created = log_store.insert_log_source_if_absent(
            conn,
            agent_id=caller.agent.id,
            source_id=source_id,
            display_name=request.display_name,
            icon=request.icon,
            now=clock.now(),
        )
    return logs_pb2.PostLogSourceResponse(
        source=logs_pb2.LogSource(
            id=str(row.id),
            workspace_agent_id=str(row.workspace_agent_id),
            created_at=to_timestamp(row.created_at),
            display_name=row.display_name,
            icon=row.icon,
        ),
        created=created,
    )
