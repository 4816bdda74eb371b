"""The ``agentplane.identity.v1.InstanceIdentityService`` servicer.

Unauthenticated: the cloud-signed credential in the request is the caller's
proof, so no metadata is read. Each RPC validates its required fields,
verifies the credential and then logs the chosen agent in (server/identity/login.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentplane.identity.v1 import identity_pb2 as pb
from agentplane.identity.v1 import identity_pb2_grpc as pb_grpc

from server.clock import Clock
from server.errors import Unauthenticated, map_servicer_errors
from server.identity import login
from server.identity.azure import MAX_AIA_URLS
from server.identity.fetch import DEFAULT_TIMEOUT
from server.identity.login import IdentityTrust
from server.storage.db import Database

# Fetching Azure intermediates is network I/O (each URL bounded by the
# fetcher's own timeout); it runs on a worker thread so the event loop never
# waits on it, and the RPC gives up a little after the worst case.
AZURE_FETCH_DEADLINE_SECONDS = MAX_AIA_URLS * DEFAULT_TIMEOUT + 5


@map_servicer_errors
class InstanceIdentityServicer(pb_grpc.InstanceIdentityServiceServicer):
    def __init__(self, *, db: Database, clock: Clock, trust: IdentityTrust) -> None:
        self._db = db
        self._clock = clock
        self._trust = trust

    async def AuthenticateAWS(self, request: pb.AuthenticateAWSRequest, context: Any) -> Any:
        login.require_fields(("signature", request.signature), ("document", request.document))
        instance_id = login.verify_aws_identity(
            self._trust, self._clock, document=request.document, signature=request.signature
        )
        token = await self._db.offload(
            login.login_instance, self._db, instance_id=instance_id, agent_name=request.agent_name
        )
        return pb.AuthenticateAWSResponse(session_token=token)

    async def AuthenticateAzure(self, request: pb.AuthenticateAzureRequest, context: Any) -> Any:
        # `encoding` is required like Coder's, and like Coder's never read.
        login.require_fields(("signature", request.signature), ("encoding", request.encoding))
        if self._trust.azure_fetch_intermediates:
            try:
                instance_id = await asyncio.wait_for(
                    asyncio.to_thread(
                        login.verify_azure_identity,
                        self._trust,
                        self._clock,
                        signature=request.signature,
                    ),
                    timeout=AZURE_FETCH_DEADLINE_SECONDS,
                )
            except TimeoutError:
                raise Unauthenticated(
                    login.INVALID_AZURE, detail="issuer certificate could not be fetched"
                ) from None
        else:
            instance_id = login.verify_azure_identity(
                self._trust, self._clock, signature=request.signature
            )
        token = await self._db.offload(
            login.login_instance, self._db, instance_id=instance_id, agent_name=request.agent_name
        )
        return pb.AuthenticateAzureResponse(session_token=token)

    async def AuthenticateGoogle(self, request: pb.AuthenticateGoogleRequest, context: Any) -> Any:
        login.require_fields(("json_web_token", request.json_web_token))
        instance_id = login.verify_google_identity(
            self._trust, self._clock, json_web_token=request.json_web_token
        )
        token = await self._db.offload(
            login.login_instance, self._db, instance_id=instance_id, agent_name=request.agent_name
        )
        return pb.AuthenticateGoogleResponse(session_token=token)
