"""Agent logs over REST.

* ``PATCH /workspaceagents/me/logs`` (and the legacy ``me/startup-logs``)
  <-> ``coder.agent.v2.Agent/BatchCreateLogs``
* ``POST /workspaceagents/me/log-source`` <-> ``agentplane.logs.v1.LogsService/PostLogSource``
* ``GET /workspaceagents/{id}/logs`` (and the legacy ``/startup-logs``)
  <-> ``LogsService/ListWorkspaceAgentLogs``; with ``?follow`` a WebSocket
  (or Server-Sent Events with ``Accept: text/event-stream``) onto
  ``LogsService/WatchWorkspaceAgentLogs``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from agentplane.logs.v1 import logs_pb2
from coder.agent.v2 import agent_pb2
from flask import Blueprint, Response, request, stream_with_context
from google.protobuf import timestamp_pb2

from rest_facade import core
from rest_facade.coderjson import CONTENT_TYPE, dumps, respond, timestamp
from rest_facade.errors import error_response
from rest_facade.parse import read_json, session_token, wants_event_stream, wants_websocket
from rest_facade.serving.exchange import SSE_HEADERS, Exchange, Handoff
from rest_facade.serving.websocket import PING_INTERVAL_SECONDS
from rest_facade.streams import CoreStream, stream_slots, until_gone
from server.config import parse_int64

bp = Blueprint("logs", __name__)

LEVELS = {
    "": agent_pb2.Log.Level.INFO,  # Coder: an empty level means info
    "trace": agent_pb2.Log.Level.TRACE,
    "debug": agent_pb2.Log.Level.DEBUG,
    "info": agent_pb2.Log.Level.INFO,
    "warn": agent_pb2.Log.Level.WARN,
    "error": agent_pb2.Log.Level.ERROR,
}
NIL_UUID = uuid.UUID(int=0)
Event = logs_pb2.WatchWorkspaceAgentLogsResponse.Event

# -- ingest -------------------------------------------------------------------


def _parse_batch(body: Any) -> agent_pb2.BatchCreateLogsRequest | Response:
    if not isinstance(body, dict):
        return error_response(
            400, "Request body must be valid JSON.", detail="expected a JSON object"
        )
    raw_source = body.get("log_source_id") or str(NIL_UUID)
    try:
        source = uuid.UUID(str(raw_source))
    except ValueError:
        return error_response(
            400, "Invalid log source ID.", validations=[("log_source_id", "must be a UUID")]
        )
    logs = body.get("logs")
    if not logs:
        return error_response(400, "No logs provided.")
    if not isinstance(logs, list):
        return error_response(400, "Validation failed.", validations=[("logs", "must be a list")])
    out = agent_pb2.BatchCreateLogsRequest(log_source_id=source.bytes)
    for item in logs:
        if not isinstance(item, dict) or not isinstance(item.get("output", ""), str):
            return error_response(
                400, "Validation failed.", validations=[("logs", "each log needs a string output")]
            )
        level = item.get("level", "")
        if not isinstance(level, str) or level not in LEVELS:
            return error_response(
                400, "Invalid log level provided.", detail=f'invalid log level: "{level}"'
            )
        # created_at is accepted and ignored: the server stamps the batch.
        out.logs.add(output=item.get("output", ""), level=LEVELS[level])
    return out


def _patch_logs() -> Response:
    parsed = _parse_batch(read_json())
    if isinstance(parsed, Response):
        return parsed
    resp = core().call(core().agent.BatchCreateLogs, parsed, token=session_token())
    if resp.log_limit_exceeded:
        return error_response(413, "Logs limit exceeded")
    return respond(None)


@bp.patch("/workspaceagents/me/logs")
def patch_logs() -> Response:
    return _patch_logs()


@bp.patch("/workspaceagents/me/startup-logs")
def patch_startup_logs() -> Response:
    """The route's name before Coder renamed it; same behaviour."""
    return _patch_logs()


