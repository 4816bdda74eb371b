"""The relay's key, fetched from the core at start
(``agentplane.derp.v1.DERPService/GetServerKey``, admin token): the same
key on every replica, generated once per deployment and kept in the
database."""

from __future__ import annotations

import grpc
from agentplane.derp.v1 import derp_pb2, derp_pb2_grpc

FETCH_TIMEOUT_SECONDS = 10.0


async def fetch_server_key(
    channel: grpc.aio.Channel, *, admin_token: str, timeout: float = FETCH_TIMEOUT_SECONDS
) -> bytes:
    """The deployment's DERP private key (32 raw bytes)."""
    stub = derp_pb2_grpc.DERPServiceStub(channel)
    response = await stub.GetServerKey(
        derp_pb2.GetServerKeyRequest(),
        metadata=(("authorization", f"Bearer {admin_token}"),),
        timeout=timeout,
    )
    return bytes(response.private_key)
