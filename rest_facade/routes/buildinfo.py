"""``GET /api/v2/buildinfo``: Coder's ``codersdk.BuildInfoResponse``, no
authentication (as in Coder). The facade answers from its own package and
settings; the core's version is in ``/healthz``."""

from __future__ import annotations

import importlib.metadata

from flask import Blueprint, Response, current_app

from rest_facade.coderjson import respond
from rest_facade.wire.apiversion import CURRENT

bp = Blueprint("buildinfo", __name__)


def version() -> str:
    """The package version as Coder writes its own ("v" + semver)."""
    return "v" + importlib.metadata.version("agentplane")


@bp.get("/buildinfo")
def get_buildinfo() -> Response:
    settings = current_app.extensions["agentplane.settings"]
    return respond(
        {
            "agent_api_version": str(CURRENT),
            "dashboard_url": settings.effective_access_url,
            # No deployment id, telemetry, proxies, provisioners or web push here.
            "deployment_id": "",
            "external_url": "",
            "provisioner_api_version": "",
            "telemetry": False,
            "upgrade_message": "",
            "version": version(),
            "webpush_public_key": "",
            "workspace_proxy": False,
        }
    )