@bp.post("/workspaceagents/me/log-source")
def post_log_source() -> Response:
    body = read_json()
    if not isinstance(body, dict):
        return error_response(
            400, "Request body must be valid JSON.", detail="expected a JSON object"
        )
    resp = core().call(
        core().logs.PostLogSource,
        logs_pb2.PostLogSourceRequest(
            id=str(body.get("id", "")),
            display_name=str(body.get("display_name", "")),
            icon=str(body.get("icon", "")),
        ),
        token=session_token(),
    )
    s = resp.source
    return respond(
        {
            "created_at": timestamp(s, "created_at"),
            "display_name": s.display_name,
            "icon": s.icon,
            "id": s.id,
            "workspace_agent_id": s.workspace_agent_id,
        },
        status=201,
    )


# -- read ---------------------------------------------------------------------


def log_json(log: logs_pb2.Log) -> dict[str, Any]:
    """codersdk.WorkspaceAgentLog."""
    return {
        "created_at": timestamp(log, "created_at"),
        "id": log.id,
        "level": log.level,
        "output": log.output,
        "source_id": log.source_id,
    }


def log_text(log: logs_pb2.Log) -> str:
    """One line a person can read: RFC 3339 time, level, output."""
    return f"{timestamp(log, 'created_at')} {log.level.upper():<5} {log.output}\n"


def overflow_marker() -> dict[str, Any]:
    """Beyond Coder: followers are told, in-stream, that later logs were
    dropped. Shaped as a log entry (id 0, so resuming by the largest id seen
    is unaffected) that Coder's clients render like any other line."""
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(dt.datetime.now(dt.UTC))
    return {
        "created_at": timestamp(logs_pb2.Log(created_at=now), "created_at"),
        "id": 0,
        "level": "warn",
        "output": "agentplane: this agent reached its log limit; later logs were not stored.",
        "source_id": str(NIL_UUID),
    }


def _cursor(name: str) -> int | Response | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    # Coder's strconv.ParseInt: ASCII digits, an optional sign, int64.
    value = parse_int64(raw)
    if value is None or value < 0:
        detail = f'Query param "{name}" must be an integer greater than or equal to zero.'
        return error_response(400, detail, validations=[(name, detail)])
    return value


def _get_logs(agent_id: str) -> Response:
    after = _cursor("after")
    if isinstance(after, Response):
        return after
    before = _cursor("before")
    if isinstance(before, Response):
        return before
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "text"):
        return error_response(
            400, "Invalid query parameters.", validations=[("format", 'must be "json" or "text"')]
        )
    follow = "follow" in request.args  # Coder: the key's presence means true
    if follow and fmt == "text":
        return error_response(
            400,
            'Query param "format" must be "json" when "follow" is set.',
            validations=[("format", "text is a download; follow streams JSON frames")],
        )
    if follow and before is not None:
        return error_response(
            400,
            'Query param "before" cannot be combined with "follow".',
            validations=[("before", "not supported with follow")],
        )
    token = session_token()
    if follow:
        return _follow(agent_id, after or 0, token)
    return _list(agent_id, after or 0, before, fmt, token)


def _list(agent_id: str, after: int, before: int | None, fmt: str, token: str | None) -> Response:
    client = core()

    def page(cursor: int) -> logs_pb2.ListWorkspaceAgentLogsResponse:
        req = logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id, after=cursor)
        if before is not None:
            req.before = before
        return client.call(client.logs.ListWorkspaceAgentLogs, req, token=token)

    # The first page is fetched before answering, so errors keep their status.
    first = page(after)

    def pages() -> Iterator[logs_pb2.ListWorkspaceAgentLogsResponse]:
        current = first
        while True:
            yield current
            if not current.more or not current.logs:
                return
            current = page(current.logs[-1].id)

    if fmt == "text":

        def text() -> Iterator[str]:
            for p in pages():
                for log in p.logs:
                    yield log_text(log)

        return Response(stream_with_context(text()), mimetype="text/plain")

    def body() -> Iterator[str]:
        yield "["
        sep = ""
        for p in pages():
            for log in p.logs:
                yield sep + dumps(log_json(log))
                sep = ","
        yield "]\n"

    return Response(stream_with_context(body()), content_type=CONTENT_TYPE)


