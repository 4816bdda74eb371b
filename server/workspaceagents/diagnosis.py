"""Why is my agent stuck? — the step an agent is waiting on (beyond Coder,
which answers only "connecting"; cf. coder/coder#28759).

Serves ``agentplane.workspaceagents.v1.WorkspaceAgentsService/GetWorkspaceAgentDiagnosis``
(REST ``GET /api/v2/workspaceagents/{id}/diagnosis``, agentplane's own).

It also keeps the one clue nothing else records: ``TokenRefusals.record`` is
called by the authenticator whenever an agent token is refused, and when the
token belongs to a known agent — of an older build, or of a deleted
workspace — it stores why, so the diagnosis can say "your agent is running
with the previous build's token".
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from typing import Any

from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
from coder.tailnet.v2 import tailnet_pb2

from server.clock import Clock, as_utc
from server.prototime import to_timestamp
from server.storage import agentdiagnostics, scripttimings, tailnettelemetry
from server.storage.db import Database
from server.workspaceagents.agents import readable_agent
from server.workspaceagents.status import SHUTTING_DOWN, connection_status

log = logging.getLogger(__name__)

# Refusals counted but not yet written, per token (bounded: a flood of
# random tokens never reaches here, as unknown tokens are not counted).
_MAX_PENDING_TOKENS = 10_000


def refusal_reason(row: Any) -> str | None:
    """Why a known agent's token no longer authenticates (None: it would)."""
    if row.workspace_deleted:
        return f"the workspace was deleted (its last build is {row.latest_build_number})"
    if row.deleted:
        return f"the agent was removed from build {row.build_number}"
    if row.latest_build_number is not None and row.build_number < row.latest_build_number:
        return (
            f"the token belongs to build {row.build_number}, but the workspace's latest "
            f"build is {row.latest_build_number}; restart the agent with the token of the "
            "latest build"
        )
    return None


