"""Provisioning at the concern level, against a real database."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from server.admin import users, workspaces
from server.auth import hash_agent_token
from server.errors import Conflict, InvalidArgument, NotFound
from server.storage import agents as agent_store
from server.storage.agents import WorkspaceAgent
from server.storage.users import ApiKey, GitSSHKey
from tests.conftest import DEFAULT_SPEC


def _count(db, model) -> int:
    with db.session() as s:
        return s.exec(sa.select(sa.func.count()).select_from(model)).one()[0]


def test_create_user_stores_only_hashes_and_an_ssh_key(db, clock) -> None:
    created = users.create_user(db, clock, username="alice", email="a@x.io", role="")
    key_id, secret = created.api_key.split("-")
    assert len(key_id) == 10 and len(secret) == 22 and secret.isalnum()
    with db.session() as s:
        key = s.get(ApiKey, key_id)
        assert key is not None and secret.encode() not in key.hashed_secret
        ssh = s.get(GitSSHKey, created.user.id)
    assert created.user.role == "member"
    assert ssh.public_key.startswith("ssh-ed25519 ")
    loaded = serialization.load_ssh_private_key(ssh.private_key.encode(), password=None)
    assert (
        loaded.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        == ssh.public_key
    )


def test_duplicate_username_conflicts(db, clock) -> None:
    users.create_user(db, clock, username="bob", email="", role="member")
    with pytest.raises(Conflict):
        users.create_user(db, clock, username="bob", email="", role="member")


@pytest.mark.parametrize(("username", "role"), [("", "member"), ("a b", "member"), ("c", "god")])
def test_bad_user_fields(db, clock, username: str, role: str) -> None:
    with pytest.raises(InvalidArgument):
        users.create_user(db, clock, username=username, email="", role=role)


def test_workspace_agents_tokens_are_hashed(db, clock) -> None:
    users.create_user(db, clock, username="carol", email="", role="member")
    result = workspaces.create_workspace(
        db, clock, owner_ref="carol", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    assert result.build_number == 1
    main, child = result.agents
    assert child.parent_id == main.id and child.resource_id == main.resource_id
    with db.session() as s:
        stored = s.get(WorkspaceAgent, main.id)
        assert stored.auth_token_hash == hash_agent_token(main.auth_token)
        # No column holds the clear token.
        row = s.exec(
            sa.select(WorkspaceAgent.__table__).where(WorkspaceAgent.__table__.c.id == main.id)
        ).one()
    assert main.auth_token not in json.dumps([str(v) for v in row])


def test_new_build_invalidates_old_tokens(db, clock) -> None:
    users.create_user(db, clock, username="dave", email="", role="member")
    first = workspaces.create_workspace(
        db, clock, owner_ref="dave", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    second = workspaces.build_workspace(
        db, clock, owner_ref="dave", name="ws", spec_json="", transition="start"
    )
    assert second.build_number == 2
    with db.read() as s:
        old = agent_store.get_authenticated_agent_by_token_hash(
            s, token_hash=hash_agent_token(first.agents[0].auth_token)
        )
        new = agent_store.get_authenticated_agent_by_token_hash(
            s, token_hash=hash_agent_token(second.agents[0].auth_token)
        )
    assert old is None
    assert new is not None and new.build.build_number == 2


def test_stop_build_has_no_agents_and_delete_marks_deleted(db, clock) -> None:
    users.create_user(db, clock, username="erin", email="", role="member")
    workspaces.create_workspace(
        db, clock, owner_ref="erin", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    stop = workspaces.build_workspace(
        db, clock, owner_ref="erin", name="ws", spec_json="", transition="stop"
    )
    assert stop.agents == ()
    workspaces.build_workspace(
        db, clock, owner_ref="erin", name="ws", spec_json="", transition="delete"
    )
    with pytest.raises(NotFound):
        workspaces.build_workspace(
            db, clock, owner_ref="erin", name="ws", spec_json="", transition="start"
        )


def test_a_deleted_workspace_is_named_and_its_name_can_be_used_again(db, clock) -> None:
    """`build` and `create` agree about a deleted workspace: it is gone (and
    not built again), and its name is free for a new one, as in Coder."""
    users.create_user(db, clock, username="gail", email="", role="member")
    first = workspaces.create_workspace(
        db, clock, owner_ref="gail", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    with pytest.raises(Conflict) as taken:
        workspaces.create_workspace(
            db, clock, owner_ref="gail", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
        )
    assert taken.value.message == "Workspace 'ws' of 'gail' already exists."
    assert "workspaces build" in taken.value.detail
    workspaces.build_workspace(
        db, clock, owner_ref="gail", name="ws", spec_json="", transition="delete"
    )
    with pytest.raises(NotFound) as gone:
        workspaces.build_workspace(
            db, clock, owner_ref="gail", name="ws", spec_json="", transition="start"
        )
    assert gone.value.message == "Workspace 'ws' of 'gail' was deleted."
    assert "workspaces create can make a new one with this name" in gone.value.detail
    again = workspaces.create_workspace(
        db, clock, owner_ref="gail", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    assert again.workspace_id != first.workspace_id and again.build_number == 1
    rebuilt = workspaces.build_workspace(
        db, clock, owner_ref="gail", name="ws", spec_json="", transition="start"
    )
    assert (rebuilt.workspace_id, rebuilt.build_number) == (again.workspace_id, 2)


def test_bad_spec_writes_nothing(db, clock) -> None:
    users.create_user(db, clock, username="frank", email="", role="member")
    bad = {"resources": [{"name": "r", "agents": [{"name": "ok"}, {"name": "bad name"}]}]}
    before = _count(db, WorkspaceAgent)
    with pytest.raises(InvalidArgument) as info:
        workspaces.create_workspace(
            db, clock, owner_ref="frank", name="ws", spec_json=json.dumps(bad)
        )
    assert "resources[0].agents[1].name" in dict(info.value.validations)
    assert _count(db, WorkspaceAgent) == before
    # The workspace itself was not created either.
    users_ws = workspaces.create_workspace(
        db, clock, owner_ref="frank", name="ws", spec_json=json.dumps(DEFAULT_SPEC)
    )
    assert users_ws.build_number == 1


def test_unknown_owner(db, clock) -> None:
    with pytest.raises(NotFound):
        workspaces.create_workspace(
            db, clock, owner_ref=str(uuid.uuid4()), name="ws", spec_json=json.dumps(DEFAULT_SPEC)
        )


def test_instance_identity_agent_has_no_token(db, clock) -> None:
    users.create_user(db, clock, username="gina", email="", role="member")
    spec = {
        "resources": [
            {
                "name": "vm",
                "agents": [
                    {"name": "a", "auth": "aws-instance-identity", "instance_id": " i-123 "}
                ],
            }
        ]
    }
    result = workspaces.create_workspace(
        db, clock, owner_ref="gina", name="ws", spec_json=json.dumps(spec)
    )
    agent = result.agents[0]
    assert agent.auth_token is None and agent.auth_instance_id == "i-123"
