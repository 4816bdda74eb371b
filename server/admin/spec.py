"""The workspace spec: resources -> agents (-> children), validated as a whole.

A spec is JSON (the CLI also reads YAML). Validation collects every problem
with the path of the field it concerns (``resources[0].agents[1].apps[0].slug``)
before anything is written, so a bad spec writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from server.errors import InvalidArgument
from server.storage.agents import AUTH_KINDS, AUTH_TOKEN
from server.storage.apps import OPEN_IN, SHARING_LEVELS

# Coder's name rule for users, workspaces and agents (a DNS-label-like word).
NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
# Coder's app slug rule.
SLUG_RE = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
DISPLAY_APPS = ("vscode", "vscode_insiders", "web_terminal", "ssh_helper", "port_forwarding_helper")
# What Coder shows when a template says nothing about display apps.
DEFAULT_DISPLAY_APPS = ("vscode", "web_terminal", "ssh_helper", "port_forwarding_helper")
STARTUP_BEHAVIORS = ("blocking", "non-blocking")
MAX_NAME = 64
MAX_METADATA_KEY = 127


@dataclasses.dataclass(frozen=True)
class HealthcheckSpec:
    url: str
    interval: int
    threshold: int


@dataclasses.dataclass(frozen=True)
class AppSpec:
    slug: str
    display_name: str
    icon: str
    command: str
    url: str
    external: bool
    subdomain: bool
    sharing_level: str
    open_in: str
    group: str
    hidden: bool
    tooltip: str
    order: int
    healthcheck: HealthcheckSpec | None


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    display_name: str
    icon: str
    script: str
    cron: str
    log_path: str
    run_on_start: bool
    run_on_stop: bool
    start_blocks_login: bool
    timeout_seconds: int


@dataclasses.dataclass(frozen=True)
class MetadataSpec:
    key: str
    display_name: str
    script: str
    interval: int
    timeout: int
    order: int


@dataclasses.dataclass(frozen=True)
class MonitorSpec:
    enabled: bool
    # Percent in use that counts as "not OK".
    threshold: int
    # Volumes only: the mount path the agent samples.
    path: str = ""


@dataclasses.dataclass(frozen=True)
class ResourcesMonitoringSpec:
    """Terraform's ``coder_agent.resources_monitoring`` block."""

    memory: MonitorSpec | None
    volumes: tuple[MonitorSpec, ...]


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    name: str
    os: str
    architecture: str
    directory: str
    env: dict[str, str]
    auth: str
    instance_id: str | None
    connection_timeout_seconds: int
    troubleshooting_url: str
    motd_file: str
    display_apps: tuple[str, ...]
    order: int
    apps: tuple[AppSpec, ...]
    scripts: tuple[ScriptSpec, ...]
    metadata: tuple[MetadataSpec, ...]
    children: tuple[AgentSpec, ...]
    resources_monitoring: ResourcesMonitoringSpec | None = None


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    name: str
    type: str
    agents: tuple[AgentSpec, ...]


@dataclasses.dataclass(frozen=True)
class WorkspaceSpec:
    resources: tuple[ResourceSpec, ...]