async def _frames(stream: CoreStream, idle: float | None) -> AsyncIterator[tuple[str, Any]]:
    """("frame", [logs json]) / ("end", reason) / ("error", RpcError) /
    ("idle", None) when nothing came for ``idle`` seconds (if given)."""
    backlog: list[dict[str, Any]] = []
    in_backlog = True
    while True:
        try:
            message = await stream.next(idle)
        except TimeoutError:
            yield "idle", None
            continue
        except grpc.RpcError as err:
            yield "error", err
            return
        if message is None:
            yield "end", "stream ended"
            return
        logs = [log_json(log) for log in message.logs]
        if in_backlog and message.backlog:
            backlog.extend(logs)
            if message.backlog_complete:
                in_backlog = False
                # Coder: the first frame is the backlog, even when empty.
                yield "frame", backlog
            continue
        if logs:
            yield "frame", logs
        if message.event == Event.EVENT_LOGS_OVERFLOWED:
            yield "frame", [overflow_marker()]
        elif message.event == Event.EVENT_AGENT_REPLACED:
            yield "end", "agent replaced by a newer build"
            return


def _follow(agent_id: str, after: int, token: str | None) -> Response:
    if wants_event_stream():
        mode = "sse"
    elif wants_websocket():
        mode = "websocket"
    else:
        return error_response(400, "Follow needs a WebSocket upgrade or Accept: text/event-stream.")
    request_pb = logs_pb2.WatchWorkspaceAgentLogsRequest(agent_id=agent_id, after=after)

    async def run(exchange: Exchange) -> None:
        core = exchange.core
        stream = CoreStream(core.stream(core.logs.WatchWorkspaceAgentLogs, request_pb, token=token))
        try:
            # Errors (auth, 404, bad id) come before the first message: they
            # are plain HTTP answers, before any upgrade, as in Coder.
            try:
                await stream.peek(core.timeout)
            except TimeoutError:
                await exchange.respond_error(408, "Timed out waiting for the agent's logs.")
                return
            except grpc.RpcError as err:
                await exchange.respond_rpc_error(err)
                return
            if mode == "sse":
                await _follow_sse(exchange, stream)
            else:
                await _follow_websocket(exchange, stream)
        finally:
            await stream.close()

    return Handoff(run, on_done=stream_slots().acquire())


async def _follow_websocket(exchange: Exchange, stream: CoreStream) -> None:
    ws = await exchange.websocket(one_way=True)
    # The client leaving ends the core stream, and so the loop below.
    ws.on_close(stream.cancel)
    try:
        async for kind, value in _frames(stream, None):
            if ws.closed:
                return
            if kind == "frame":
                await ws.send_text(dumps(value))
            elif kind == "end":
                await ws.close(1000, value)
                return
            elif kind == "error":
                await ws.close(1011, value.details() or "")
                return
    finally:
        await ws.aclose()


async def _follow_sse(exchange: Exchange, stream: CoreStream) -> None:
    out = await exchange.stream(200, SSE_HEADERS)
    if exchange.request.method == "HEAD":
        await out.end()
        return

    async def events() -> None:
        async for kind, value in _frames(stream, PING_INTERVAL_SECONDS):
            if kind == "frame":
                await out.send(f"event: logs\ndata: {dumps(value)}\n\n".encode())
            elif kind == "idle":
                await out.send(b"event: ping\ndata: {}\n\n")
            else:
                reason = value if kind == "end" else (value.details() or "error")
                await out.send(f"event: end\ndata: {dumps({'reason': reason})}\n\n".encode())
                await out.end()
                return

    await until_gone(exchange.wait_disconnected(), events())


@bp.get("/workspaceagents/<agent:agent_id>/logs")
def get_logs(agent_id: str) -> Response:
    return _get_logs(agent_id)


@bp.get("/workspaceagents/<agent:agent_id>/startup-logs")
def get_startup_logs(agent_id: str) -> Response:
    """The route's name before Coder renamed it; same behaviour."""
    return _get_logs(agent_id)
