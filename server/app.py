"""Assembles the gRPC core: ``create_server`` wires every servicer to one
store and clock; ``serve`` (in server/cli.py) runs it beside the facade."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import grpc
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc
from agentplane.agenttunnel.v1 import (
    agent_conn_pb2,
    agent_conn_pb2_grpc,
    agent_tunnel_pb2,
    agent_tunnel_pb2_grpc,
)
from agentplane.derp.v1 import derp_pb2, derp_pb2_grpc
from agentplane.identity.v1 import identity_pb2, identity_pb2_grpc
from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc
from agentplane.me.v1 import me_pb2, me_pb2_grpc
from agentplane.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2, workspace_agents_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from coder.tailnet.v2 import tailnet_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.admin.servicer import AdminServicer
from server.agentapi.logwriter import LogWriter
from server.agentapi.servicer import AgentServicer
from server.agentapi.sessions import AgentSessions
from server.agentapi.writebehind import ReportBuffers
from server.agentconn.servicer import AgentConnServicer
from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.derp.servicer import DERPServicer
from server.health import DatabaseHealth
from server.identity.login import IdentityTrust, load_identity_trust
from server.identity.servicer import InstanceIdentityServicer
from server.logs.servicer import LogsServicer
from server.me.servicer import MeServicer
from server.me.wakeups import Wakeups
from server.metrics.interceptor import ObservingInterceptor
from server.metrics.series import CoreMetrics
from server.metrics.servicer import MetricsServicer
from server.reflection import enable_server_reflection
from server.replicas import ReplicaRegistry
from server.storage.db import Database
from server.tailnet.coordinate import CoordinateService
from server.tailnet.coordinator import Coordinator
from server.tailnet.derpmap import DERPMapSource, DERPMapWatch
from server.tailnet.pgcoord import PgMirror
from server.tailnet.resume import ResumeTokens
from server.tailnet.servicer import TailnetServicer, add_tailnet_service
from server.tunnel.dialer import AgentDialer
from server.tunnel.registry import TunnelRegistry
from server.tunnel.servicer import AgentTunnelServicer
from server.workspaceagents.diagnosis import TokenRefusals
from server.workspaceagents.servicer import WorkspaceAgentsServicer

# Coder's agent read limit is 4 MiB; gRPC's default receive cap matches it.
MAX_MESSAGE_BYTES = 4 << 20
MAX_PENDING_CALLS = 20_000

SERVICE_NAMES = (
    agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name,
    tailnet_pb2.DESCRIPTOR.services_by_name["Tailnet"].full_name,
    workspace_agents_pb2.DESCRIPTOR.services_by_name["WorkspaceAgentsService"].full_name,
    me_pb2.DESCRIPTOR.services_by_name["MeService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    logs_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    identity_pb2.DESCRIPTOR.services_by_name["InstanceIdentityService"].full_name,
    metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
    derp_pb2.DESCRIPTOR.services_by_name["DERPService"].full_name,
    agent_tunnel_pb2.DESCRIPTOR.services_by_name["AgentTunnelService"].full_name,
    agent_conn_pb2.DESCRIPTOR.services_by_name["AgentConnService"].full_name,
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
    # This core's Prometheus series.
    metrics: CoreMetrics | None = None
    # The agent tunnels this replica holds.
    tunnels: TunnelRegistry | None = None
    # The one place requests reach agents through their tunnels.
    dialer: AgentDialer | None = None
    # This process in the replica registry (heartbeats, other replicas).
    registry: ReplicaRegistry | None = None
    # Tailnet coordination, and its mirror for other replicas (PostgreSQL).
    coordinator: Coordinator | None = None
    mirror: PgMirror | None = None

    async def start_background(self) -> None:
        """After the server started: register this replica and start
        mirroring coordination for the others."""
        if self.registry is not None:
            await self.registry.start()
        if self.mirror is not None:
            await self.mirror.start()

    async def stop_background(self) -> None:
        """Before the server stops: every coordinated peer hears LOST
        (``coordinator close``) and its stream ends; this replica leaves the
        registry (its tailnet rows go with it)."""
        if self.coordinator is not None:
            self.coordinator.close()
        if self.mirror is not None:
            await self.mirror.close()
        if self.registry is not None:
            await self.registry.stop()

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
    # This process's id among the replicas: agents' last_connected_replica_id
    # and the owner of its tailnet rows.
    replica_id = uuid.uuid4()
    sessions = AgentSessions(
        db,
        clock,
        inactive_timeout=dt.timedelta(seconds=settings.agent_inactive_timeout_seconds),
        replica_id=replica_id,
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
    metrics = CoreMetrics()
    metrics.watch_agents(sessions.status_counts)
    server = grpc.aio.server(
        interceptors=[ObservingInterceptor(metrics)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # Calls that arrived but are not yet taken by a handler. grpc's
            # defaults (1,000, hard 3,000) cancel calls when thousands of
            # tailnet peers reconnect at once (a replica restarted); each
            # is one small pending call.
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            # gRPC sets SO_REUSEPORT by default: a second server on the same
            # port would bind beside this one and take half its calls.
            ("grpc.so_reuseport", 0),
        ],
    )
    agent_servicer = AgentServicer(db=db, settings=settings, auth=auth, derp=derp, clock=clock)
    agent_pb2_grpc.add_AgentServicer_to_server(agent_servicer, server)
    coordinator = Coordinator()
    registry = ReplicaRegistry(
        db,
        clock,
        replica_id=replica_id,
        address=settings.replica_address or settings.grpc_address,
        heartbeat_seconds=settings.replica_heartbeat_seconds,
    )
    mirror = PgMirror(db, coordinator, registry) if db.is_postgres else None
    resume = ResumeTokens(db, clock)

    def tailnet_node(peer_id: uuid.UUID) -> bytes | None:
        node = coordinator.node(peer_id)
        if node is None and mirror is not None:
            node = mirror.node(peer_id)
        return node

    add_tailnet_service(
        TailnetServicer(
            db=db,
            clock=clock,
            auth=auth,
            coordinate=CoordinateService(
                db=db,
                auth=auth,
                coordinator=coordinator,
                resume=resume,
                sessions=sessions,
                prepare=mirror.prepare if mirror is not None else None,
            ),
            resume=resume,
            derp=DERPMapWatch(derp, db),
        ),
        server,
    )
    workspace_agents_pb2_grpc.add_WorkspaceAgentsServiceServicer_to_server(
        WorkspaceAgentsServicer(
            db=db, clock=clock, settings=settings, auth=auth, derp=derp, tailnet_node=tailnet_node
        ),
        server,
    )
    me_pb2_grpc.add_MeServiceServicer_to_server(
        MeServicer(
            db=db, auth=auth, clock=clock, settings=settings, sessions=sessions, wakeups=wakeups
        ),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(db=db, clock=clock, auth=auth, wakeups=wakeups, derp=derp, resume=resume),
        server,
    )
    logs_pb2_grpc.add_LogsServiceServicer_to_server(
        LogsServicer(db=db, clock=clock, settings=settings, auth=auth), server
    )
    identity_pb2_grpc.add_InstanceIdentityServiceServicer_to_server(
        InstanceIdentityServicer(db=db, clock=clock, trust=identity), server
    )
    metrics_pb2_grpc.add_MetricsServiceServicer_to_server(
        MetricsServicer(auth=auth, metrics=metrics), server
    )
    derp_pb2_grpc.add_DERPServiceServicer_to_server(
        DERPServicer(db=db, clock=clock, auth=auth), server
    )
    tunnels = TunnelRegistry()
    agent_tunnel_pb2_grpc.add_AgentTunnelServiceServicer_to_server(
        AgentTunnelServicer(db=db, auth=auth, sessions=sessions, registry=tunnels), server
    )
    dialer = AgentDialer(
        db,
        clock,
        tunnels,
        inactive_timeout=dt.timedelta(seconds=settings.agent_inactive_timeout_seconds),
    )
    agent_conn_pb2_grpc.add_AgentConnServiceServicer_to_server(
        AgentConnServicer(db=db, clock=clock, auth=auth, dialer=dialer), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    ports = {address: server.add_insecure_port(address) for address in listen}
    if not settings.replica_address:
        registry.address = reachable_address(settings.grpc_address, ports)
    return Core(
        server=server,
        health=health_servicer,
        ports=ports,
        sessions=sessions,
        wakeups=wakeups,
        reports=agent_servicer.reports,
        log_writer=agent_servicer.log_writer,
        metrics=metrics,
        tunnels=tunnels,
        dialer=dialer,
        registry=registry,
        coordinator=coordinator,
        mirror=mirror,
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


def reachable_address(grpc_address: str, ports: dict[str, int]) -> str:
    """The gRPC address other replicas are told (``--replica-address``
    unset): the gRPC listen address with the port it was bound to."""
    tcp = [a for a in ports if not a.startswith("unix:")]
    asked = grpc_address if grpc_address in ports else (tcp[0] if tcp else grpc_address)
    host = asked.rpartition(":")[0]
    return f"{host}:{ports.get(asked, asked.rpartition(':')[2])}"


async def drain(core: Core) -> None:
    """After the server stopped taking calls: lets the writes that run as
    tasks of their own finish (bounded), before the loop stops."""
    if core.log_writer is not None:
        await core.log_writer.drain()
    if core.sessions is not None:
        await core.sessions.drain()
    if core.reports is not None:
        await core.reports.drain()
