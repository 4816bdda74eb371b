"""Coder's JSON conventions: RFC 3339 times like Go's encoder, UUIDs as
strings, durations in nanoseconds, DERP maps in tailcfg's camelCase."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from flask import Response
from google.protobuf import duration_pb2, timestamp_pb2

NANOS_PER_SECOND = 1_000_000_000


# Go's encoder (as coderd writes responses) keeps non-ASCII text as UTF-8 but
# escapes <, >, & (HTML-safe) and U+2028/U+2029. These bytes occur only
# inside strings in JSON text, so replacing them after encoding is exact.
_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


# Non-string keys as strings (like json.dumps); datetimes and dataclasses are
# refused rather than encoded in orjson's own way: times must go through
# rfc3339()/timestamp() to look like Go's.
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def dumps_bytes(body: Any) -> bytes:
    """Compact JSON, byte for byte as Go's encoder writes it (orjson: a
    tenth of the stdlib encoder's time on an agent object)."""
    try:
        out = orjson.dumps(body, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # A lone surrogate reached a response: encode it as Go would (U+FFFD).
        out = orjson.dumps(without_lone_surrogates(body), option=_OPTIONS)
    for raw, escaped in _GO_ESCAPES:
        if raw in out:
            out = out.replace(raw, escaped)
    return out


def go_float(value: float) -> float | int:
    """A float64 as Go writes it: whole numbers without ".0" (Go: 12, not
    12.0) below 1e21, where Go switches to exponent form."""
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def sorted_map(value: Any) -> dict[str, Any]:
    """A JSON object from a map, keys sorted as Go's encoder sorts them."""
    return dict(sorted(value.items()))


def without_lone_surrogates(value: Any) -> Any:
    """Go's decoder turns a lone UTF-16 surrogate (``"\\ud800"``) into U+FFFD;
    Python keeps it, and it could then be neither stored nor encoded. Strings
    (keys included) are repaired the same way as Go does."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, list):
        return [without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    return value


def dumps(body: Any) -> str:
    return dumps_bytes(body).decode()


# What coderd's httpapi.Write sends: this content type, and the encoder's
# trailing newline after the value.
CONTENT_TYPE = "application/json; charset=utf-8"


def respond(body: Any, status: int = 200) -> Response:
    return Response(dumps_bytes(body) + b"\n", status=status, content_type=CONTENT_TYPE)


def rfc3339(value: dt.datetime) -> str:
    """Go's RFC3339Nano in UTC: trailing fractional zeros trimmed, 'Z' zone."""
    value = value.astimezone(dt.UTC)
    return _rfc3339(value.replace(tzinfo=None, microsecond=0), value.microsecond)


def _rfc3339(whole_seconds: dt.datetime, micros: int) -> str:
    # isoformat, unlike strftime("%Y"), pads years below 1000 as Go does.
    base = whole_seconds.isoformat()
    if micros:
        base += f".{micros:06d}".rstrip("0")
    return base + "Z"


_EPOCH = dt.datetime(1970, 1, 1)
_SECOND = dt.timedelta(seconds=1)


def timestamp(msg: Any, field: str) -> str | None:
    """A Timestamp field as rfc3339() writes it, or None when unset.
    Formatted from seconds and nanos directly (an agent object carries eight
    of these; going through ToDatetime and strftime was most of its cost)."""
    if not msg.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, field)
    return _rfc3339(_EPOCH + ts.seconds * _SECOND, ts.nanos // 1000)


def duration_ns(d: duration_pb2.Duration) -> int:
    return d.seconds * NANOS_PER_SECOND + d.nanos


def duration_seconds(d: duration_pb2.Duration) -> int:
    return d.seconds


def derp_map(msg: Any) -> dict[str, Any]:
    """coder.tailnet.v2.DERPMap -> tailcfg.DERPMap JSON (Go omits empty fields)."""
    out: dict[str, Any] = {}
    if msg.HasField("home_params") and msg.home_params.region_score:
        out["homeParams"] = {
            "regionScore": {
                str(k): go_float(v)
                for k, v in sorted(msg.home_params.region_score.items(), key=lambda kv: str(kv[0]))
            }
        }
    regions: dict[str, Any] = {}
    # Go sorts map keys as the strings they encode to ("10" before "9").
    for region_id in sorted(msg.regions, key=str):
        region = msg.regions[region_id]
        item: dict[str, Any] = {}
        if region.embedded_relay:
            item["embeddedRelay"] = True
        item["regionID"] = region.region_id
        item["regionCode"] = region.region_code
        item["regionName"] = region.region_name
        if region.avoid:
            item["avoid"] = True
        nodes = []
        for node in region.nodes:
            n: dict[str, Any] = {
                "name": node.name,
                "regionID": node.region_id,
                "hostName": node.host_name,
            }
            for field, key in (
                ("cert_name", "certName"),
                ("ipv4", "ipv4"),
                ("ipv6", "ipv6"),
                ("stun_port", "stunport"),
                ("stun_only", "stunonly"),
                ("derp_port", "derpport"),
                ("insecure_for_tests", "insecureForTests"),
                ("force_http", "forceHTTP"),
                ("stun_test_ip", "stuntestIP"),
                ("can_port_80", "canPort80"),
            ):
                value = getattr(node, field)
                if value:
                    n[key] = value
            nodes.append(n)
        item["nodes"] = nodes
        regions[str(region_id)] = item
    out["regions"] = regions
    return out


# tailnet.Node keys: the protobuf carries Tailscale's binary form ("np" and
# the 32 raw bytes), the JSON its text form ("nodekey:" and hex).
_NODE_KEY_BINARY = b"np"
_NODE_KEY_TEXT = "nodekey:"


def node_json(node: Any) -> dict[str, Any]:
    """coder.tailnet.v2.Node -> Coder's tailnet.Node JSON (the v1 protocol
    of ``me/coordinate`` and ``{id}/coordinate``)."""
    key = bytes(node.key)
    if key.startswith(_NODE_KEY_BINARY) and len(key) == 34:
        key_text = _NODE_KEY_TEXT + key[2:].hex()
    else:
        key_text = _NODE_KEY_TEXT + key.hex()
    return {
        "id": node.id,
        "as_of": timestamp(node, "as_of") or "0001-01-01T00:00:00Z",
        "key": key_text,
        "disco": node.disco,
        "preferred_derp": node.preferred_derp,
        "derp_latency": {k: go_float(v) for k, v in sorted(node.derp_latency.items())},
        "derp_forced_websockets": {
            str(k): v
            for k, v in sorted(node.derp_forced_websocket.items(), key=lambda i: str(i[0]))
        },
        "addresses": list(node.addresses),
        "allowed_ips": list(node.allowed_ips),
        "endpoints": list(node.endpoints),
    }


def node_from_json(value: Any) -> Any:
    """Coder's tailnet.Node JSON -> coder.tailnet.v2.Node; ValueError names
    what is wrong (the node's limits are the core's to check)."""
    from coder.tailnet.v2 import tailnet_pb2

    if not isinstance(value, dict):
        raise ValueError("a node must be a JSON object")
    node = tailnet_pb2.Node()
    try:
        node.id = int(value.get("id") or 0)
        key = value.get("key") or ""
        if key:
            if not isinstance(key, str) or not key.startswith(_NODE_KEY_TEXT):
                raise ValueError('key must be "nodekey:<64 hex digits>"')
            raw = bytes.fromhex(key[len(_NODE_KEY_TEXT) :])
            if len(raw) != 32:
                raise ValueError("key must be 32 bytes")
            node.key = _NODE_KEY_BINARY + raw
        node.disco = str(value.get("disco") or "")
        node.preferred_derp = int(value.get("preferred_derp") or 0)
        for region, seconds in (value.get("derp_latency") or {}).items():
            node.derp_latency[str(region)] = float(seconds)
        for region, how in (value.get("derp_forced_websockets") or {}).items():
            node.derp_forced_websocket[int(region)] = str(how)
        for field in ("addresses", "allowed_ips", "endpoints"):
            items = value.get(field) or []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(f"{field} must be a list of strings")
            getattr(node, field).extend(items)
        as_of = value.get("as_of")
        if as_of:
            node.as_of.FromDatetime(
                dt.datetime.fromisoformat(str(as_of).replace("Z", "+00:00")).astimezone(dt.UTC)
            )
    except (TypeError, OverflowError, AttributeError) as err:
        raise ValueError(f"invalid node: {err}") from None
    return node
