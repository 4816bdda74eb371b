"""The ``agentplane.derp.v1.DERPService`` servicer: check the admin token,
then hand out the deployment's DERP server key."""

from __future__ import annotations

from typing import Any

from agentplane.derp.v1 import derp_pb2 as pb
from agentplane.derp.v1 import derp_pb2_grpc as pb_grpc

from server.auth import Authenticator
from server.clock import Clock
from server.derp import serverkey
from server.errors import map_servicer_errors
from server.storage.db import Database


@map_servicer_errors
class DERPServicer(pb_grpc.DERPServiceServicer):
    def __init__(self, *, db: Database, clock: Clock, auth: Authenticator) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth

    async def GetServerKey(self, request: pb.GetServerKeyRequest, context: Any) -> Any:
        self._auth.admin(context)
        private, public = serverkey.get_server_key(self._db, self._clock)
        return pb.GetServerKeyResponse(private_key=private, public_key=public)
