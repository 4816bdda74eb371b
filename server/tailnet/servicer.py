"""The ``coder.tailnet.v2.Tailnet`` servicer: resolve the caller, then the
concern (``coordinate.py``, ``derpmap.py``, ``resume.py``, ``telemetry.py``,
``workspaceupdates.py``).

Callers are named by metadata only (``coder-session-token``, ``agent-id``,
``resume-token``; see ``coordinate.py``), so the REST/WebSocket and dRPC
doors bridge onto these RPCs without state of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from coder.tailnet.v2 import tailnet_pb2, tailnet_pb2_grpc

from server.auth import Authenticator
from server.clock import Clock
from server.errors import PermissionDenied, Unimplemented, map_servicer_errors, maps_errors
from server.storage.db import Database
from server.storage.users import ROLE_OWNER
from server.tailnet.coordinate import CoordinateService, caller_identity
from server.tailnet.coordinator import parse_peer_id
from server.tailnet.derpmap import DERPMapWatch
from server.tailnet.resume import ResumeTokens
from server.tailnet.telemetry import record_telemetry
from server.tailnet.workspaceupdates import follow_workspaces

SERVICE = "coder.tailnet.v2.Tailnet"


@map_servicer_errors
class TailnetServicer(tailnet_pb2_grpc.TailnetServicer):
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        auth: Authenticator,
        coordinate: CoordinateService,
        resume: ResumeTokens,
        derp: DERPMapWatch,
    ) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth
        self._coordinate = coordinate
        self._resume = resume
        self._derp = derp
        # Bound once: the stream handler is the concern's own (one generator
        # per stream, not a chain of them; 10,000 idle streams add up).
        self._serve_coordinate = maps_errors(CoordinateService.serve).__get__(coordinate)

    @property
    def Coordinate(self) -> Callable[..., Any]:
        return self._serve_coordinate

    async def StreamDERPMaps(self, request: Any, context: Any) -> Any:
        # No credentials needed, as Coder's GET /derp-map (its auth line is
        # commented out): the map is what every client is handed anyway.
        async for derp_map in self._derp.follow():
            yield derp_map

    async def RefreshResumeToken(self, request: Any, context: Any) -> Any:
        user, agent = await self._auth.user_or_agent(context)
        if agent is not None:
            peer_id = agent.agent.id
        else:
            _, token = self._auth.tailnet_metadata(context)
            peer_id = self._coordinate.peer_id_for(user, token)
        return self._resume.issue(peer_id, owner=caller_identity(user, agent))

    async def PostTelemetry(self, request: Any, context: Any) -> Any:
        user, agent = await self._auth.user_or_agent(context)
        if agent is not None:
            peer_id = agent.agent.id
        else:
            _, token = self._auth.tailnet_metadata(context)
            peer_id = (
                self._resume.verify(token, owner=caller_identity(user, None)) if token else None
            )
        # A write: off the event loop, as every write (it may wait on a lock).
        await self._db.offload(
            record_telemetry, self._db, self._clock, peer_id=peer_id, events=list(request.events)
        )
        return tailnet_pb2.TelemetryResponse()

    async def WorkspaceUpdates(self, request: Any, context: Any) -> Any:
        user, agent = await self._auth.user_or_agent(context)
        agent_id, _ = self._auth.tailnet_metadata(context)
        if agent is not None or agent_id is not None:
            # Coder serves them on the user-scoped /tailnet only.
            raise Unimplemented("workspace updates not supported on this connection")
        owner_id = parse_peer_id(request.workspace_owner_id, "parse workspace owner ID")
        if owner_id != user.id and user.role != ROLE_OWNER:
            raise PermissionDenied("You may only watch your own workspaces.")
        async for update in follow_workspaces(self._db, owner_id=owner_id):
            yield update


def _pass_bytes(message: Any) -> bytes:
    """Coordinate responses come encoded already (once per fan-out)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_tailnet_service(servicer: TailnetServicer, server: grpc.aio.Server) -> None:
    """Like the generated ``add_TailnetServicer_to_server``, with
    Coordinate's responses passed through as the bytes they already are."""
    handlers = {
        "PostTelemetry": grpc.unary_unary_rpc_method_handler(
            servicer.PostTelemetry,
            request_deserializer=tailnet_pb2.TelemetryRequest.FromString,
            response_serializer=tailnet_pb2.TelemetryResponse.SerializeToString,
        ),
        "StreamDERPMaps": grpc.unary_stream_rpc_method_handler(
            servicer.StreamDERPMaps,
            request_deserializer=tailnet_pb2.StreamDERPMapsRequest.FromString,
            response_serializer=tailnet_pb2.DERPMap.SerializeToString,
        ),
        "RefreshResumeToken": grpc.unary_unary_rpc_method_handler(
            servicer.RefreshResumeToken,
            request_deserializer=tailnet_pb2.RefreshResumeTokenRequest.FromString,
            response_serializer=tailnet_pb2.RefreshResumeTokenResponse.SerializeToString,
        ),
        "Coordinate": grpc.stream_stream_rpc_method_handler(
            servicer.Coordinate,
            request_deserializer=tailnet_pb2.CoordinateRequest.FromString,
            response_serializer=_pass_bytes,
        ),
        "WorkspaceUpdates": grpc.unary_stream_rpc_method_handler(
            servicer.WorkspaceUpdates,
            request_deserializer=tailnet_pb2.WorkspaceUpdatesRequest.FromString,
            response_serializer=tailnet_pb2.WorkspaceUpdate.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
