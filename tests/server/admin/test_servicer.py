"""AdminService over the live core: the admin token gate and the JSON-able replies."""

from __future__ import annotations

import json

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc

from rest_facade.errors import from_rpc_error
from tests.conftest import ADMIN_METADATA, DEFAULT_SPEC


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Basic x"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_admin_token_required(channel, metadata, code) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateUser(admin_pb2.CreateUserRequest(username="x"), metadata=metadata)
    assert info.value.code() == code


def test_create_user_token_workspace_build(channel) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    user = stub.CreateUser(
        admin_pb2.CreateUserRequest(username="alice", email="a@x.io"), metadata=ADMIN_METADATA
    )
    assert user.username == "alice" and user.role == "member"
    token = stub.CreateToken(admin_pb2.CreateTokenRequest(user="alice"), metadata=ADMIN_METADATA)
    assert token.api_key != user.api_key and len(token.api_key) == 33
    created = stub.CreateWorkspace(
        admin_pb2.CreateWorkspaceRequest(
            owner=user.id, name="ws", spec_json=json.dumps(DEFAULT_SPEC)
        ),
        metadata=ADMIN_METADATA,
    )
    assert created.build.build_number == 1
    assert [a.name for a in created.build.agents] == ["main", "child"]
    rebuilt = stub.BuildWorkspace(
        admin_pb2.BuildWorkspaceRequest(owner="alice", name="ws", transition="start"),
        metadata=ADMIN_METADATA,
    )
    assert rebuilt.build.build_number == 2
    assert {a.auth_token for a in rebuilt.build.agents}.isdisjoint(
        {a.auth_token for a in created.build.agents}
    )


def test_bad_spec_names_the_field(channel) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    stub.CreateUser(admin_pb2.CreateUserRequest(username="bob"), metadata=ADMIN_METADATA)
    spec = {"resources": [{"name": "r", "agents": [{"name": "a", "apps": [{"slug": "NO"}]}]}]}
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateWorkspace(
            admin_pb2.CreateWorkspaceRequest(owner="bob", name="ws", spec_json=json.dumps(spec)),
            metadata=ADMIN_METADATA,
        )
    status, body = from_rpc_error(info.value)
    assert status == 400
    assert body["validations"][0]["field"] == "resources[0].agents[0].apps[0].slug"


def test_conflicts_and_missing(channel) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    stub.CreateUser(admin_pb2.CreateUserRequest(username="carl"), metadata=ADMIN_METADATA)
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateUser(admin_pb2.CreateUserRequest(username="carl"), metadata=ADMIN_METADATA)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateToken(admin_pb2.CreateTokenRequest(user="nobody"), metadata=ADMIN_METADATA)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