class _Reader:
    """Reads typed fields from a JSON object, recording problems by path."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, detail: str) -> None:
        self.problems.append((path, detail))

    def obj(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "spec", "must be an object")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else key, "unknown field")
        return value

    def list(self, obj: dict[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key, [])
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{path}.{key}" if path else key, "must be a list")
            return []
        return value

    def str(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        default: str = "",
        required: bool = False,
        max_len: int | None = None,
    ) -> str:
        where = f"{path}.{key}" if path else key
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(where, "is required")
            return default
        if not isinstance(value, str):
            self.fail(where, "must be a string")
            return default
        if required and not value.strip():
            self.fail(where, "must not be empty")
        if max_len is not None and len(value) > max_len:
            self.fail(where, f"must be at most {max_len} characters")
        return value

    def bool(self, obj: dict[str, Any], key: str, path: str, *, default: bool = False) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", "must be true or false")
            return default
        return value

    def int(
        self, obj: dict[str, Any], key: str, path: str, *, default: int = 0, minimum: int = 0
    ) -> int:
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{key}", "must be an integer")
            return default
        if value < minimum:
            self.fail(f"{path}.{key}", f"must be >= {minimum}")
        if value > 2**31 - 1:
            self.fail(f"{path}.{key}", "is too large")
        return value

    def choice(
        self, obj: dict[str, Any], key: str, path: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = self.str(obj, key, path, default=default)
        if value not in choices:
            self.fail(f"{path}.{key}", f"must be one of: {', '.join(choices)}")
        return value

    def name(self, obj: dict[str, Any], key: str, path: str) -> str:
        value = self.str(obj, key, path, required=True, max_len=MAX_NAME)
        if value and not NAME_RE.match(value):
            self.fail(f"{path}.{key}", "must be letters, digits and inner hyphens")
        return value


_APP_FIELDS = {
    "slug",
    "display_name",
    "icon",
    "command",
    "url",
    "external",
    "subdomain",
    "sharing_level",
    "open_in",
    "group",
    "hidden",
    "tooltip",
    "order",
    "healthcheck",
}
_SCRIPT_FIELDS = {
    "display_name",
    "icon",
    "script",
    "cron",
    "log_path",
    "run_on_start",
    "run_on_stop",
    "start_blocks_login",
    "timeout_seconds",
}
_METADATA_FIELDS = {"key", "display_name", "script", "interval", "timeout", "order"}
_AGENT_FIELDS = {
    "name",
    "os",
    "architecture",
    "directory",
    "env",
    "auth",
    "instance_id",
    "connection_timeout_seconds",
    "troubleshooting_url",
    "motd_file",
    "startup_script_behavior",
    "display_apps",
    "order",
    "apps",
    "scripts",
    "metadata",
    "children",
    "resources_monitoring",
}


def _app(r: _Reader, raw: Any, path: str) -> AppSpec:
    o = r.obj(raw, path, _APP_FIELDS)
    slug = r.str(o, "slug", path, required=True, max_len=MAX_NAME)
    if slug and not SLUG_RE.match(slug):
        r.fail(f"{path}.slug", "must be lowercase letters, digits and single inner hyphens")
    healthcheck = None
    if o.get("healthcheck") is not None:
        hpath = f"{path}.healthcheck"
        h = r.obj(o["healthcheck"], hpath, {"url", "interval", "threshold"})
        healthcheck = HealthcheckSpec(
            url=r.str(h, "url", hpath, required=True),
            interval=r.int(h, "interval", hpath, default=5, minimum=1),
            threshold=r.int(h, "threshold", hpath, default=3, minimum=1),
        )
    return AppSpec(
        slug=slug,
        display_name=r.str(o, "display_name", path, default=slug, max_len=MAX_NAME),
        icon=r.str(o, "icon", path),
        command=r.str(o, "command", path),
        url=r.str(o, "url", path),
        external=r.bool(o, "external", path),
        subdomain=r.bool(o, "subdomain", path),
        sharing_level=r.choice(o, "sharing_level", path, SHARING_LEVELS, "owner"),
        open_in=r.choice(o, "open_in", path, OPEN_IN, "slim-window"),
        group=r.str(o, "group", path, max_len=255),
        hidden=r.bool(o, "hidden", path),
        tooltip=r.str(o, "tooltip", path),
        order=r.int(o, "order", path, minimum=-(2**31)),
        healthcheck=healthcheck,
    )


def _script(r: _Reader, raw: Any, path: str, blocking_default: bool) -> ScriptSpec:
    o = r.obj(raw, path, _SCRIPT_FIELDS)
    run_on_start = r.bool(o, "run_on_start", path)
    return ScriptSpec(
        display_name=r.str(o, "display_name", path, required=True, max_len=127),
        icon=r.str(o, "icon", path),
        script=r.str(o, "script", path, required=True),
        cron=r.str(o, "cron", path, max_len=255),
        log_path=r.str(o, "log_path", path),
        run_on_start=run_on_start,
        run_on_stop=r.bool(o, "run_on_stop", path),
        start_blocks_login=r.bool(
            o, "start_blocks_login", path, default=blocking_default and run_on_start
        ),
        timeout_seconds=r.int(o, "timeout_seconds", path),
    )


def _metadata(r: _Reader, raw: Any, path: str) -> MetadataSpec:
    o = r.obj(raw, path, _METADATA_FIELDS)
    key = r.str(o, "key", path, required=True, max_len=MAX_METADATA_KEY)
    return MetadataSpec(
        key=key,
        display_name=r.str(o, "display_name", path, default=key, max_len=127),
        script=r.str(o, "script", path, required=True),
        interval=r.int(o, "interval", path, default=10),
        timeout=r.int(o, "timeout", path, default=5),
        order=r.int(o, "order", path, minimum=-(2**31)),
    )


def _monitor(r: _Reader, raw: Any, path: str, *, volume: bool) -> MonitorSpec:
    o = r.obj(raw, path, {"enabled", "threshold", "path"} if volume else {"enabled", "threshold"})
    threshold = r.int(o, "threshold", path, default=0)
    if threshold > 100:
        r.fail(f"{path}.threshold", "must be a percentage (0-100)")
    monitor_path = r.str(o, "path", path, required=volume, max_len=1024) if volume else ""
    if volume and monitor_path and not monitor_path.startswith("/"):
        r.fail(f"{path}.path", "must be an absolute path")
    return MonitorSpec(
        enabled=r.bool(o, "enabled", path, default=True), threshold=threshold, path=monitor_path
    )


def _resources_monitoring(r: _Reader, raw: Any, path: str) -> ResourcesMonitoringSpec | None:
    if raw is None:
        return None
    o = r.obj(raw, path, {"memory", "volumes"})
    memory = (
        _monitor(r, o["memory"], f"{path}.memory", volume=False)
        if o.get("memory") is not None
        else None
    )
    volumes = tuple(
        _monitor(r, v, f"{path}.volumes[{i}]", volume=True)
        for i, v in enumerate(r.list(o, "volumes", path))
    )
    _unique(r, [v.path for v in volumes], f"{path}.volumes", "path")
    return ResourcesMonitoringSpec(memory=memory, volumes=volumes)


def _unique(r: _Reader, values: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value and value in seen:
            r.fail(f"{path}[{i}]", f"duplicate {what} {value!r}")
        seen.add(value)


def _agent(r: _Reader, raw: Any, path: str, *, child: bool) -> AgentSpec:
    o = r.obj(raw, path, _AGENT_FIELDS)
    auth = r.choice(o, "auth", path, AUTH_KINDS, AUTH_TOKEN)
    instance_id = o.get("instance_id")
    if auth != AUTH_TOKEN:
        if child:
            r.fail(f"{path}.auth", "sub-agents authenticate with a token")
        instance_id = r.str(o, "instance_id", path, required=True, max_len=255).strip()
    elif instance_id is not None:
        r.fail(f"{path}.instance_id", "is only valid with an instance-identity auth")
        instance_id = None
    env_raw = o.get("env", {}) or {}
    env: dict[str, str] = {}
    if not isinstance(env_raw, dict):
        r.fail(f"{path}.env", "must be an object of strings")
    else:
        for k, v in env_raw.items():
            if not isinstance(v, str):
                r.fail(f"{path}.env.{k}", "must be a string")
            else:
                env[str(k)] = v
    behavior = r.choice(o, "startup_script_behavior", path, STARTUP_BEHAVIORS, "non-blocking")
    display_raw = o.get("display_apps")
    display_apps: tuple[str, ...] = DEFAULT_DISPLAY_APPS
    if display_raw is not None:
        if not isinstance(display_raw, list):
            r.fail(f"{path}.display_apps", "must be a list")
        else:
            for i, item in enumerate(display_raw):
                if item not in DISPLAY_APPS:
                    r.fail(
                        f"{path}.display_apps[{i}]", f"must be one of: {', '.join(DISPLAY_APPS)}"
                    )
            display_apps = tuple(dict.fromkeys(x for x in display_raw if x in DISPLAY_APPS))
    apps = tuple(_app(r, a, f"{path}.apps[{i}]") for i, a in enumerate(r.list(o, "apps", path)))
    _unique(r, [a.slug for a in apps], f"{path}.apps", "slug")
    scripts = tuple(
        _script(r, s, f"{path}.scripts[{i}]", behavior == "blocking")
        for i, s in enumerate(r.list(o, "scripts", path))
    )
    metadata = tuple(
        _metadata(r, m, f"{path}.metadata[{i}]") for i, m in enumerate(r.list(o, "metadata", path))
    )
    _unique(r, [m.key for m in metadata], f"{path}.metadata", "key")
    children: tuple[AgentSpec, ...] = ()
    if child and o.get("children"):
        r.fail(f"{path}.children", "sub-agents cannot have children")
    elif not child:
        children = tuple(
            _agent(r, c, f"{path}.children[{i}]", child=True)
            for i, c in enumerate(r.list(o, "children", path))
        )
    return AgentSpec(
        name=r.name(o, "name", path),
        os=r.str(o, "os", path, default="linux", max_len=64),
        architecture=r.str(o, "architecture", path, default="amd64", max_len=64),
        directory=r.str(o, "directory", path),
        env=env,
        auth=auth,
        instance_id=instance_id,
        connection_timeout_seconds=r.int(o, "connection_timeout_seconds", path, default=120),
        troubleshooting_url=r.str(o, "troubleshooting_url", path),
        motd_file=r.str(o, "motd_file", path),
        display_apps=display_apps,
        order=r.int(o, "order", path, minimum=-(2**31)),
        apps=apps,
        scripts=scripts,
        metadata=metadata,
        children=children,
        resources_monitoring=_resources_monitoring(
            r, o.get("resources_monitoring"), f"{path}.resources_monitoring"
        ),
    )


def parse_spec(spec_json: str) -> WorkspaceSpec:
    """Parses and validates a spec; raises InvalidArgument naming every bad field."""
    try:
        raw = json.loads(spec_json)
    except (ValueError, RecursionError) as err:
        raise InvalidArgument("Invalid workspace spec.", detail=f"not valid JSON: {err}") from None
    r = _Reader()
    top = r.obj(raw, "", {"resources"})
    resources = []
    for i, res_raw in enumerate(r.list(top, "resources", "")):
        path = f"resources[{i}]"
        res = r.obj(res_raw, path, {"name", "type", "agents"})
        agents = tuple(
            _agent(r, a, f"{path}.agents[{j}]", child=False)
            for j, a in enumerate(r.list(res, "agents", path))
        )
        resources.append(
            ResourceSpec(
                name=r.str(res, "name", path, required=True, max_len=255),
                type=r.str(res, "type", path, max_len=255),
                agents=agents,
            )
        )
    all_names = [
        name
        for res in resources
        for agent in res.agents
        for name in (agent.name, *(c.name for c in agent.children))
    ]
    _unique(r, all_names, "agents", "agent name")
    if r.problems:
        raise InvalidArgument(
            "Invalid workspace spec.",
            detail="; ".join(f"{f}: {d}" for f, d in r.problems),
            validations=r.problems,
        )
    return WorkspaceSpec(resources=tuple(resources))
