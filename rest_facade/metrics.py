"""Watching the facade run: Prometheus series and one access-log line per
request, fed by the HTTP front.

Requests are counted by route template (``/api/v2/workspaceagents/<agent:
agent_id>``, never the raw path: an attacker's paths must not grow the
series), method and status, with latency histograms; long-lived requests
(WebSockets, SSE, long polls) are counted while open and timed until they
end; connections are counted while open. The access log has method, route,
status, duration, caller kind and request id — never a token or a body.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access_log = logging.getLogger("agentplane.access")

# The key a Flask hook fills with the matched route's template.
ROUTE_KEY = "agentplane.route"
UNROUTED = "none"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Streams last minutes to days.
STREAM_BUCKETS = (1, 10, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600)


def caller_kind(path: str, has_token: bool) -> str:
    """Who a request is from, by the route class it targets (for logs and
    metrics only): an agent on ``me/...``, else a user, or nobody."""
    if not has_token:
        return "anonymous"
    if path.startswith("/api/v2/workspaceagents/me/"):
        return "agent"
    return "user"


class FacadeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "agentplane_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            "agentplane_http_request_seconds",
            "Time from a whole request to its whole answer (not for long-lived requests).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.streams = Gauge(
            "agentplane_http_streams_open",
            "Long-lived requests open now (WebSockets, Server-Sent Events, long polls), "
            "by route template.",
            ["route"],
            registry=r,
        )
        self.stream_seconds = Histogram(
            "agentplane_http_stream_seconds",
            "How long long-lived requests stayed open, by route template.",
            ["route"],
            buckets=STREAM_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "agentplane_http_connections_open", "Client connections open now.", registry=r
        )

    def answered(
        self,
        *,
        method: str,
        route: str,
        status: int,
        seconds: float,
        kind: str,
        request_id: str,
        stream: bool = False,
    ) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if stream:
            self.stream_seconds.labels(route).observe(seconds)
        else:
            self.seconds.labels(route, method).observe(seconds)
        access_log.info(
            "http %s %s %d %.1fms caller=%s request_id=%s",
            method,
            route,
            status,
            seconds * 1000,
            kind,
            request_id,
            extra={
                "http_method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "caller": kind,
                "request_id": request_id,
            },
        )

    def stream_opened(self, route: str) -> None:
        self.streams.labels(route).inc()

    def stream_closed(self, route: str) -> None:
        self.streams.labels(route).dec()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_of(environ: dict[str, Any]) -> str:
    return environ.get(ROUTE_KEY) or UNROUTED
