from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from server.config import DEFAULT_GRPC_ADDRESS, SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings({}, environ={})
    assert s.grpc_address == DEFAULT_GRPC_ADDRESS
    assert s.http_address == "127.0.0.1:3000"
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_core_address == f"unix:{s.data_dir / 'core.sock'}"


def test_flags_beat_env_beat_defaults(tmp_path: Path) -> None:
    env = {
        "AGENTPLANE_GRPC_ADDRESS": "127.0.0.1:5001",
        "AGENTPLANE_HTTP_ADDRESS": "127.0.0.1:5000",
        "AGENTPLANE_DATA_DIR": str(tmp_path),
    }
    s = load_settings({"grpc_address": "127.0.0.1:6001", "http_address": None}, environ=env)
    assert s.grpc_address == "127.0.0.1:6001"
    assert s.http_address == "127.0.0.1:5000"
    assert s.data_dir == tmp_path


def test_bool_and_int_env() -> None:
    s = load_settings(
        {},
        environ={
            "AGENTPLANE_DISABLE_DIRECT_CONNECTIONS": "true",
            "AGENTPLANE_MAX_BODY_BYTES": "1024",
        },
    )
    assert s.disable_direct_connections is True
    assert s.max_body_bytes == 1024


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"AGENTPLANE_GRPC_ADDRESS": "nope"}, "grpc_address"),
        ({"AGENTPLANE_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"AGENTPLANE_MAX_BODY_BYTES": "lots"}, "max_body_bytes"),
        ({"AGENTPLANE_DISABLE_DIRECT_CONNECTIONS": "maybe"}, "disable_direct_connections"),
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "7"}, "workspace_agent_logs_retention"),
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "-1d"}, "workspace_agent_logs_retention"),
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "7x"}, "workspace_agent_logs_retention"),
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "1d 2h"}, "workspace_agent_logs_retention"),
        # Numbers are Go's: ASCII digits only, within range (Python's int()
        # and float() take other scripts' digits, "_" and "inf").
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "\u0667d"}, "logs_retention"),
        ({"AGENTPLANE_WORKSPACE_AGENT_LOGS_RETENTION": "99999999999999w"}, "logs_retention"),
        ({"AGENTPLANE_MAX_BODY_BYTES": "\u0663"}, "max_body_bytes"),
        ({"AGENTPLANE_MAX_BODY_BYTES": "\uff13"}, "max_body_bytes"),
        ({"AGENTPLANE_MAX_BODY_BYTES": "1_000"}, "max_body_bytes"),
        ({"AGENTPLANE_MAX_BODY_BYTES": "9223372036854775808"}, "max_body_bytes"),
        ({"AGENTPLANE_LOG_FOLLOW_REPOLL_SECONDS": "inf"}, "log_follow_repoll_seconds"),
        ({"AGENTPLANE_LOG_FOLLOW_REPOLL_SECONDS": "1e300"}, "log_follow_repoll_seconds"),
        ({"AGENTPLANE_HTTP_ADDRESS": "127.0.0.1:\u0663\u0660\u0660\u0660"}, "http_address"),
        ({"AGENTPLANE_AGENT_INACTIVE_TIMEOUT_SECONDS": "0"}, "agent_inactive_timeout"),
        ({"AGENTPLANE_AGENT_INACTIVE_TIMEOUT_SECONDS": "99999999999"}, "agent_inactive_timeout"),
        ({"AGENTPLANE_SSE_KEEPALIVE_SECONDS": "99999999999"}, "sse_keepalive_seconds"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        load_settings({}, environ=env)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7d", dt.timedelta(days=7)),
        ("2w", dt.timedelta(weeks=2)),
        ("36h", dt.timedelta(hours=36)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("1.5d", dt.timedelta(hours=36)),
        ("45s", dt.timedelta(seconds=45)),
        ("0", None),
        ("0d", None),
        ("0s", None),
    ],
)
def test_logs_retention_takes_coders_durations(raw: str, expected: dt.timedelta | None) -> None:
    s = load_settings({"workspace_agent_logs_retention": raw}, environ={})
    assert s.agent_logs_retention == expected


def test_logs_retention_defaults_to_a_week() -> None:
    assert load_settings({}, environ={}).agent_logs_retention == dt.timedelta(days=7)
