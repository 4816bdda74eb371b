"""``agentplane.metrics.v1.MetricsService``: the core's series for the
facade's ``/metrics``. Only an owner (or the admin token) reads them: they
name users, workspaces and agents."""

from __future__ import annotations

from typing import Any

from agentplane.metrics.v1 import metrics_pb2, metrics_pb2_grpc

from server.auth import Authenticator, has_admin_credential
from server.errors import PermissionDenied, map_servicer_errors
from server.metrics.series import CoreMetrics
from server.storage.users import ROLE_OWNER

FORBIDDEN = "Forbidden."


@map_servicer_errors
class MetricsServicer(metrics_pb2_grpc.MetricsServiceServicer):
    def __init__(self, *, auth: Authenticator, metrics: CoreMetrics) -> None:
        self._auth = auth
        self._metrics = metrics

    async def GetMetrics(self, request: metrics_pb2.GetMetricsRequest, context: Any) -> Any:
        if has_admin_credential(context):
            self._auth.admin(context)
        elif self._auth.user(context).role != ROLE_OWNER:
            raise PermissionDenied(
                FORBIDDEN, detail="Only an owner may read this deployment's metrics."
            )
        return metrics_pb2.GetMetricsResponse(exposition=self._metrics.exposition())
