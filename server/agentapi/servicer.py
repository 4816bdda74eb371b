"""The ``coder.agent.v2.Agent`` servicer: resolve the calling agent, then
hand the request to its concern module. RPCs that later issues implement
answer UNIMPLEMENTED until then."""

from __future__ import annotations

import datetime as dt
from typing import Any

from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.agentapi import (
    apps,
    connections,
    lifecycle,
    metadata,
    resources_monitoring,
    scripts,
    startup,
    stats,
)
from server.agentapi.banners import BannerSource, load_banners
from server.agentapi.logs import NewBatch, log_source_id, prepare_batch
from server.agentapi.logwriter import LogWriter
from server.agentapi.manifest import get_manifest
from server.agentapi.writebehind import ReportBuffers
from server.auth import Authenticator
from server.clock import Clock
from server.config import Settings
from server.errors import map_servicer_errors, unimplemented_rpcs
from server.storage.db import Database
from server.tailnet.derpmap import DERPMapSource


@map_servicer_errors
class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        auth: Authenticator,
        derp: DERPMapSource,
        clock: Clock,
    ) -> None:
        self._db = db
        self._clock = clock
        self.log_writer = LogWriter(db, clock, limit_bytes=settings.agent_logs_limit_bytes)
        self._settings = settings
        self._auth = auth
        self._derp = derp
        self._banners = BannerSource(load_banners(settings.announcement_banners_file))
        # Periodic reports are written behind the call (flushed every second).
        self._stats_writer = stats.StatsWriter(db)
        self._metadata_writer = metadata.MetadataWriter(db)
        self.reports = ReportBuffers(self._stats_writer, self._metadata_writer)
        self._report_interval = dt.timedelta(seconds=settings.agent_stats_report_interval_seconds)

    async def GetManifest(self, request: agent_pb2.GetManifestRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return get_manifest(self._db, self._settings, self._derp, caller=caller)

    async def BatchCreateLogs(self, request: agent_pb2.BatchCreateLogsRequest, context: Any) -> Any:
        if not request.logs:
            # Coder answers an empty batch with success, before anything else;
            # an overflowed agent still learns that it is over the limit.
            caller = await self._auth.agent(context)
            return agent_pb2.BatchCreateLogsResponse(
                log_limit_exceeded=bool(caller.agent.logs_overflowed)
            )
        # The hottest call: the token is checked by the write itself.
        caller, token_hash = await self._auth.agent_for_write(context)
        outputs, levels, size = prepare_batch(request.logs)
        exceeded = await self.log_writer.submit(
            NewBatch(
                caller.agent.id,
                log_source_id(request.log_source_id),
                outputs,
                levels,
                size,
                token_hash=token_hash,
            )
        )
        if exceeded is None:
            raise await self._auth.agent_token_refused(token_hash)
        return agent_pb2.BatchCreateLogsResponse(log_limit_exceeded=exceeded)

    # -- agent status (lifecycle, startup, metadata, stats, apps, scripts, ...) --
    # Every RPC resolves its caller first; the authenticator also records the
    # contact for the agent's connection status. Concerns that write run on
    # the database's writer threads (Database.offload), one call per agent at
    # a time: a write that waits on a lock never holds the event loop.

    async def UpdateLifecycle(self, request: agent_pb2.UpdateLifecycleRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            lifecycle.update_lifecycle,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )

    async def UpdateStartup(self, request: agent_pb2.UpdateStartupRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        api_version = self._auth.api_version(context, newest=startup.AGENT_API_VERSION)
        return await self._db.offload(
            startup.update_startup,
            self._db,
            caller=caller,
            request=request,
            api_version=api_version,
            key=caller.agent.id,
        )

    async def BatchUpdateMetadata(
        self, request: agent_pb2.BatchUpdateMetadataRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return metadata.batch_update_metadata(
            self._metadata_writer, self._clock, caller=caller, request=request
        )

    async def UpdateStats(self, request: agent_pb2.UpdateStatsRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return stats.update_stats(
            self._stats_writer,
            self._clock,
            caller=caller,
            request=request,
            report_interval=self._report_interval,
        )

    async def BatchUpdateAppHealths(
        self, request: agent_pb2.BatchUpdateAppHealthRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return await apps.batch_update_app_healths(self._db, caller=caller, request=request)

    async def UpdateAppStatus(self, request: agent_pb2.UpdateAppStatusRequest, context: Any) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            apps.update_app_status,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )

    async def ScriptCompleted(
        self, request: agent_pb2.WorkspaceAgentScriptCompletedRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            scripts.script_completed,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )

    async def GetAnnouncementBanners(
        self, request: agent_pb2.GetAnnouncementBannersRequest, context: Any
    ) -> Any:
        await self._auth.agent(context)
        return self._banners.announcement_banners()

    async def GetServiceBanner(
        self, request: agent_pb2.GetServiceBannerRequest, context: Any
    ) -> Any:
        await self._auth.agent(context)
        return self._banners.service_banner()

    async def ReportConnection(
        self, request: agent_pb2.ReportConnectionRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            connections.report_connection,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )

    async def GetResourcesMonitoringConfiguration(
        self, request: agent_pb2.GetResourcesMonitoringConfigurationRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return resources_monitoring.get_configuration(self._db, caller=caller)

    async def PushResourcesMonitoringUsage(
        self, request: agent_pb2.PushResourcesMonitoringUsageRequest, context: Any
    ) -> Any:
        caller = await self._auth.agent(context)
        return await self._db.offload(
            resources_monitoring.push_usage,
            self._db,
            self._clock,
            caller=caller,
            request=request,
            key=caller.agent.id,
        )


unimplemented_rpcs(AgentServicer, agent_pb2.DESCRIPTOR.services_by_name["Agent"])
