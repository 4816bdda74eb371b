"""Who a Coordinate peer is and what it may ask: Coder's coordinatee
policies (``tailnet/tunnel.go``), with Coder's messages. A refusal ends the
peer's stream with the message as the status detail.

* ``AgentPolicy`` — an agent (agent token): no tunnels of its own; its node
  may only claim its own service address (a /128 derived from its UUID under
  either of Coder's prefixes, or the legacy fixed address).
* ``ClientPolicy`` — a user's client of one agent (metadata ``agent-id``, or
  REST ``{id}/coordinate``): tunnels only to that agent, /128 addresses, no
  ready_for_handshake.
* ``UserPolicy`` — a user-scoped client (``/tailnet``): tunnels to any agent
  of a workspace the user may reach (their own; every one for role owner).
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from typing import Any

from coder.tailnet.v2 import tailnet_pb2

from server.auth import can_read_workspace
from server.errors import InvalidArgument, NotFound, PermissionDenied
from server.storage import agents as agent_store
from server.storage.db import Database
from server.tailnet.coordinator import parse_peer_id

# Coder's service prefixes: the first 6 bytes, then bytes 6..16 of the UUID.
TAILSCALE_SERVICE_PREFIX = ipaddress.IPv6Address("fd7a:115c:a1e0::").packed[:6]
CODER_SERVICE_PREFIX = ipaddress.IPv6Address("fd60:627a:a42b::").packed[:6]
LEGACY_AGENT_ADDRESS = ipaddress.IPv6Address("fd7a:115c:a1e0:49d6:b259:b7ac:b1b2:48f4")

# A user-scoped client's tunnel check is a database read; its answer is
# reused this long (a client opens a tunnel once per agent, but may reopen).
TUNNEL_AUTH_CACHE_SECONDS = 5.0


def service_addresses(agent_id: uuid.UUID) -> frozenset[ipaddress.IPv6Address]:
    tail = agent_id.bytes[6:]
    return frozenset(
        {
            ipaddress.IPv6Address(TAILSCALE_SERVICE_PREFIX + tail),
            ipaddress.IPv6Address(CODER_SERVICE_PREFIX + tail),
            LEGACY_AGENT_ADDRESS,
        }
    )


def _parse_address(text: str) -> tuple[Any, int]:
    """(address, prefix bits) of a CIDR string, as Go's netip.ParsePrefix
    reads it (the host bits are kept). By hand: ``ip_interface`` costs
    0.4 ms, and every node update of every peer goes through here."""
    host, sep, bits = text.partition("/")
    try:
        if not sep:
            raise ValueError("no '/'")
        if not bits.isdigit() or len(bits) > 3:
            raise ValueError(f"bad bits after slash: {bits[:10]!r}")
        address = ipaddress.ip_address(host)
        if int(bits) > address.max_prefixlen:
            raise ValueError(f"prefix length {bits} too large for {host}")
    except ValueError as err:
        raise InvalidArgument(
            f'parse node address: netip.ParsePrefix("{text[:100]}"): {err}'
        ) from None
    return address, int(bits)


def _check_single_addresses(node: tailnet_pb2.Node) -> list[Any]:
    out = []
    for text in node.addresses:
        address, bits = _parse_address(text)
        if bits != 128:
            raise InvalidArgument(f"invalid address bits, expected 128, got {bits}")
        out.append(address)
    return out


def _check_client_request(req: tailnet_pb2.CoordinateRequest) -> None:
    if req.HasField("update_self"):
        _check_single_addresses(req.update_self.node)
    if req.ready_for_handshake:
        raise PermissionDenied("clients may not send ready_for_handshake")


class AgentPolicy:
    kind = "agent"

    def __init__(self, agent_id: uuid.UUID) -> None:
        self.agent_id = agent_id
        self._addresses = service_addresses(agent_id)

    def authorize(self, req: tailnet_pb2.CoordinateRequest) -> None:
        if req.HasField("add_tunnel"):
            raise PermissionDenied("agents cannot open tunnels")
        if req.HasField("update_self"):
            for address in _check_single_addresses(req.update_self.node):
                if address not in self._addresses:
                    raise PermissionDenied(f"invalid node address, got {address}")


class ClientPolicy:
    kind = "client"

    def __init__(self, agent_id: uuid.UUID) -> None:
        self.agent_id = agent_id

    def authorize(self, req: tailnet_pb2.CoordinateRequest) -> None:
        if req.HasField("add_tunnel"):
            dst = parse_peer_id(req.add_tunnel.id, "parse add tunnel id")
            if dst != self.agent_id:
                raise PermissionDenied(f"invalid agent id, expected {self.agent_id}, got {dst}")
        _check_client_request(req)


class UserPolicy:
    kind = "user"

    def __init__(self, db: Database, user: Any) -> None:
        self._db = db
        self.user = user
        self._allowed: dict[uuid.UUID, float] = {}

    def may_tunnel(self, agent_id: uuid.UUID) -> bool:
        now = time.monotonic()
        until = self._allowed.get(agent_id)
        if until is not None and until > now:
            return True
        with self._db.read() as conn:
            found = agent_store.get_agent_in_workspace(conn, agent_id=agent_id)
        ok = (
            found is not None
            and not found.workspace.deleted
            and can_read_workspace(self.user, found.workspace.owner_id)
        )
        if ok:
            if len(self._allowed) > 4096:
                self._allowed.clear()
            self._allowed[agent_id] = now + TUNNEL_AUTH_CACHE_SECONDS
        return ok

    def authorize(self, req: tailnet_pb2.CoordinateRequest) -> None:
        if req.HasField("add_tunnel"):
            dst = parse_peer_id(req.add_tunnel.id, "parse add tunnel id")
            if not self.may_tunnel(dst):
                raise NotFound("workspace agent not found or you do not have permission")
        _check_client_request(req)
