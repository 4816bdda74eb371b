"""The core's Prometheus series.

``CoreMetrics`` holds a core's registry (one per core, so several cores in
one test process never share counters): RPCs by method and code with
latency histograms, open streams by method, agents with a live session on
this replica by status, log lines and bytes ingested and refused, and
Coder's agent-stats gauges (``coderd_agentstats_*``, labelled by agent, user
and workspace as coderd labels them). ``PROCESS_REGISTRY`` holds what is
counted where no core is at hand (database errors, in the error mapper).
Served by ``agentplane.metrics.v1.MetricsService`` to the facade's
``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

# From a fraction of a millisecond (cached reads) to the lock timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Process-wide series, counted where no core is at hand (the error mapper).
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
DATABASE_ERRORS = Counter(
    "agentplane_database_errors_total",
    "Database statements that failed an RPC: 'busy' (a lock wait timed out; the call "
    "answered UNAVAILABLE) or 'other' (INTERNAL).",
    ["kind"],
    registry=PROCESS_REGISTRY,
)


class CoreMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpcs = Counter(
            "agentplane_grpc_server_handled_total",
            "RPCs completed, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "agentplane_grpc_server_handling_seconds",
            "Time to answer a unary RPC (streams: time until the stream ended).",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.streams = Gauge(
            "agentplane_grpc_server_streams_open",
            "Streaming RPCs open now, by method (coordinate, log follow, tunnel, ...).",
            ["grpc_service", "grpc_method"],
            registry=r,
        )
        self.log_lines = Counter(
            "agentplane_agent_log_lines_total",
            "Agent log lines received, by outcome (stored, or refused: over the limit, "
            "a stale token, a bad batch).",
            ["outcome"],
            registry=r,
        )
        self.log_bytes = Counter(
            "agentplane_agent_log_bytes_total",
            "Agent log output bytes received, by outcome.",
            ["outcome"],
            registry=r,
        )
        stat = ["agent_name", "username", "workspace_name"]
        self.agentstats = {
            name: Gauge(f"coderd_agentstats_{name}", help_text, stat, registry=r)
            for name, help_text in (
                ("connection_count", "The number of established connections by agent."),
                ("connection_median_latency_seconds", "Median latency of agent connections."),
                ("rx_bytes", "Agent Rx bytes since its previous report."),
                ("tx_bytes", "Agent Tx bytes since its previous report."),
                ("session_count_jetbrains", "Number of JetBrains sessions."),
                ("session_count_reconnecting_pty", "Number of reconnecting PTY sessions."),
                ("session_count_ssh", "Number of SSH sessions."),
                ("session_count_vscode", "Number of VS Code sessions."),
            )
        }

    def watch_agents(self, count_by_status: Callable[[], dict[str, int]]) -> None:
        """Reports ``agentplane_agents_connected{status}`` from a callable read
        at scrape time (this replica's live agent sessions)."""

        class _Agents:
            def collect(self) -> Any:
                family = GaugeMetricFamily(
                    "agentplane_agents",
                    "Agents with a live session on this replica, by connection status.",
                    labels=["status"],
                )
                for status, count in sorted(count_by_status().items()):
                    family.add_metric([status], count)
                yield family

        self.registry.register(_Agents())

    def record_stats(self, *, agent: str, user: str, workspace: str, stats: Any) -> None:
        """An agent's UpdateStats report, as coderd's agent-stats gauges."""
        labels = (agent, user, workspace)
        g = self.agentstats
        g["connection_count"].labels(*labels).set(stats.connection_count)
        g["connection_median_latency_seconds"].labels(*labels).set(
            stats.connection_median_latency_ms / 1000
        )
        g["rx_bytes"].labels(*labels).set(stats.rx_bytes)
        g["tx_bytes"].labels(*labels).set(stats.tx_bytes)
        g["session_count_jetbrains"].labels(*labels).set(stats.session_count_jetbrains)
        g["session_count_reconnecting_pty"].labels(*labels).set(
            stats.session_count_reconnecting_pty
        )
        g["session_count_ssh"].labels(*labels).set(stats.session_count_ssh)
        g["session_count_vscode"].labels(*labels).set(stats.session_count_vscode)

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(PROCESS_REGISTRY)