class TokenRefusals:
    """Records refused tokens of known agents: every refusal is counted; the
    write never waits for a lock (``Database.try_write``), and refusals it
    could not write are added to the next one."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}

    async def record(self, token_hash: str) -> None:
        now = self._clock.now()
        try:
            with self._db.read() as conn:
                row = agentdiagnostics.find_agent_by_token_hash(conn, token_hash=token_hash)
            reason = refusal_reason(row) if row is not None else None
            if reason is None:
                return
            with self._lock:
                attempts = self._pending.pop(token_hash, 0) + 1
            write = functools.partial(
                agentdiagnostics.record_rejection,
                agent_id=row.id,
                workspace_id=row.workspace_id,
                agent_name=row.name,
                build_number=row.build_number,
                reason=reason,
                now=now,
                attempts=attempts,
            )
            if not await self._db.try_write(write, key=row.id):
                with self._lock:
                    if len(self._pending) >= _MAX_PENDING_TOKENS:
                        self._pending.clear()
                    self._pending[token_hash] = self._pending.get(token_hash, 0) + attempts
        except Exception:
            # A clue, not a requirement: the caller's 401 must not turn into a 500.
            log.exception("recording a refused agent token failed")


def _netcheck_summary(row: Any, derp: Any) -> pb.NetcheckSummary:
    """What the agent's last netcheck says: its preferred DERP region and
    whether UDP (direct connections) works."""
    report = tailnet_pb2.Netcheck.FromString(row.netcheck)
    summary = pb.NetcheckSummary(
        reported_at=to_timestamp(as_utc(row.netcheck_time)),
        preferred_derp=report.PreferredDERP,
        udp=report.UDP,
        ipv4=report.IPv4,
        ipv6=report.IPv6,
    )
    if report.PreferredDERP:
        regions = derp.proto().regions if derp is not None else {}
        region = regions.get(report.PreferredDERP) if report.PreferredDERP in regions else None
        summary.preferred_derp_name = (
            region.region_name if region is not None else f"Unnamed {report.PreferredDERP}"
        )
    return summary


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(now: dt.datetime, then: dt.datetime) -> int:
    return max(0, int((now - then).total_seconds()))


def get_workspace_agent_diagnosis(
    db: Database,
    clock: Clock,
    *,
    user: Any,
    agent_id_text: str,
    inactive_timeout: dt.timedelta,
    derp: Any = None,
) -> pb.Diagnosis:
    found = readable_agent(db, user=user, agent_id_text=agent_id_text)
    agent = found.agent
    now = clock.now()
    conn_status = connection_status(agent, now=now, inactive_timeout=inactive_timeout)
    status, lifecycle = conn_status.status, agent.lifecycle_state
    created_at = as_utc(agent.created_at)
    started_at = as_utc(agent.started_at)
    ready_at = as_utc(agent.ready_at)
    last_connected = as_utc(agent.last_connected_at)
    out = pb.Diagnosis(
        agent_id=str(agent.id),
        status=status,
        lifecycle_state=lifecycle,
        build_number=found.build.build_number,
        created_at=to_timestamp(created_at),
        first_connected_at=to_timestamp(agent.first_connected_at),
        last_connected_at=to_timestamp(last_connected),
        disconnected_at=to_timestamp(conn_status.disconnected_at),
        last_connected_replica_id=str(agent.last_connected_replica_id or ""),
    )
    with db.read() as conn:
        refusal = agentdiagnostics.newest_rejection_for_agent_name(
            conn,
            workspace_id=found.workspace.id,
            agent_name=agent.name,
            since=created_at,
            max_build=found.build.build_number,
        )
        timings = (
            scripttimings.list_timings_since(
                conn, agent_id=agent.id, stage="start", since=started_at
            )
            if started_at is not None
            else []
        )
        scripts = db.agent_views.children(conn, agent).scripts
        telemetry = tailnettelemetry.get_telemetry(conn, peer_id=agent.id)
    if telemetry is not None and telemetry.netcheck is not None:
        out.netcheck.CopyFrom(_netcheck_summary(telemetry, derp))
    if refusal is not None:
        out.token_rejection.CopyFrom(
            pb.TokenRejection(
                rejected_at=to_timestamp(refusal.rejected_at),
                reason=refusal.reason,
                build_number=refusal.build_number,
                attempts=refusal.attempts,
            )
        )
    since = {
        "created": created_at,
        "starting": started_at,
        "ready": ready_at,
        "start_timeout": ready_at,
        "start_error": ready_at,
    }.get(lifecycle)
    if since is not None:
        out.state_since.CopyFrom(to_timestamp(since))
        out.state_seconds = _ago(now, since)
    completed = {t.script_id for t in timings}
    if lifecycle == "starting":
        out.pending_scripts.extend(
            s.display_name for s in scripts if s.run_on_start and s.id not in completed
        )
    out.failed_scripts.extend(
        pb.ScriptFailure(display_name=t.display_name, exit_code=t.exit_code, status=t.status)
        for t in timings
        if t.status != "ok" or t.exit_code != 0
    )
    out.waiting_on, out.summary = _verdict(out, now=now, agent=agent, refusal=refusal)
    return out


def _verdict(out: pb.Diagnosis, *, now: dt.datetime, agent: Any, refusal: Any) -> tuple[str, str]:
    status, lifecycle = out.status, out.lifecycle_state
    build = out.build_number
    created = as_utc(agent.created_at)
    if status in ("connecting", "timeout"):
        since = f"since build {build} was created at {_when(created)} ({_ago(now, created)} s ago)"
        if refusal is not None:
            return "token", (
                f"The agent has not connected {since}: a connection attempt at "
                f"{_when(as_utc(refusal.rejected_at))} was refused because {refusal.reason}."
            )
        late = (
            f"; its connection timeout of {agent.connection_timeout_seconds} s has passed"
            if status == "timeout"
            else ""
        )
        return "connect", (
            f"The agent has never connected {since}{late}. Check that the agent process "
            "is running and can reach this server."
        )
    if status == "disconnected":
        last = as_utc(agent.last_connected_at)
        where = (
            f" on replica {out.last_connected_replica_id}" if out.last_connected_replica_id else ""
        )
        seen = f"{_when(last)} ({_ago(now, last)} s ago){where}" if last else "never"
        text = f"The agent lost its connection; it was last seen at {seen}."
        if refusal is not None and last is not None and as_utc(refusal.rejected_at) > last:
            text += (
                f" A later connection attempt at {_when(as_utc(refusal.rejected_at))} was "
                f"refused because {refusal.reason}."
            )
            return "token", text
        return ("" if lifecycle == "off" else "reconnect"), text
    if lifecycle == "created":
        return "lifecycle", "The agent is connected but has not reported a lifecycle state yet."
    if lifecycle == "starting":
        waited = f"The agent has been starting for {out.state_seconds} s"
        if out.pending_scripts:
            names = ", ".join(f'"{n}"' for n in out.pending_scripts)
            return "startup_scripts", f"{waited}; waiting on startup script(s) {names}."
        return "startup_scripts", f"{waited}; every startup script has reported, ready is next."
    if lifecycle == "start_error":
        failed = "; ".join(
            f'"{f.display_name}" exited with {f.exit_code} ({f.status})' for f in out.failed_scripts
        )
        return "", "Startup failed" + (f": {failed}." if failed else ".")
    if lifecycle == "start_timeout":
        return "", "Startup scripts timed out; the agent is usable but may be incomplete."
    if lifecycle in SHUTTING_DOWN:
        return "", "The agent is shutting down."
    if lifecycle == "off":
        return "", "The agent is off."
    return "", "The agent is connected and ready."
