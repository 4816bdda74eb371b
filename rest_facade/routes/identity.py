"""Instance-identity login routes <-> ``agentplane.identity.v1.InstanceIdentityService``.

* ``POST /api/v2/workspaceagents/aws-instance-identity``    <-> ``AuthenticateAWS``
* ``POST /api/v2/workspaceagents/azure-instance-identity``  <-> ``AuthenticateAzure``
* ``POST /api/v2/workspaceagents/google-instance-identity`` <-> ``AuthenticateGoogle``

Unauthenticated: no session token is forwarded, whatever the request carries.
The body is decoded the way Go's ``encoding/json`` decodes Coder's SDK structs
(the only part the facade owns); required fields, verification and the agent
choice are the core's, so gRPC callers get the same answers. 200 answers
``{"session_token": ...}``.
"""

from __future__ import annotations

import re
from typing import Any

from agentplane.identity.v1 import identity_pb2 as pb
from flask import Blueprint, abort

from rest_facade import core
from rest_facade.coderjson import respond
from rest_facade.errors import error_response
from rest_facade.parse import INVALID_JSON, go_json_kind, read_json

bp = Blueprint("identity", __name__)

# Go's decoder turns unpaired UTF-16 surrogates into U+FFFD; protobuf strings
# must be valid UTF-8, so doing the same keeps such input a 4xx, not a 500.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _decode(go_type: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The body as Go would fill ``agentsdk.<go_type>``: missing or null fields
    stay empty, keys match case-insensitively, a non-string value is a 400."""
    body = read_json()
    if body is None:
        body = {}  # `null` leaves the struct at its zero value
    if not isinstance(body, dict):
        abort(
            error_response(
                400,
                INVALID_JSON,
                detail=f"json: cannot unmarshal {go_json_kind(body)} into Go value of type "
                f"agentsdk.{go_type}",
            )
        )
    values = dict.fromkeys(fields, "")
    by_fold = {name.casefold(): name for name in fields}
    for key, value in body.items():
        field = key if key in values else by_fold.get(key.casefold())
        if field is None or value is None:
            continue
        if not isinstance(value, str):
            abort(
                error_response(
                    400,
                    INVALID_JSON,
                    detail=f"json: cannot unmarshal {go_json_kind(value)} into Go struct field "
                    f"{go_type}.{field} of type string",
                )
            )
        values[field] = _LONE_SURROGATE.sub("\ufffd", value)
    return values


@bp.post("/workspaceagents/aws-instance-identity")
def aws_instance_identity() -> Any:
    body = _decode("AWSInstanceIdentityToken", ("signature", "document", "agent_name"))
    resp = core().call(
        core().identity.AuthenticateAWS, pb.AuthenticateAWSRequest(**body), token=None
    )
    return respond({"session_token": resp.session_token})


@bp.post("/workspaceagents/azure-instance-identity")
def azure_instance_identity() -> Any:
    body = _decode("AzureInstanceIdentityToken", ("signature", "encoding", "agent_name"))
    resp = core().call(
        core().identity.AuthenticateAzure, pb.AuthenticateAzureRequest(**body), token=None
    )
    return respond({"session_token": resp.session_token})


@bp.post("/workspaceagents/google-instance-identity")
def google_instance_identity() -> Any:
    body = _decode("GoogleInstanceIdentityToken", ("json_web_token", "agent_name"))
    resp = core().call(
        core().identity.AuthenticateGoogle, pb.AuthenticateGoogleRequest(**body), token=None
    )
    return respond({"session_token": resp.session_token})
