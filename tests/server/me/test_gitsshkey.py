from __future__ import annotations

import uuid

from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.me.gitsshkey import get_git_ssh_key
from server.storage import agents as agent_store
from server.storage.users import GitSSHKey
from tests.conftest import token_md


def test_concern_returns_the_owners_key(db, provision) -> None:
    ws = provision.workspace()
    with db.read() as conn:
        caller = agent_store.get_agent_in_workspace(conn, agent_id=uuid.UUID(ws.agent("main").id))
    with db.session() as s:
        stored = s.get(GitSSHKey, uuid.UUID(ws.user_id))
    resp = get_git_ssh_key(db, caller=caller)
    assert resp.public_key == stored.public_key and resp.private_key == stored.private_key


def test_servicer_owner_key_differs_per_user(channel, provision) -> None:
    a, b = provision.workspace(), provision.workspace()
    stub = me_pb2_grpc.MeServiceStub(channel)
    ka = stub.GetGitSSHKey(
        me_pb2.GetGitSSHKeyRequest(), metadata=token_md(a.agent("main").auth_token)
    )
    kb = stub.GetGitSSHKey(
        me_pb2.GetGitSSHKeyRequest(), metadata=token_md(b.agent("main").auth_token)
    )
    assert ka.public_key.startswith("ssh-ed25519 ") and ka.public_key != kb.public_key
    assert ka.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
