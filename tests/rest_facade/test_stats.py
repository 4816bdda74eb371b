"""POST me/report-stats: agentsdk.Stats in, the interval in nanoseconds out."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlmodel import select

from server.storage.stats import WorkspaceAgentStat
from server.storage.workspaces import Workspace

PATH = "/api/v2/workspaceagents/me/report-stats"


def _post(rest, token: str, body=None, *, raw: str | None = None):
    headers = {"Coder-Session-Token": token}
    if raw is not None:
        return rest.post(PATH, data=raw, headers=headers)
    return rest.post(PATH, json=body, headers=headers)


def test_report_and_interval(db, clock, core, rest, provision) -> None:
    ws = provision.workspace()
    clock.advance(seconds=7)
    resp = _post(
        rest,
        ws.agent("main").auth_token,
        {
            "Connection_Count": 1,  # Go matches keys case-insensitively
            "connections_by_proto": {"ssh": 1},
            "connection_median_latency_ms": 3.5,
            "rx_bytes": 10,
            "tx_bytes": 20,
            "rx_packets": 1,
            "tx_packets": 2,
            "session_count_vscode": 1,
            "metrics": [
                {
                    "name": "m",
                    "type": "gauge",
                    "value": 1.5,
                    "labels": [{"name": "k", "value": "v"}],
                }
            ],
            "unknown_field": "ignored",
        },
    )
    assert resp.status_code == 200 and resp.get_json() == {"report_interval": 30_000_000_000}
    core.core.reports.flush()
    with db.session() as s:
        (row,) = s.exec(select(WorkspaceAgentStat)).all()
        last_used = s.get(Workspace, uuid.UUID(ws.workspace_id)).last_used_at
    assert (row.connection_count, row.rx_bytes, row.session_count_vscode) == (1, 10, 1)
    assert row.connections_by_proto == {"ssh": 1} and last_used is not None


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (
            '{"rx_bytes": "10"}',
            "json: cannot unmarshal string into Go struct field Stats.rx_bytes of type int64",
        ),
        (
            '{"rx_bytes": 1.5}',
            "json: cannot unmarshal number 1.5 into Go struct field Stats.rx_bytes of type int64",
        ),
        (
            '{"connections_by_proto": []}',
            "json: cannot unmarshal array into Go struct field Stats.connections_by_proto "
            "of type map[string]int64",
        ),
        ("[]", "json: cannot unmarshal array into Go value of type agentsdk.Stats"),
        # Numbers Go's int64 / float64 cannot hold: 400s, quoted as written.
        (
            '{"rx_bytes": 9223372036854775808}',
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "Stats.rx_bytes of type int64",
        ),
        (
            '{"tx_packets": 1e20}',
            "json: cannot unmarshal number 1e20 into Go struct field "
            "Stats.tx_packets of type int64",
        ),
        (
            '{"connection_median_latency_ms": 1e400}',
            "json: cannot unmarshal number 1e400 into Go struct field "
            "Stats.connection_median_latency_ms of type float64",
        ),
    ],
)
def test_type_errors_are_coder_400s(db, core, rest, provision, raw, detail) -> None:
    resp = _post(rest, provision.workspace().agent("main").auth_token, raw=raw)
    assert resp.status_code == 400
    assert resp.get_json() == {"message": "Request body must be valid JSON.", "detail": detail}
    core.core.reports.flush()
    with db.session() as s:
        assert s.exec(select(WorkspaceAgentStat)).all() == []


def test_needs_an_agent_token(rest, provision) -> None:
    resp = _post(rest, provision.workspace().api_key, {})
    assert resp.status_code == 401


class TestConfigured:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, agent_stats_report_interval_seconds=12)

    def test_interval_in_nanoseconds(self, rest, provision) -> None:
        resp = _post(rest, provision.workspace().agent("main").auth_token, {})
        assert resp.get_json() == {"report_interval": 12_000_000_000}
