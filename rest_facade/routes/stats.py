"""``POST /api/v2/workspaceagents/me/report-stats`` <-> ``coder.agent.v2.Agent/UpdateStats``.

Removed from Coder in favour of the RPC; kept as the legacy REST door. The
body is ``agentsdk.Stats`` JSON, decoded as Go decodes it (unknown keys
ignored, keys matched case-insensitively, a wrongly typed value is Coder's
400 "Request body must be valid JSON."); the answer is
``{"report_interval": <nanoseconds>}`` as the old route gave it.
"""

from __future__ import annotations

import math
from typing import Any

from coder.agent.v2 import agent_pb2
from flask import Blueprint, Response

from rest_facade import core
from rest_facade.coderjson import duration_ns, respond
from rest_facade.errors import error_response
from rest_facade.parse import INVALID_JSON, go_json_kind, read_json, session_token

bp = Blueprint("stats", __name__)

_INT_FIELDS = (
    "connection_count",
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "session_count_vscode",
    "session_count_jetbrains",
    "session_count_reconnecting_pty",
    "session_count_ssh",
)
METRIC_TYPE = {
    "counter": agent_pb2.Stats.Metric.Type.COUNTER,
    "gauge": agent_pb2.Stats.Metric.Type.GAUGE,
}
_INT64 = (-(2**63), 2**63 - 1)


class _BadJSON(Exception):
    pass


def _mismatch(value: object, field: str, go_type: str) -> _BadJSON:
    shown = go_json_kind(value)
    if shown == "number":
        # Go quotes the number as it was written (GoNumber keeps the text).
        shown = f"number {getattr(value, 'text', value)}"
    return _BadJSON(
        f"json: cannot unmarshal {shown} into Go struct field {field} of type {go_type}"
    )


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(value, field, "int64")
    if isinstance(value, float) and not value.is_integer():
        raise _mismatch(value, field, "int64")
    number = int(value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise _mismatch(value, field, "int64")
    return number


def _float(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _mismatch(value, field, "float64")
    return float(value)


def _str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(value, field, "string")
    return value


def _fields(obj: dict[str, Any]) -> dict[str, Any]:
    # Go matches JSON keys to struct fields case-insensitively; null is "unset".
    return {k.lower(): v for k, v in obj.items() if v is not None}


def _int_map(value: object, field: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _mismatch(value, field, "map[string]int64")
    return {k: _int(v, field) for k, v in value.items()}


def parse_stats(body: Any) -> agent_pb2.Stats:
    """agentsdk.Stats JSON -> the protobuf Stats; _BadJSON on a type error."""
    if body is None:
        return agent_pb2.Stats()
    if not isinstance(body, dict):
        raise _BadJSON(
            f"json: cannot unmarshal {go_json_kind(body)} into Go value of type agentsdk.Stats"
        )
    f = _fields(body)
    stats = agent_pb2.Stats()
    for name in _INT_FIELDS:
        if name in f:
            setattr(stats, name, _int(f[name], f"Stats.{name}"))
    if "connection_median_latency_ms" in f:
        stats.connection_median_latency_ms = _float(
            f["connection_median_latency_ms"], "Stats.connection_median_latency_ms"
        )
    if "connections_by_proto" in f:
        stats.connections_by_proto.update(
            _int_map(f["connections_by_proto"], "Stats.connections_by_proto")
        )
    if "session_counts" in f:
        stats.session_counts.update(_int_map(f["session_counts"], "Stats.session_counts"))
    metrics = f.get("metrics", [])
    if not isinstance(metrics, list):
        raise _mismatch(metrics, "Stats.metrics", "[]agentsdk.AgentMetric")
    for raw in metrics:
        if not isinstance(raw, dict):
            raise _mismatch(raw, "Stats.metrics", "agentsdk.AgentMetric")
        m = _fields(raw)
        metric_type = _str(m.get("type", ""), "AgentMetric.type")
        metric = stats.metrics.add(
            name=_str(m.get("name", ""), "AgentMetric.name"),
            # An unknown type word stays unspecified, as the agent SDK maps it.
            type=METRIC_TYPE.get(metric_type, agent_pb2.Stats.Metric.Type.TYPE_UNSPECIFIED),
            value=_float(m.get("value", 0), "AgentMetric.value"),
        )
        labels = m.get("labels", [])
        if not isinstance(labels, list):
            raise _mismatch(labels, "AgentMetric.labels", "[]agentsdk.AgentMetricLabel")
        for label in labels:
            if not isinstance(label, dict):
                raise _mismatch(label, "AgentMetric.labels", "agentsdk.AgentMetricLabel")
            lf = _fields(label)
            metric.labels.add(
                name=_str(lf.get("name", ""), "AgentMetricLabel.name"),
                value=_str(lf.get("value", ""), "AgentMetricLabel.value"),
            )
    return stats


@bp.post("/workspaceagents/me/report-stats")
def post_report_stats() -> Response:
    try:
        stats = parse_stats(read_json())
    except _BadJSON as err:
        return error_response(400, INVALID_JSON, detail=str(err))
    reply = core().call(
        core().agent.UpdateStats, agent_pb2.UpdateStatsRequest(stats=stats), token=session_token()
    )
    return respond({"report_interval": duration_ns(reply.report_interval)})
