"""The ``agentplane.admin.v1.AdminService`` servicer: check the admin token,
then provision."""

from __future__ import annotations

import json
from typing import Any

from agentplane.admin.v1 import admin_pb2 as pb
from agentplane.admin.v1 import admin_pb2_grpc as pb_grpc

from server.admin import externalauth, prebuilds, reinit, users, workspaces
from server.auth import Authenticator
from server.clock import Clock
from server.errors import InvalidArgument, map_servicer_errors
from server.me.wakeups import Wakeups
from server.prototime import from_timestamp, to_timestamp
from server.storage.db import Database
from server.tailnet.derpmap import DERPConfigError, DERPMapSource, validate_derp_map
from server.tailnet.resume import ResumeTokens


def build_message(result: workspaces.BuildResult) -> pb.Build:
    msg = pb.Build(
        workspace_id=str(result.workspace_id),
        build_id=str(result.build_id),
        build_number=result.build_number,
        transition=result.transition,
    )
    for agent in result.agents:
        item = msg.agents.add(id=str(agent.id), name=agent.name, resource_id=str(agent.resource_id))
        if agent.parent_id is not None:
            item.parent_id = str(agent.parent_id)
        if agent.auth_token is not None:
            item.auth_token = agent.auth_token
        if agent.auth_instance_id is not None:
            item.auth_instance_id = agent.auth_instance_id
    return msg


@map_servicer_errors
class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        auth: Authenticator,
        wakeups: Wakeups | None = None,
        derp: DERPMapSource | None = None,
        resume: ResumeTokens | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._auth = auth
        # Wakes agents waiting on a token link or a reinit request.
        self._wakeups = wakeups or Wakeups(db)
        self._derp = derp
        self._resume = resume or ResumeTokens(db, clock)

    async def CreateUser(self, request: pb.CreateUserRequest, context: Any) -> Any:
        self._auth.admin(context)
        created = await self._db.offload(
            users.create_user,
            self._db,
            self._clock,
            username=request.username,
            email=request.email,
            role=request.role,
        )
        return pb.CreateUserResponse(
            id=str(created.user.id),
            username=created.user.username,
            email=created.user.email,
            api_key=created.api_key,
            role=created.user.role,
        )

    async def CreateToken(self, request: pb.CreateTokenRequest, context: Any) -> Any:
        self._auth.admin(context)
        return pb.CreateTokenResponse(
            api_key=await self._db.offload(
                users.create_token, self._db, self._clock, user_ref=request.user
            )
        )

    async def CreateWorkspace(self, request: pb.CreateWorkspaceRequest, context: Any) -> Any:
        self._auth.admin(context)
        result = await self._db.offload(
            workspaces.create_workspace,
            self._db,
            self._clock,
            owner_ref=request.owner,
            name=request.name,
            spec_json=request.spec_json,
        )
        return pb.CreateWorkspaceResponse(build=build_message(result))

    async def BuildWorkspace(self, request: pb.BuildWorkspaceRequest, context: Any) -> Any:
        self._auth.admin(context)
        result = await self._db.offload(
            workspaces.build_workspace,
            self._db,
            self._clock,
            owner_ref=request.owner,
            name=request.name,
            spec_json=request.spec_json,
            transition=request.transition,
        )
        return pb.BuildWorkspaceResponse(build=build_message(result))

    async def LinkExternalAuth(self, request: pb.LinkExternalAuthRequest, context: Any) -> Any:
        self._auth.admin(context)
        linked = await self._db.offload(
            externalauth.link_external_auth,
            self._db,
            self._clock,
            self._wakeups,
            user_ref=request.user,
            provider_id=request.provider_id,
            access_token=request.access_token,
            refresh_token=request.refresh_token,
            expires_at=(
                from_timestamp(request.expires_at, "expires_at")
                if request.HasField("expires_at")
                else None
            ),
            token_extra_json=request.token_extra_json,
        )
        return pb.LinkExternalAuthResponse(
            user_id=str(linked.user_id),
            provider_id=linked.provider_id,
            updated_at=to_timestamp(linked.updated_at),
        )

    async def ReinitWorkspace(self, request: pb.ReinitWorkspaceRequest, context: Any) -> Any:
        self._auth.admin(context)
        result = await self._db.offload(
            reinit.reinit_workspace,
            self._db,
            self._clock,
            self._wakeups,
            owner_ref=request.owner,
            name=request.name,
        )
        return pb.ReinitWorkspaceResponse(
            workspace_id=str(result.workspace_id),
            owner_id=str(result.owner_id),
            reason=result.reason,
            build_number=result.build_number,
        )

    async def SetDERPMap(self, request: pb.SetDERPMapRequest, context: Any) -> Any:
        self._auth.admin(context)
        try:
            derp_map = validate_derp_map(json.loads(request.derp_map_json), source="derp_map")
        except ValueError as err:
            # DERPConfigError is a ValueError, and so is a JSON syntax error.
            detail = str(err) if isinstance(err, DERPConfigError) else f"not valid JSON: {err}"
            raise InvalidArgument(
                "Validation failed.", validations=[("derp_map", detail)]
            ) from None
        if self._derp is None:
            raise InvalidArgument("This server has no DERP map source.")
        self._derp.install(derp_map)
        return pb.SetDERPMapResponse(
            region_ids=sorted(int(k) for k in derp_map["regions"]),
        )

    async def RotateResumeTokenKey(
        self, request: pb.RotateResumeTokenKeyRequest, context: Any
    ) -> Any:
        self._auth.admin(context)
        return pb.RotateResumeTokenKeyResponse(sequence=self._resume.rotate())

    async def CreatePrebuild(self, request: pb.CreatePrebuildRequest, context: Any) -> Any:
        self._auth.admin(context)
        result = await self._db.offload(
            prebuilds.create_prebuild,
            self._db,
            self._clock,
            name=request.name,
            spec_json=request.spec_json,
        )
        return pb.CreatePrebuildResponse(build=build_message(result))

    async def ClaimPrebuild(self, request: pb.ClaimPrebuildRequest, context: Any) -> Any:
        self._auth.admin(context)
        claimed = await self._db.offload(
            prebuilds.claim_prebuild,
            self._db,
            self._clock,
            self._wakeups,
            name=request.name,
            owner_ref=request.owner,
            new_name=request.new_name,
        )
        return pb.ClaimPrebuildResponse(
            build=build_message(claimed.build), owner_id=str(claimed.owner_id)
        )
