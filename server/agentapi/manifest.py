"""GetManifest: everything an agent needs to configure itself.

Serves ``coder.agent.v2.Agent/GetManifest`` (legacy REST
``GET /api/v2/workspaceagents/me/manifest``).
"""

from __future__ import annotations

from typing import Any

from coder.agent.v2 import agent_pb2

from server.config import Settings
from server.prototime import seconds_duration
from server.storage import externalauth as extauth_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database
from server.tailnet.derpmap import DERPMapSource

# Explicit tables: an unknown stored value fails loudly instead of silently
# becoming UNSPECIFIED on the wire.
SHARING_LEVEL = {
    "owner": agent_pb2.WorkspaceApp.SharingLevel.OWNER,
    "authenticated": agent_pb2.WorkspaceApp.SharingLevel.AUTHENTICATED,
    "public": agent_pb2.WorkspaceApp.SharingLevel.PUBLIC,
    "organization": agent_pb2.WorkspaceApp.SharingLevel.ORGANIZATION,
}
APP_HEALTH = {
    "disabled": agent_pb2.WorkspaceApp.Health.DISABLED,
    "initializing": agent_pb2.WorkspaceApp.Health.INITIALIZING,
    "healthy": agent_pb2.WorkspaceApp.Health.HEALTHY,
    "unhealthy": agent_pb2.WorkspaceApp.Health.UNHEALTHY,
}
# Coder counts the configured external-auth providers of a git host type.
GIT_PROVIDER_TYPES = {
    "github",
    "gitlab",
    "bitbucket-cloud",
    "bitbucket-server",
    "azure-devops",
    "azure-devops-entra",
    "gitea",
}


def app_to_proto(app: Any) -> agent_pb2.WorkspaceApp:
    return agent_pb2.WorkspaceApp(
        id=app.id.bytes,
        url=app.url,
        external=app.external,
        slug=app.slug,
        display_name=app.display_name,
        command=app.command,
        icon=app.icon,
        subdomain=app.subdomain,
        sharing_level=SHARING_LEVEL[app.sharing_level],
        healthcheck=agent_pb2.WorkspaceApp.Healthcheck(
            url=app.healthcheck_url,
            interval=seconds_duration(app.healthcheck_interval),
            threshold=app.healthcheck_threshold,
        ),
        health=APP_HEALTH[app.health],
        hidden=app.hidden,
    )


def get_manifest(
    db: Database, settings: Settings, derp: DERPMapSource, *, caller: AgentInWorkspace
) -> agent_pb2.Manifest:
    agent, workspace = caller.agent, caller.workspace
    with db.read() as conn:
        children = db.agent_views.children(conn, agent)
        git_providers = extauth_store.count_providers(conn, types=GIT_PROVIDER_TYPES)
    apps, scripts, metadata = children.apps, children.scripts, children.metadata
    manifest = agent_pb2.Manifest(
        agent_id=agent.id.bytes,
        agent_name=agent.name,
        owner_username=workspace.owner_username,
        workspace_id=workspace.id.bytes,
        workspace_name=workspace.name,
        git_auth_configs=git_providers,
        environment_variables=agent.environment_variables,
        directory=agent.directory,
        # Empty: agentplane serves no wildcard app hostname (yet).
        vs_code_port_proxy_uri="",
        motd_path=agent.motd_file,
        disable_direct_connections=settings.disable_direct_connections,
        derp_force_websockets=settings.derp_force_websockets,
        derp_map=derp.proto(),
        scripts=[
            agent_pb2.WorkspaceAgentScript(
                id=s.id.bytes,
                log_source_id=s.log_source_id.bytes,
                log_path=s.log_path,
                script=s.script,
                cron=s.cron,
                run_on_start=s.run_on_start,
                run_on_stop=s.run_on_stop,
                start_blocks_login=s.start_blocks_login,
                timeout=seconds_duration(s.timeout_seconds),
                display_name=s.display_name,
            )
            for s in scripts
        ],
        apps=[app_to_proto(a) for a in apps],
        metadata=[
            agent_pb2.WorkspaceAgentMetadata.Description(
                display_name=m.display_name,
                key=m.key,
                script=m.script,
                interval=seconds_duration(m.interval),
                timeout=seconds_duration(m.timeout),
            )
            for m in metadata
        ],
    )
    if agent.parent_id is not None:
        manifest.parent_id = agent.parent_id.bytes
    return manifest
