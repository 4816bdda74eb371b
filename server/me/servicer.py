"""The ``agentplane.me.v1.MeService`` servicer: resolve the calling agent,
then the concern function."""

from __future__ import annotations

from typing import Any

from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.auth import Authenticator
from server.errors import map_servicer_errors
from server.me.gitsshkey import get_git_ssh_key
from server.storage.db import Database


@map_servicer_errors
class MeServicer(me_pb2_grpc.MeServiceServicer):
    def __init__(self, *, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._auth = auth

    async def GetGitSSHKey(self, request: me_pb2.GetGitSSHKeyRequest, context: Any) -> Any:
        caller = self._auth.agent(context)
        return get_git_ssh_key(self._db, caller=caller)
