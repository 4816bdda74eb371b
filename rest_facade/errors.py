"""gRPC status -> HTTP status + Coder's error envelope. Written once.

The core puts Coder's ``detail`` in a ``google.rpc.ErrorInfo`` and its
``validations`` in a ``google.rpc.BadRequest``; this module unpacks them into
``{"message", "detail", "validations": [{"field", "detail"}]}``.
"""

from __future__ import annotations

from typing import Any

import grpc
from flask import Response
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rest_facade.coderjson import respond

# One table. FAILED_PRECONDITION is 400 because Coder answers 400 for
# "Agent state is ..." style preconditions.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}
# ErrorInfo reasons that refine the table where one gRPC code covers two
# HTTP answers.
REASON_STATUS = {"RATE_LIMITED": 429}
# Set on every 401, as coderd's httpmw does.
WWW_AUTHENTICATE = 'Coder-Session-Token realm="coder"'


def envelope(message: str, detail: str = "", validations: Any = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if detail:
        body["detail"] = detail
    if validations:
        body["validations"] = [{"field": f, "detail": d} for f, d in validations]
    return body


def error_response(status: int, message: str, detail: str = "", validations: Any = ()) -> Response:
    return respond(envelope(message, detail, validations), status)


def from_rpc_error(err: grpc.RpcError) -> tuple[int, dict[str, Any]]:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else ""
    detail = ""
    validations: list[tuple[str, str]] = []
    reason = ""
    status = rpc_status.from_call(err) if hasattr(err, "trailing_metadata") else None
    if status is not None:
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                detail = info.metadata.get("detail", "")
                reason = info.reason
            elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                validations = [(v.field, v.description) for v in bad.field_violations]
    http = REASON_STATUS.get(reason) or HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.UNAVAILABLE and not message.startswith("agentplane"):
        message = "The agentplane core is unavailable."
    if http == 500 and status is None:
        message = "An internal error occurred."
    return http, envelope(message or "An internal error occurred.", detail, validations)


def rpc_error_response(err: grpc.RpcError) -> Response:
    status, body = from_rpc_error(err)
    resp = respond(body, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return resp
