"""Assembles the gRPC core: ``create_server`` wires every servicer to one
store and clock; ``serve`` (in server/cli.py) runs it beside the facade."""

from __future__ import annotations

import dataclasses
import datetime as dt

import grpc
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.identity.v1 import identity_pb2, identity_pb2_grpc
from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc
from agentplane.me.v1 import me_pb2, me_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2, workspace_agents_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from coder.tailnet.v2 import tailnet_pb2, tailnet_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.admin.servicer import AdminServicer
from server.agentapi.logwriter import LogWriter
from server.agentapi.servicer import AgentServicer
from server.agentapi.sessions import AgentSessions
from server.agentapi.writebehind import ReportBuffers
from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.health import DatabaseHealth
from server.identity.login import IdentityTrust, load_identity_trust
from server.identity.servicer import InstanceIdentityServicer
from server.logs.servicer import LogsServicer
from server.me.servicer import MeServicer
from server.me.wakeups import Wakeups
from server.reflection import enable_server_reflection
from server.storage.db import Database
from server.tailnet.derpmap import DERPMapSource
from server.tailnet.servicer import TailnetServicer
from server.workspaceagents.diagnosis import TokenRefusals
from server.workspaceagents.servicer import WorkspaceAgentsServicer

# Coder's agent read limit is 4 MiB; gRPC's default receive cap matches it.
MAX_MESSAGE_BYTES = 4 << 20

SERVICE_NAMES = (
    agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name,
    tailnet_pb2.DESCRIPTOR.services_by_name["Tailnet"].full_name,
    workspace_agents_pb2.DESCRIPTOR.services_by_name["WorkspaceAgentsService"].full_name,
    me_pb2.DESCRIPTOR.services_by_name["MeService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    logs_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    identity_pb2.DESCRIPTOR.services_by_name["InstanceIdentityService"].full_name,
)


@dataclasses.dataclass
class Core:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    # address as asked -> port actually bound (port 0 resolves here).
    ports: dict[str, int]
    # The agents' live sessions with this process (connection status).
    sessions: AgentSessions | None = None
    # Wake-ups for calls that wait (external-auth long-poll, reinit stream).
    wakeups: Wakeups | None = None
    # Write-behind buffers of agents' periodic reports (stats, metadata).
    reports: ReportBuffers | None = None
    # Group commit of agents' log batches (keeps a connection, maybe a thread).
    log_writer: LogWriter | None = None
    # Health follows the database (grpc.health.v1 NOT_SERVING when it is away).
    db_health: DatabaseHealth | None = None

    def close(self) -> None:
        """After the server has stopped: write what is buffered behind calls
        (at most a second's worth of reports) and release the log writer."""
        if self.reports is not None:
            self.reports.flush()
        if self.log_writer is not None:
            self.log_writer.close()


def create_server(
    settings: Settings,
    db: Database,
    clock: Clock,
    *,
    admin_token: str,
    listen: tuple[str, ...],
    identity: IdentityTrust | None = None,
) -> Core:
    """Builds (but does not start) the core listening on each address.

    ``identity``: instance-identity trust material; read from the settings'
    files when not given (``ValueError`` naming a bad file).
    """
    if identity is None:
        identity = load_identity_trust(settings, clock)
    # Agent status: live sessions (connection status), refused-token clues
    # (diagnosis) and wake-ups for calls that wait.
    sessions = AgentSessions(
        db, clock, inactive_timeout=dt.timedelta(seconds=settings.agent_inactive_timeout_seconds)
    )
    wakeups = Wakeups(db)
    auth = Authenticator(
        db=db,
        clock=clock,
        admin_token=admin_token,
        on_agent_seen=sessions.touch,
        on_agent_contact=sessions.seen,
        on_agent_refused=TokenRefusals(db, clock).record,
    )
    derp = DERPMapSource(
        db,
        clock,
        access_url=settings.effective_access_url,
        disable_direct=settings.disable_direct_connections,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # gRPC sets SO_REUSEPORT by default: a second server on the same
            # port would bind beside this one and take half its calls.
            ("grpc.so_reuseport", 0),
        ]
    )
    agent_servicer = AgentServicer(db=db, settings=settings, auth=auth, derp=derp, clock=clock)
    agent_pb2_grpc.add_AgentServicer_to_server(agent_servicer, server)
    tailnet_pb2_grpc.add_TailnetServicer_to_server(TailnetServicer(), server)
    workspace_agents_pb2_grpc.add_WorkspaceAgentsServiceServicer_to_server(
        WorkspaceAgentsServicer(db=db, clock=clock, settings=settings, auth=auth, derp=derp),
        server,
    )
    me_pb2_grpc.add_MeServiceServicer_to_server(
        MeServicer(
            db=db, auth=auth, clock=clock, settings=settings, sessions=sessions, wakeups=wakeups
        ),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(db=db, clock=clock, auth=auth, wakeups=wakeups), server
    )
    logs_pb2_grpc.add_LogsServiceServicer_to_server(
        LogsServicer(db=db, clock=clock, settings=settings, auth=auth), server
    )
    identity_pb2_grpc.add_InstanceIdentityServiceServicer_to_server(
        InstanceIdentityServicer(db=db, clock=clock, trust=identity), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    ports = {address: server.add_insecure_port(address) for address in listen}
    return Core(
        server=server,
        health=health_servicer,
        ports=ports,
        sessions=sessions,
        wakeups=wakeups,
        reports=agent_servicer.reports,
        log_writer=agent_servicer.log_writer,
        db_health=DatabaseHealth(db, health_servicer, SERVICE_NAMES),
    )


async def mark_serving(core: Core) -> None:
    """SERVING once the database answers, and from then on while it does."""
    assert core.db_health is not None
    await core.db_health.check()
    core.db_health.start()


async def mark_not_serving(core: Core) -> None:
    if core.db_health is not None:
        await core.db_health.stop()
    await core.health.enter_graceful_shutdown()


async def drain(core: Core) -> None:
    """After the server stopped taking calls: lets the writes that run as
    tasks of their own finish (bounded), before the loop stops."""
    if core.log_writer is not None:
        await core.log_writer.drain()
    if core.sessions is not None:
        await core.sessions.drain()
    if core.reports is not None:
        await core.reports.drain()
