"""DERPService.GetServerKey: one key pair per deployment, kept in the
database, handed out only with the admin token."""

from __future__ import annotations

import grpc
import pytest
from agentplane.derp.v1 import derp_pb2, derp_pb2_grpc
from nacl.public import PrivateKey

from server.derp.serverkey import get_server_key
from tests.conftest import ADMIN_METADATA


def test_same_key_every_call_and_replica(db, clock, channel) -> None:
    stub = derp_pb2_grpc.DERPServiceStub(channel)
    first = stub.GetServerKey(derp_pb2.GetServerKeyRequest(), metadata=ADMIN_METADATA)
    again = stub.GetServerKey(derp_pb2.GetServerKeyRequest(), metadata=ADMIN_METADATA)
    assert len(first.private_key) == 32
    assert (again.private_key, again.public_key) == (first.private_key, first.public_key)
    # The public half is curve25519's, as NaCl computes it.
    assert bytes(PrivateKey(first.private_key).public_key) == first.public_key
    # Another replica (another process on the same database) reads the same.
    assert get_server_key(db, clock) == (first.private_key, first.public_key)


def test_stored_key_survives_and_is_not_regenerated(db, clock) -> None:
    private, public = get_server_key(db, clock)
    assert get_server_key(db, clock) == (private, public)
    assert private[0] & 7 == 0 and private[31] & 0xC0 == 0x40  # clamped


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("coder-session-token", "x" * 10),), grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_needs_the_admin_token(db, channel, metadata, code) -> None:
    stub = derp_pb2_grpc.DERPServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetServerKey(derp_pb2.GetServerKeyRequest(), metadata=metadata)
    assert err.value.code() == code
