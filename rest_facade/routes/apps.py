"""What an agent reports about its apps, over legacy REST.

* ``POST /api/v2/workspaceagents/me/app-health``  <-> ``coder.agent.v2.Agent/BatchUpdateAppHealths``
  (``{"healths": {"<app id>": "initializing"|"healthy"|"unhealthy"}}``; removed
  from Coder, kept here as the REST door onto the RPC)
* ``PATCH /api/v2/workspaceagents/me/app-status`` <-> ``coder.agent.v2.Agent/UpdateAppStatus``

Both answer 200 with the JSON body ``null``. The facade owns only what the
wire cannot carry: REST's health and state words (an unknown word has no
enum value to send), the legacy route's refusal of an empty map and of
``disabled``, and its error envelope ("Error setting workspace app health"
with the core's reason as the detail).
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from coder.agent.v2 import agent_pb2
from flask import Blueprint, Response

from rest_facade import core
from rest_facade.coderjson import respond
from rest_facade.errors import error_response, from_rpc_error
from rest_facade.parse import INVALID_JSON, go_json_kind, read_json, session_token

bp = Blueprint("apps", __name__)

HEALTH_ERROR = "Error setting workspace app health"
# The legacy route accepts only what a healthcheck can produce.
REST_HEALTH = {
    "initializing": agent_pb2.AppHealth.INITIALIZING,
    "healthy": agent_pb2.AppHealth.HEALTHY,
    "unhealthy": agent_pb2.AppHealth.UNHEALTHY,
}
_State = agent_pb2.UpdateAppStatusRequest.AppStatusState
REST_STATE = {
    "complete": _State.COMPLETE,
    "failure": _State.FAILURE,
    "working": _State.WORKING,
    "idle": _State.IDLE,
}


def _bad_json(detail: str) -> Response:
    return error_response(400, INVALID_JSON, detail=detail)


@bp.post("/workspaceagents/me/app-health")
def post_app_health() -> Response:
    body = read_json()
    if body is not None and not isinstance(body, dict):
        return _bad_json(
            f"json: cannot unmarshal {go_json_kind(body)} into Go value of type "
            "agentsdk.PostAppHealthsRequest"
        )
    healths = next((v for k, v in (body or {}).items() if k.lower() == "healths"), None)
    if healths is not None and not isinstance(healths, dict):
        return _bad_json(
            f"json: cannot unmarshal {go_json_kind(healths)} into Go struct field "
            "PostAppHealthsRequest.healths of type map[uuid.UUID]codersdk.WorkspaceAppHealth"
        )
    if not healths:
        return error_response(400, "Health field is empty")
    updates = []
    for key, value in healths.items():
        try:
            app_id = uuid.UUID(key)
        except ValueError:
            return _bad_json(f"invalid UUID length: {len(key)}")
        if not isinstance(value, str):
            return _bad_json(
                f"json: cannot unmarshal {go_json_kind(value)} into Go struct field "
                "PostAppHealthsRequest.healths of type codersdk.WorkspaceAppHealth"
            )
        health = REST_HEALTH.get(value)
        if health is None:
            return error_response(
                400, HEALTH_ERROR, detail=f"workspace app health {value} is not a valid value"
            )
        updates.append(
            agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate(id=app_id.bytes, health=health)
        )
    try:
        core().call(
            core().agent.BatchUpdateAppHealths,
            agent_pb2.BatchUpdateAppHealthRequest(updates=updates),
            token=session_token(),
        )
    except grpc.RpcError as err:
        if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise
        # The legacy route wraps the reason under one message.
        status, envelope = from_rpc_error(err)
        return error_response(status, HEALTH_ERROR, detail=envelope["message"])
    return respond(None)


def _string_field(body: dict[str, Any], name: str) -> str | Response:
    value = next((v for k, v in body.items() if k.lower() == name), None)
    if value is None:
        return ""
    if not isinstance(value, str):
        return _bad_json(
            f"json: cannot unmarshal {go_json_kind(value)} into Go struct field "
            f"PatchAppStatus.{name} of type string"
        )
    return value


@bp.patch("/workspaceagents/me/app-status")
def patch_app_status() -> Response:
    body = read_json()
    if body is not None and not isinstance(body, dict):
        return _bad_json(
            f"json: cannot unmarshal {go_json_kind(body)} into Go value of type "
            "agentsdk.PatchAppStatus"
        )
    fields = {}
    # icon and needs_user_attention are still accepted and ignored, as in Coder.
    for name in ("app_slug", "state", "message", "uri"):
        value = _string_field(body or {}, name)
        if isinstance(value, Response):
            return value
        fields[name] = value
    state = REST_STATE.get(fields["state"])
    if state is None:
        return error_response(
            400,
            "Invalid state provided.",
            detail=f'invalid state: "{fields["state"]}"',
            validations=[("state", "State must be one of: complete, failure, working, idle.")],
        )
    core().call(
        core().agent.UpdateAppStatus,
        agent_pb2.UpdateAppStatusRequest(
            slug=fields["app_slug"], state=state, message=fields["message"], uri=fields["uri"]
        ),
        token=session_token(),
    )
    return respond(None)
