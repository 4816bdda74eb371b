"""Tailnet nodes (``coder.tailnet.v2.Node``): the sanity limits a posted
node must meet, and what ``GET /workspaceagents/{id}`` shows of an agent's
node (``latency``, as coderd derives it).

The limits are agentplane's (Coder checks only the addresses): far above
what a real node carries (a handful of addresses and endpoints, one latency
per DERP region and IP family), so that one peer cannot make every
receiver of its node hold megabytes, nor send values no client can use.
"""

from __future__ import annotations

import math
from typing import Any

from coder.tailnet.v2 import tailnet_pb2

from server.errors import InvalidArgument

MAX_NODE_BYTES = 64 << 10
MAX_ADDRESSES = 64
MAX_ALLOWED_IPS = 1024
MAX_ENDPOINTS = 256
MAX_MAP_ENTRIES = 512
MAX_KEY_BYTES = 128
MAX_TEXT = 1024
# DERP latencies are seconds; an hour is already no relay at all.
MAX_LATENCY_SECONDS = 3600.0
# google.protobuf.Timestamp's valid range (0001-01-01 .. 9999-12-31).
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def _bad(what: str) -> InvalidArgument:
    return InvalidArgument(f"invalid node: {what}")


def check_node(node: tailnet_pb2.Node) -> bytes:
    """The node's canonical bytes, or InvalidArgument naming what is wrong.
    Canonical (deterministic map order) so that equal nodes compare equal
    byte for byte."""
    data = node.SerializeToString(deterministic=True)
    if len(data) > MAX_NODE_BYTES:
        raise _bad(f"{len(data)} bytes, at most {MAX_NODE_BYTES}")
    if len(node.key) > MAX_KEY_BYTES:
        raise _bad(f"key of {len(node.key)} bytes")
    if len(node.disco) > MAX_TEXT:
        raise _bad("disco key too long")
    if node.preferred_derp < 0:
        raise _bad(f"preferred_derp {node.preferred_derp}")
    for name, values, limit in (
        ("addresses", node.addresses, MAX_ADDRESSES),
        ("allowed_ips", node.allowed_ips, MAX_ALLOWED_IPS),
        ("endpoints", node.endpoints, MAX_ENDPOINTS),
    ):
        if len(values) > limit:
            raise _bad(f"{len(values)} {name}, at most {limit}")
        if any(len(v) > MAX_TEXT for v in values):
            raise _bad(f"an entry of {name} is too long")
    if len(node.derp_latency) > MAX_MAP_ENTRIES:
        raise _bad(f"{len(node.derp_latency)} derp_latency entries, at most {MAX_MAP_ENTRIES}")
    for region, seconds in node.derp_latency.items():
        if len(region) > MAX_TEXT:
            raise _bad("a derp_latency key is too long")
        if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_LATENCY_SECONDS:
            raise _bad(f"derp_latency[{region[:64]!r}] = {seconds}")
    if len(node.derp_forced_websocket) > MAX_MAP_ENTRIES:
        raise _bad("too many derp_forced_websocket entries")
    if any(len(v) > MAX_TEXT for v in node.derp_forced_websocket.values()):
        raise _bad("a derp_forced_websocket reason is too long")
    if node.HasField("as_of"):
        ts = node.as_of
        if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
            raise _bad("as_of is not a valid timestamp")
    return data


def region_latency(node_bytes: bytes, regions: Any) -> dict[str, tuple[float, bool]]:
    """coderd's ``latency`` of an agent: its node's DERP latencies (region
    id -> seconds; keys like ``"1-v4"``) keyed by region *name* (``Unnamed
    <id>`` for a region the map lacks) as (milliseconds, preferred).

    Keys whose region part is not a number are skipped (coderd answers 500
    for the whole agent); of a region's several entries (IPv4 and IPv6) the
    lowest latency is shown (coderd shows whichever its map iteration
    reaches last)."""
    node = tailnet_pb2.Node.FromString(node_bytes)
    out: dict[str, tuple[float, bool]] = {}
    for raw, seconds in node.derp_latency.items():
        head = raw.split("-", 1)[0]
        if not head.isdigit() or len(head) > 18:
            continue
        region_id = int(head)
        region = regions.get(region_id) if region_id in regions else None
        name = region.region_name if region is not None else f"Unnamed {region_id}"
        ms = seconds * 1000
        previous = out.get(name)
        if previous is None or ms < previous[0]:
            out[name] = (ms, node.preferred_derp == region_id)
    return out
