"""Settings: one frozen object for the whole process.

Precedence is flags > environment (``AGENTPLANE_*``) > defaults. Every flag of
``agentplane server`` has an environment twin named after it, e.g.
``--grpc-address`` and ``AGENTPLANE_GRPC_ADDRESS``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_HTTP_ADDRESS = "127.0.0.1:3000"
DEFAULT_GRPC_ADDRESS = "127.0.0.1:3001"
# Durations given in seconds stay below this (about 68 years), so that no
# timer, deadline or timestamp computed from one can overflow.
MAX_SECONDS = 2**31 - 1
# Coder's --agent-fallback-troubleshooting-url default (codersdk/deployment.go).
DEFAULT_TROUBLESHOOTING_URL = "https://coder.com/docs/v2/latest/templates/troubleshooting"
# Coder's httpapi body cap; larger bodies are refused with 413.
DEFAULT_MAX_BODY_BYTES = 4 << 20


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Go's strconv.ParseInt(s, 10, 64) grammar: an optional sign, ASCII digits.
# Python's int() also takes other scripts' digits (Arabic-Indic, fullwidth),
# surrounding whitespace and "_" separators; none of those is an integer to
# Coder, so none is one here.
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_int64(text: str) -> int | None:
    """The value of ``text`` as Go's strconv.ParseInt(text, 10, 64) reads
    it, or None where Go fails (not an integer, or outside int64)."""
    if not _GO_INT.fullmatch(text):
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def parse_float(text: str) -> float | None:
    """A decimal number in ASCII (Python's float() takes other scripts'
    digits, "inf", "nan" and "_"), or None."""
    return float(text) if _GO_FLOAT.fullmatch(text) else None


_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(w|d|h|m|s)")


def parse_retention(raw: str) -> dt.timedelta | None:
    """Coder's retention durations (Go's units plus d and w: ``7d``, ``2w``,
    ``36h``, ``1h30m``); zero (``0``, ``0d``) means no retention limit (None)."""
    text = raw.strip()
    if text == "0":
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise SettingsError(f"not a duration like 7d, 2w, 36h or 0: {raw!r}")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds > MAX_SECONDS:
        raise SettingsError(f"a duration of at most {MAX_SECONDS} seconds, not {raw!r}")
    return dt.timedelta(seconds=seconds) if seconds else None


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentplane"


@dataclasses.dataclass(frozen=True)
class Settings:
    http_address: str = DEFAULT_HTTP_ADDRESS
    grpc_address: str = DEFAULT_GRPC_ADDRESS
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    # Empty means SQLite in the data directory.
    database_url: str = ""
    derp_config: Path | None = None
    # The facade reaches the core here; empty means a Unix socket in data_dir.
    core_address: str = ""
    admin_token: str = ""
    access_url: str = ""
    hostname_suffix: str = "coder"
    disable_direct_connections: bool = False
    derp_force_websockets: bool = False
    # The embedded DERP relay at /derp (Coder's --derp-server-enable); off,
    # /derp is 404 and only an external --derp-config map makes sense.
    derp_server_enable: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Coder's AgentInactiveDisconnectTimeout (2 x the 15 s connection update).
    agent_inactive_timeout_seconds: int = 30
    # The facade's worker threads: they run views on whole requests only
    # (the HTTP front reads requests and carries long-lived connections on
    # its event loop), so they are never held by a slow client.
    facade_threads: int = 64
    # The HTTP front's bounds: a request's head must arrive within the
    # header timeout of its first byte and its body within the body timeout;
    # an idle keep-alive connection closes after the idle timeout; a client
    # that takes no answer bytes for the write timeout is dropped.
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_idle_timeout_seconds: float = 60.0
    http_write_timeout_seconds: float = 10.0
    http_max_connections: int = 15000
    # Long-lived requests (follows, terminals, coordination...) open at once,
    # in all and per session (token): past them 503 / 429.
    facade_max_streams: int = 12000
    facade_max_streams_per_session: int = 1000
    # Coder's per-agent cap on stored log output (bytes, counted before lines
    # are cut to 1024 characters).
    agent_logs_limit_bytes: int = 1 << 20
    # Log followers re-read on this timer too, in case a notification is lost.
    log_follow_repoll_seconds: float = 5.0
    # Coder's --workspace-agent-logs-retention: logs of agents of older builds
    # not connected for this long are purged (0 = never).
    workspace_agent_logs_retention: str = "7d"
    # Cloud instance-identity login (server/identity/). Unset trust files mean
    # the shipped AWS certificates / Azure roots; no Google keys means every
    # GCP login is refused. Max age 0 = AWS pendingTime not checked.
    aws_instance_identity_certs: Path | None = None
    aws_instance_identity_max_age: int = 0
    azure_instance_identity_roots: Path | None = None
    azure_instance_identity_intermediates: Path | None = None
    azure_instance_identity_fetch_intermediates: bool = False
    google_instance_identity_certs: Path | None = None
    google_instance_identity_audience: str = "coder"
    google_instance_identity_single_use: bool = False
    # Agent status (issue 4). UpdateStats answers with this report interval
    # (Coder's --agent-stats-refresh-interval, 30 s on a default server).
    agent_stats_report_interval_seconds: int = 30
    # External auth providers: a JSON or YAML list of {id, type, display_name,
    # regex}, synced into the database at startup; unset leaves it as it is.
    external_auth_config: Path | None = None
    # How long `me/external-auth?listen` waits for a token before a 408.
    external_auth_listen_timeout_seconds: int = 300
    # Announcement banners for agents: a JSON or YAML list of {enabled,
    # message, background_color}; unset means none.
    announcement_banners_file: Path | None = None
    # Server-Sent Events keep-alive (`me/reinit`); Coder pings every 15 s.
    sse_keepalive_seconds: int = 15
    # Log lines as text (a terminal) or JSON (log shippers).
    log_format: str = "text"
    # The gRPC address other replicas reach this one at (the replica
    # registry); empty means the gRPC listen address.
    replica_address: str = ""
    # Replica heartbeat period; 3 missed beats = dead (Coder's pgcoord: 2 s).
    replica_heartbeat_seconds: float = 2.0
    # Coder's --agent-fallback-troubleshooting-url: an agent's
    # troubleshooting_url when its template sets none (Coder's default).
    agent_fallback_troubleshooting_url: str = DEFAULT_TROUBLESHOOTING_URL

    def __post_init__(self) -> None:
        for name in ("http_address", "grpc_address"):
            value = getattr(self, name)
            host, sep, port = value.rpartition(":")
            number = parse_int64(port) if port.isascii() and port.isdigit() else None
            if not sep or not host or number is None or number > 65535:
                raise SettingsError(f"{name} must be HOST:PORT, got {value!r}")
        if self.database_url and not self.database_url.startswith(
            ("sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://")
        ):
            raise SettingsError(
                "database_url must be sqlite:///PATH or postgresql://..., "
                f"got {self.database_url!r}"
            )
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, got {self.log_format!r}")
        if self.max_body_bytes <= 0:
            raise SettingsError("max_body_bytes must be positive")
        for name in (
            "facade_threads",
            "http_max_connections",
            "facade_max_streams",
            "facade_max_streams_per_session",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in (
            "http_header_timeout_seconds",
            "http_body_timeout_seconds",
            "http_idle_timeout_seconds",
            "http_write_timeout_seconds",
        ):
            if not 0 < getattr(self, name) < 86400:
                raise SettingsError(f"{name} must be between 0 and 86400 seconds")
        if not 0 < self.agent_logs_limit_bytes < 2**31:
            # workspace_agents.logs_length is a 32-bit integer, as in Coder.
            raise SettingsError("agent_logs_limit_bytes must be between 1 and 2147483647")
        if not 0 < self.log_follow_repoll_seconds <= MAX_SECONDS:
            raise SettingsError(f"log_follow_repoll_seconds must be between 0 and {MAX_SECONDS}")
        if not 0 < self.replica_heartbeat_seconds <= 60:
            raise SettingsError("replica_heartbeat_seconds must be between 0 and 60")
        if self.replica_address:
            host, sep, port = self.replica_address.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise SettingsError(
                    f"replica_address must be HOST:PORT, got {self.replica_address!r}"
                )
        try:
            parse_retention(self.workspace_agent_logs_retention)
        except SettingsError as err:
            raise SettingsError(f"workspace_agent_logs_retention: {err}") from None
        if not self.agent_fallback_troubleshooting_url.startswith(("http://", "https://")):
            raise SettingsError("agent_fallback_troubleshooting_url must be an http(s) URL")
        if not self.google_instance_identity_audience.strip():
            raise SettingsError("google_instance_identity_audience must not be empty")
        for name in (
            "agent_stats_report_interval_seconds",
            "external_auth_listen_timeout_seconds",
            "sse_keepalive_seconds",
            "agent_inactive_timeout_seconds",
        ):
            if not 0 < getattr(self, name) <= MAX_SECONDS:
                raise SettingsError(f"{name} must be between 1 and {MAX_SECONDS}")
        if not 0 <= self.aws_instance_identity_max_age <= MAX_SECONDS:
            raise SettingsError(
                f"aws_instance_identity_max_age must be 0 (off) or at most {MAX_SECONDS}"
            )

    @property
    def agent_logs_retention(self) -> dt.timedelta | None:
        return parse_retention(self.workspace_agent_logs_retention)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'agentplane.db'}"

    @property
    def effective_core_address(self) -> str:
        if self.core_address:
            return self.core_address
        return f"unix:{self.data_dir / 'core.sock'}"

    @property
    def effective_access_url(self) -> str:
        return (self.access_url or f"http://{self.http_address}").rstrip("/")

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin-token"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    kind = _FIELDS[name].type
    if not isinstance(raw, str):
        return raw
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name} must be a boolean, got {raw!r}")
    if kind == "int":
        number = parse_int64(raw.strip())
        if number is None:
            raise SettingsError(f"{name} must be an integer, got {raw!r}")
        return number
    if kind == "float":
        value = parse_float(raw.strip())
        if value is None:
            raise SettingsError(f"{name} must be a number, got {raw!r}")
        return value
    if kind in ("Path", "Path | None"):
        return Path(raw).expanduser() if raw else None
    return raw


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Builds Settings from flags (None = not given) over AGENTPLANE_* env."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in _FIELDS:
        env_value = environ.get(f"AGENTPLANE_{name.upper()}")
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    for name, value in (flags or {}).items():
        if name not in _FIELDS:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, value)
    if values.get("data_dir") is None:
        values.pop("data_dir", None)
    return Settings(**values)
