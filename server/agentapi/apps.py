"""What the agent reports about its apps: healthcheck results and the app
status line.

Serves ``coder.agent.v2.Agent/BatchUpdateAppHealths`` (legacy REST
``POST me/app-health``) and ``coder.agent.v2.Agent/UpdateAppStatus`` (REST
``PATCH me/app-status``). Both change the agent's cached view, so each write
bumps the agent's revision in the same transaction.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

import sqlalchemy as sa
from coder.agent.v2 import agent_pb2

from server.agentapi.gotext import enum_text, quote, quote_bytes, uuid_from_bytes
from server.clock import Clock
from server.errors import InvalidArgument, NotFound
from server.storage import agents as agent_store
from server.storage import appstatus
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

APP_HEALTH = {
    agent_pb2.AppHealth.DISABLED: "disabled",
    agent_pb2.AppHealth.INITIALIZING: "initializing",
    agent_pb2.AppHealth.HEALTHY: "healthy",
    agent_pb2.AppHealth.UNHEALTHY: "unhealthy",
}
_State = agent_pb2.UpdateAppStatusRequest.AppStatusState
APP_STATUS_STATE = {
    _State.COMPLETE: "complete",
    _State.FAILURE: "failure",
    _State.WORKING: "working",
    _State.IDLE: "idle",
}
# Coder's cap, counted in bytes though the message says characters.
MAX_STATUS_MESSAGE_BYTES = 160
MESSAGE_TOO_LONG = "Message must be less than 160 characters."
STATE_CHOICES = "State must be one of: complete, failure, working, idle."


async def batch_update_app_healths(
    db: Database, *, caller: AgentInWorkspace, request: agent_pb2.BatchUpdateAppHealthRequest
) -> agent_pb2.BatchUpdateAppHealthResponse:
    """Validated on the loop from the agent's cached view; only a change is
    written (an agent repeats its healths every few seconds)."""
    if not request.updates:
        return agent_pb2.BatchUpdateAppHealthResponse()
    agent = caller.agent
    with db.read() as conn:
        apps = {app.id: app for app in db.agent_views.children(conn, agent).apps}
    changed: dict[uuid.UUID, str] = {}
    # Validate everything first: one bad update writes nothing.
    for update in request.updates:
        try:
            app_id = uuid_from_bytes(update.id)
        except ValueError as err:
            raise InvalidArgument(
                f"parse workspace app ID {quote_bytes(update.id)}: {err}"
            ) from None
        app = apps.get(app_id)
        if app is None:
            raise NotFound(f"workspace app ID {quote(str(app_id))} not found")
        if not app.healthcheck_url:
            # 404, as the legacy REST route answered for this case.
            raise NotFound(
                f"workspace app {quote(str(app_id))} ({quote(app.slug)}) "
                "does not have healthchecks enabled"
            )
        health = APP_HEALTH.get(update.health)
        if health is None:
            raise InvalidArgument(
                f"unknown health status {enum_text(agent_pb2.AppHealth, update.health)} "
                f"for app {quote(str(app_id))} ({quote(app.slug)})"
            )
        if app.health != health:
            changed[app_id] = health
        elif app_id in changed:
            # A later update in the same batch restores the stored value.
            del changed[app_id]
    if changed:

        def write(conn: sa.Connection) -> None:
            appstatus.set_app_healths(conn, agent_id=agent.id, healths=changed)
            agent_store.bump_revision(conn, agent_id=agent.id)

        await db.run_write(write, key=agent.id)
    return agent_pb2.BatchUpdateAppHealthResponse()


_HTML_TAG = re.compile(r"<[^>]*>")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)")


def ui_sanitize(text: str) -> str:
    """Coder treats the status message as untrusted text for the UI: tags and
    terminal escapes removed, whitespace runs collapsed to one space,
    non-printable characters dropped, ends trimmed."""
    text = _ANSI.sub("", _HTML_TAG.sub("", text))
    out: list[str] = []
    space = False
    for char in text:
        if char.isspace():
            if not space:
                out.append(" ")
                space = True
            continue
        space = False
        if unicodedata.category(char)[0] != "C":
            out.append(char)
    return "".join(out).strip()


def update_app_status(
    db: Database,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.UpdateAppStatusRequest,
) -> agent_pb2.UpdateAppStatusResponse:
    if len(request.message.encode()) > MAX_STATUS_MESSAGE_BYTES:
        raise InvalidArgument(
            "Message is too long.",
            detail=MESSAGE_TOO_LONG,
            validations=[("message", MESSAGE_TOO_LONG)],
        )
    state = APP_STATUS_STATE.get(request.state)
    if state is None:
        raise InvalidArgument(
            "Invalid state provided.",
            detail=f"invalid state: {enum_text(_State, request.state)}",
            validations=[("state", STATE_CHOICES)],
        )
    agent = caller.agent
    with db.engine.begin() as conn:
        app = appstatus.get_app_by_slug(conn, agent_id=agent.id, slug=request.slug)
        if app is None:
            raise InvalidArgument(
                "Failed to get workspace app.",
                detail=f"No app found with slug {quote(request.slug)}",
            )
        appstatus.insert_app_status(
            conn,
            agent_id=agent.id,
            app_id=app.id,
            workspace_id=caller.workspace.id,
            state=state,
            message=ui_sanitize(request.message),
            uri=request.uri,
            now=clock.now(),
        )
        agent_store.bump_revision(conn, agent_id=agent.id)
    return agent_pb2.UpdateAppStatusResponse()
