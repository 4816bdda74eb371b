"""UpdateStats: the agent reports network and session statistics.

Serves ``coder.agent.v2.Agent/UpdateStats`` (legacy REST
``POST me/report-stats``). The reply always carries the report interval; a
request without stats is how an agent asks for it and has no side effects.
A report is stored, and when any session is open (real use) the
workspace's ``last_used_at`` moves to the report's time. Both writes go
through a write-behind buffer (``StatsWriter``), as Coder batches them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from coder.agent.v2 import agent_pb2
from google.protobuf import duration_pb2

from server.agentapi.writebehind import WriteBehind
from server.clock import Clock
from server.storage import agentstatus
from server.storage import stats as stats_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database


def session_total(stats: agent_pb2.Stats) -> int:
    """Open sessions: the fixed per-client counters and (API 2.11+) the
    per-app map, whichever the agent fills."""
    legacy = (
        stats.session_count_vscode
        + stats.session_count_jetbrains
        + stats.session_count_reconnecting_pty
        + stats.session_count_ssh
    )
    return legacy + sum(stats.session_counts.values())


def _row(caller: AgentInWorkspace, stats: agent_pb2.Stats, now: dt.datetime) -> dict[str, Any]:
    return {
        "created_at": now,
        "agent_id": caller.agent.id,
        "workspace_id": caller.workspace.id,
        "user_id": caller.workspace.owner_id,
        "connections_by_proto": dict(stats.connections_by_proto),
        "connection_count": stats.connection_count,
        "connection_median_latency_ms": stats.connection_median_latency_ms,
        "rx_packets": stats.rx_packets,
        "rx_bytes": stats.rx_bytes,
        "tx_packets": stats.tx_packets,
        "tx_bytes": stats.tx_bytes,
        "session_count_vscode": stats.session_count_vscode,
        "session_count_jetbrains": stats.session_count_jetbrains,
        "session_count_reconnecting_pty": stats.session_count_reconnecting_pty,
        "session_count_ssh": stats.session_count_ssh,
        "session_counts": dict(stats.session_counts),
    }


@dataclasses.dataclass(frozen=True)
class StatsReport:
    row: dict[str, Any]
    # Set when the report shows use: the workspace it marks as used, and when.
    used_workspace: uuid.UUID | None
    used_at: dt.datetime | None = None


# Traffic since the agent's previous report (the agent sends deltas): two
# reports of one agent that wait together add up; everything else in a
# report is a reading at its time, and the newer one stands.
_DELTAS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


def _merge(old: StatsReport, new: StatsReport) -> StatsReport:
    row = dict(new.row)
    for name in _DELTAS:
        row[name] = old.row[name] + new.row[name]
    if new.used_workspace is not None:
        return StatsReport(row, new.used_workspace, new.used_at)
    return StatsReport(row, old.used_workspace, old.used_at)


def _report_key(report: StatsReport) -> uuid.UUID:
    return report.row["agent_id"]


class StatsWriter(WriteBehind[StatsReport]):
    """Buffers one report per agent: a report that waits behind another of
    the same agent (the database away, or two in one second) is merged
    into it, so the buffer's size is bounded by agents, not reports."""

    def __init__(self, db: Database) -> None:
        self._db = db
        super().__init__(
            "agent stats",
            self._write_reports,
            key=_report_key,
            merge=_merge,
            run_off_loop=db.offload,
        )

    def _write_reports(self, reports: Sequence[StatsReport]) -> None:
        used: dict[uuid.UUID, dt.datetime] = {}
        for r in reports:
            if r.used_workspace is not None and r.used_at is not None:
                used[r.used_workspace] = max(r.used_at, used.get(r.used_workspace, r.used_at))
        with self._db.engine.begin() as conn:
            stats_store.insert_stats(conn, rows=[r.row for r in reports])
            for workspace_id, at in used.items():
                agentstatus.bump_workspace_last_used(conn, workspace_id=workspace_id, now=at)


def update_stats(
    writer: StatsWriter,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.UpdateStatsRequest,
    report_interval: dt.timedelta,
) -> agent_pb2.UpdateStatsResponse:
    reply = agent_pb2.UpdateStatsResponse(
        report_interval=duration_pb2.Duration(seconds=int(report_interval.total_seconds()))
    )
    if not request.HasField("stats"):
        return reply
    now = clock.now()
    used = caller.workspace.id if session_total(request.stats) > 0 else None
    writer.add(
        StatsReport(
            row=_row(caller, request.stats, now),
            used_workspace=used,
            used_at=now if used is not None else None,
        )
    )
    return reply
