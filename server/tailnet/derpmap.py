"""The deployment's DERP map: loaded from ``--derp-config`` (Tailscale's
``tailcfg.DERPMap`` JSON, as Coder's REST shows it), shared through the
database, rewritten when direct connections are disabled, and converted to
the ``coder.tailnet.v2.DERPMap`` proto for agents.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coder.tailnet.v2 import tailnet_pb2

from server.clock import Clock
from server.storage import derp as derp_store
from server.storage.db import Database

# Coder re-reads the DERP map every 5 s (DERPMapUpdateFrequency).
REFRESH_INTERVAL = dt.timedelta(seconds=5)
# Coder's embedded relay region.
EMBEDDED_REGION_ID = 999

# tailcfg JSON key -> proto field, for DERPNode.
_NODE_FIELDS = {
    "name": "name",
    "regionID": "region_id",
    "hostName": "host_name",
    "certName": "cert_name",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "stunport": "stun_port",
    "stunonly": "stun_only",
    "derpport": "derp_port",
    "insecureForTests": "insecure_for_tests",
    "forceHTTP": "force_http",
    "stuntestIP": "stun_test_ip",
    "canPort80": "can_port_80",
}
_REGION_FIELDS = {
    "regionID": "region_id",
    "embeddedRelay": "embedded_relay",
    "regionCode": "region_code",
    "regionName": "region_name",
    "avoid": "avoid",
}


class DERPConfigError(ValueError):
    """The DERP config file cannot be used."""


def default_derp_map(access_url: str) -> dict[str, Any]:
    """One embedded relay at the access URL, like a default Coder deployment."""
    parts = urlsplit(access_url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    return {
        "regions": {
            str(EMBEDDED_REGION_ID): {
                "embeddedRelay": True,
                "regionID": EMBEDDED_REGION_ID,
                "regionCode": "coder",
                "regionName": "Coder Embedded Relay",
                "nodes": [
                    {
                        "name": f"{EMBEDDED_REGION_ID}b",
                        "regionID": EMBEDDED_REGION_ID,
                        "hostName": parts.hostname or "127.0.0.1",
                        "stunport": -1,
                        "derpport": port,
                        "forceHTTP": not secure,
                    }
                ],
            }
        }
    }


def validate_derp_map(raw: Any, *, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("regions"), dict):
        raise DERPConfigError(f"{source}: a DERP map is an object with a 'regions' object")
    for key, region in raw["regions"].items():
        if not isinstance(region, dict):
            raise DERPConfigError(f"{source}: region {key!r} must be an object")
        try:
            int(key)
        except ValueError:
            raise DERPConfigError(f"{source}: region key {key!r} must be a number") from None
        if not isinstance(region.get("regionID"), int):
            raise DERPConfigError(f"{source}: region {key!r} needs an integer regionID")
        nodes = region.get("nodes", [])
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise DERPConfigError(f"{source}: region {key!r} nodes must be a list of objects")
    return raw


def load_derp_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise DERPConfigError(f"cannot read DERP config {path}: {err.strerror}") from None
    except ValueError as err:
        raise DERPConfigError(f"DERP config {path} is not valid JSON: {err}") from None
    return validate_derp_map(raw, source=str(path))


def without_direct_connections(derp_map: dict[str, Any]) -> dict[str, Any]:
    """Coder's rewrite for --block-direct-connections: no STUN anywhere."""
    out = copy.deepcopy(derp_map)
    for region in out.get("regions", {}).values():
        nodes = [n for n in region.get("nodes", []) if not n.get("stunonly")]
        for node in nodes:
            node["stunport"] = -1
        region["nodes"] = nodes
    return out


def to_proto(derp_map: dict[str, Any]) -> tailnet_pb2.DERPMap:
    msg = tailnet_pb2.DERPMap()
    for region_id, score in (derp_map.get("homeParams") or {}).get("regionScore", {}).items():
        msg.home_params.region_score[int(region_id)] = float(score)
    for key, region in derp_map.get("regions", {}).items():
        target = msg.regions[int(key)]
        for json_key, field in _REGION_FIELDS.items():
            if json_key in region:
                setattr(target, field, region[json_key])
        for node in region.get("nodes", []):
            n = target.nodes.add()
            for json_key, field in _NODE_FIELDS.items():
                if json_key in node:
                    setattr(n, field, node[json_key])
    return msg


class DERPMapSource:
    """The current DERP map, re-read from the database at most every 5 s."""

    def __init__(
        self, db: Database, clock: Clock, *, access_url: str, disable_direct: bool
    ) -> None:
        self._db = db
        self._clock = clock
        self._access_url = access_url
        self._disable_direct = disable_direct
        self._lock = threading.Lock()
        self._cached: tuple[dict[str, Any], tailnet_pb2.DERPMap] | None = None
        self._read_at: dt.datetime | None = None

    def install(self, derp_map: dict[str, Any]) -> None:
        """Stores a configured map for every replica (from --derp-config)."""
        with self._db.session() as session:
            derp_store.upsert_derp_map(session, derp_map=derp_map, now=self._clock.now())
        with self._lock:
            self._cached = None

    def _current(self) -> tuple[dict[str, Any], tailnet_pb2.DERPMap]:
        now = self._clock.now()
        with self._lock:
            if (
                self._cached is not None
                and self._read_at is not None
                and now - self._read_at < REFRESH_INTERVAL
            ):
                return self._cached
        with self._db.read() as conn:
            stored = derp_store.get_derp_map(conn)
        derp_map = stored if stored is not None else default_derp_map(self._access_url)
        if self._disable_direct:
            derp_map = without_direct_connections(derp_map)
        cached = (derp_map, to_proto(derp_map))
        with self._lock:
            self._cached, self._read_at = cached, now
        return cached

    def json(self) -> dict[str, Any]:
        return self._current()[0]

    def proto(self) -> tailnet_pb2.DERPMap:
        return self._current()[1]
