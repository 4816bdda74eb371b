"""``GET /metrics`` <-> ``agentplane.metrics.v1.MetricsService/GetMetrics``:
Prometheus' text format, the core's series followed by the facade's own.
Only an owner reads it (Coder-Session-Token, cookie or ``Authorization:
Bearer``, as for any route): the series name users, workspaces and agents."""

from __future__ import annotations

from agentplane.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from flask import Blueprint, Response, current_app

from rest_facade import core
from rest_facade.parse import session_token

bp = Blueprint("metrics", __name__)

EXTENSION = "agentplane.metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/metrics")
def get_metrics() -> Response:
    client = core()
    stub = client.stub(metrics_pb2_grpc.MetricsServiceStub)
    resp = client.call(stub.GetMetrics, metrics_pb2.GetMetricsRequest(), token=session_token())
    body = resp.exposition
    facade = current_app.extensions.get(EXTENSION)
    if facade is not None:
        body += facade.exposition()
    return Response(body, content_type=CONTENT_TYPE)
