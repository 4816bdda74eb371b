"""GetGitSSHKey: the workspace owner's git SSH key pair, for the calling agent.

Serves ``agentplane.me.v1.MeService/GetGitSSHKey``
(REST ``GET /api/v2/workspaceagents/me/gitsshkey``).
"""

from __future__ import annotations

from agentplane.me.v1 import me_pb2

from server.errors import NotFound
from server.storage import users as user_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database


def get_git_ssh_key(db: Database, *, caller: AgentInWorkspace) -> me_pb2.GetGitSSHKeyResponse:
    with db.read() as conn:
        key = user_store.get_gitsshkey_by_user(conn, user_id=caller.workspace.owner_id)
    if key is None:
        raise NotFound("Git SSH key not found.")
    return me_pb2.GetGitSSHKeyResponse(public_key=key.public_key, private_key=key.private_key)
