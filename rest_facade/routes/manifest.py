"""``GET /api/v2/workspaceagents/me/manifest`` <-> coder.agent.v2.Agent/GetManifest.

Coder removed this legacy route in favour of the RPC; agentplane keeps it as
the REST door onto the same call, in ``agentsdk.Manifest`` JSON.
"""

from __future__ import annotations

import uuid
from typing import Any

from coder.agent.v2 import agent_pb2
from flask import Blueprint

from rest_facade import core
from rest_facade.coderjson import derp_map, duration_ns, duration_seconds, respond, sorted_map
from rest_facade.parse import session_token

bp = Blueprint("manifest", __name__)

SHARING_LEVEL = {v: k.lower() for k, v in agent_pb2.WorkspaceApp.SharingLevel.items()}
APP_HEALTH = {v: k.lower() for k, v in agent_pb2.WorkspaceApp.Health.items()}


def _uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if raw else "00000000-0000-0000-0000-000000000000"


def manifest_json(m: agent_pb2.Manifest) -> dict[str, Any]:
    return {
        "agent_id": _uuid(m.agent_id),
        "agent_name": m.agent_name,
        "apps": [
            {
                "command": a.command,
                "display_name": a.display_name,
                "external": a.external,
                "health": APP_HEALTH[a.health],
                "healthcheck": {
                    "interval": duration_seconds(a.healthcheck.interval),
                    "threshold": a.healthcheck.threshold,
                    "url": a.healthcheck.url,
                },
                "icon": a.icon,
                "id": _uuid(a.id),
                "sharing_level": SHARING_LEVEL[a.sharing_level],
                "slug": a.slug,
                "subdomain": a.subdomain,
                "subdomain_name": a.subdomain_name,
                "url": a.url,
            }
            for a in m.apps
        ],
        "derp_force_websockets": m.derp_force_websockets,
        "derpmap": derp_map(m.derp_map),
        "directory": m.directory,
        "disable_direct_connections": m.disable_direct_connections,
        "environment_variables": sorted_map(m.environment_variables),
        "git_auth_configs": m.git_auth_configs,
        "metadata": [
            {
                "display_name": d.display_name,
                # codersdk metadata descriptions count in seconds.
                "interval": duration_seconds(d.interval),
                "key": d.key,
                "script": d.script,
                "timeout": duration_seconds(d.timeout),
            }
            for d in m.metadata
        ],
        "motd_file": m.motd_path,
        "owner_name": m.owner_username,
        "scripts": [
            {
                "cron": s.cron,
                "display_name": s.display_name,
                "id": _uuid(s.id),
                "log_path": s.log_path,
                "log_source_id": _uuid(s.log_source_id),
                "run_on_start": s.run_on_start,
                "run_on_stop": s.run_on_stop,
                "script": s.script,
                "start_blocks_login": s.start_blocks_login,
                "timeout": duration_ns(s.timeout),
            }
            for s in m.scripts
        ],
        "vscode_port_proxy_uri": m.vs_code_port_proxy_uri,
        "workspace_id": _uuid(m.workspace_id),
        "workspace_name": m.workspace_name,
    }


@bp.get("/workspaceagents/me/manifest")
def get_manifest() -> Any:
    resp = core().call(
        core().agent.GetManifest, agent_pb2.GetManifestRequest(), token=session_token()
    )
    return respond(manifest_json(resp))
