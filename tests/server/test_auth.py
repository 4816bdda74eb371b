"""Who is calling: user keys and agent tokens, over the live core, with
Coder's 401 texts."""

from __future__ import annotations

import uuid

import grpc
import pytest
from agentplane.me.v1 import me_pb2, me_pb2_grpc
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wa_pb2
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wa_grpc

from rest_facade.errors import from_rpc_error
from server.auth import SIGNED_OUT, split_api_key
from tests.conftest import token_md


def _err(call) -> tuple[grpc.StatusCode, dict]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), from_rpc_error(info.value)[1]


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        (None, 'Cookie "coder_session_token" or query parameter must be provided.'),
        ("garbage", "Invalid API key format: incorrect amount of API key parts"),
        ("short-" + "a" * 22, "Invalid API key format: invalid API key id length"),
        ("a" * 10 + "-short", "Invalid API key format: invalid API key secret length"),
        ("a" * 10 + "-" + "b" * 22, "API key is invalid."),
    ],
)
def test_user_key_failures(channel, provision, token, detail) -> None:
    ws = provision.workspace()
    stub = wa_grpc.WorkspaceAgentsServiceStub(channel)
    md = token_md(token) if token else ()
    code, body = _err(
        lambda: stub.GetWorkspaceAgent(
            wa_pb2.GetWorkspaceAgentRequest(id=ws.agent("main").id), metadata=md
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert body == {"message": SIGNED_OUT, "detail": detail}


def test_wrong_secret_for_real_key_id(channel, provision) -> None:
    ws = provision.workspace()
    key_id, _ = split_api_key(ws.api_key)
    stub = wa_grpc.WorkspaceAgentsServiceStub(channel)
    code, body = _err(
        lambda: stub.GetWorkspaceAgent(
            wa_pb2.GetWorkspaceAgentRequest(id=ws.agent("main").id),
            metadata=token_md(f"{key_id}-{'z' * 22}"),
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert body["detail"] == "API key secret is invalid."


def test_agent_token_failures(channel, provision) -> None:
    ws = provision.workspace()
    stub = me_pb2_grpc.MeServiceStub(channel)
    req = me_pb2.GetGitSSHKeyRequest()
    code, body = _err(lambda: stub.GetGitSSHKey(req))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert body == {"message": 'Cookie "coder_session_token" must be provided.'}
    code, body = _err(lambda: stub.GetGitSSHKey(req, metadata=token_md("not-a-uuid")))
    assert body == {
        "message": "Workspace agent token invalid.",
        "detail": "An agent token must be a valid UUIDv4. (len 10)",
    }
    code, body = _err(lambda: stub.GetGitSSHKey(req, metadata=token_md(str(uuid.uuid4()))))
    assert body["message"] == "Workspace agent not authorized."
    # The user's API key is not an agent token.
    code, body = _err(lambda: stub.GetGitSSHKey(req, metadata=token_md(ws.api_key)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_agent_token_valid_only_for_latest_build(channel, provision) -> None:
    ws = provision.workspace()
    stub = me_pb2_grpc.MeServiceStub(channel)
    old = ws.agent("main").auth_token
    assert stub.GetGitSSHKey(me_pb2.GetGitSSHKeyRequest(), metadata=token_md(old)).public_key
    build = provision.rebuild(ws)
    code, body = _err(
        lambda: stub.GetGitSSHKey(me_pb2.GetGitSSHKeyRequest(), metadata=token_md(old))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert body["message"] == "Workspace agent not authorized."
    new = next(a for a in build.agents if a.name == "main").auth_token
    assert stub.GetGitSSHKey(me_pb2.GetGitSSHKeyRequest(), metadata=token_md(new)).public_key


def test_sub_agent_token_works(channel, provision) -> None:
    ws = provision.workspace()
    stub = me_pb2_grpc.MeServiceStub(channel)
    child = ws.agent("child")
    assert child.parent_id == ws.agent("main").id
    assert stub.GetGitSSHKey(
        me_pb2.GetGitSSHKeyRequest(), metadata=token_md(child.auth_token)
    ).private_key


def test_deleted_workspace_token_rejected(channel, provision) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    provision.rebuild(ws, transition="delete")
    code, _ = _err(
        lambda: me_pb2_grpc.MeServiceStub(channel).GetGitSSHKey(
            me_pb2.GetGitSSHKeyRequest(), metadata=token_md(token)
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_calls_survive_a_database_restart(core, channel, provision, db) -> None:
    """Every connection this process holds dies (as in a PostgreSQL restart);
    the next calls still answer: the lookups that start each call retry once
    on a new connection instead of failing on the kept one."""
    if not db.is_postgres:
        pytest.skip("SQLite has no server to restart")
    import sqlalchemy as sa
    from coder.agent.v2 import agent_pb2, agent_pb2_grpc

    ws = provision.workspace()
    main = ws.agent("main")
    users = wa_grpc.WorkspaceAgentsServiceStub(channel)
    agents = agent_pb2_grpc.AgentStub(channel)
    request = wa_pb2.GetWorkspaceAgentRequest(id=main.id)
    assert users.GetWorkspaceAgent(request, metadata=token_md(ws.api_key)).agent.id == main.id
    agents.GetManifest(agent_pb2.GetManifestRequest(), metadata=token_md(main.auth_token))
    with db.engine.connect() as admin:
        killed = admin.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))"
                " FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ).scalar()
    assert killed >= 1
    assert users.GetWorkspaceAgent(request, metadata=token_md(ws.api_key)).agent.id == main.id
    manifest = agents.GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(main.auth_token)
    )
    assert manifest.agent_id


def test_who_am_i_names_the_calling_agent(channel, provision) -> None:
    ws = provision.workspace()
    stub = me_pb2_grpc.MeServiceStub(channel)
    for name in ("main", "child"):
        agent = ws.agent(name)
        resp = stub.WhoAmI(me_pb2.WhoAmIRequest(), metadata=token_md(agent.auth_token))
        assert (resp.agent_id, resp.workspace_id) == (agent.id, ws.workspace_id)
    code, body = _err(lambda: stub.WhoAmI(me_pb2.WhoAmIRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert body == {"message": 'Cookie "coder_session_token" must be provided.'}
    code, body = _err(
        lambda: stub.WhoAmI(me_pb2.WhoAmIRequest(), metadata=token_md(str(uuid.uuid4())))
    )
    assert body["message"] == "Workspace agent not authorized."
