"""The deployment's DERP map: loaded from ``--derp-config`` (Tailscale's
``tailcfg.DERPMap`` JSON, as Coder's REST shows it) or replaced by an admin
(``AdminService/SetDERPMap``, ``agentplane derp-map set``), shared through
the database, rewritten when direct connections are disabled, converted to
the ``coder.tailnet.v2.DERPMap`` proto for agents, and followed
(``Tailnet/StreamDERPMaps``: the map at once, then each change).

A replacement is published (``DERP_MAP``) in the transaction that stores
it, so followers on every replica see it as soon as it commits; a change
made behind the server's back (a direct database edit) is seen by the 5 s
re-read Coder does too.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coder.tailnet.v2 import tailnet_pb2

from server.clock import Clock
from server.pubsub import DERP_MAP
from server.storage import derp as derp_store
from server.storage.db import Database

log = logging.getLogger(__name__)

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
    # Every field must fit its proto type (a string where a number belongs,
    # a port past int32) now, not when the map is first sent to agents.
    try:
        to_proto(raw)
    except (TypeError, ValueError, OverflowError) as err:
        raise DERPConfigError(f"{source}: {err}") from None
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
        """Stores a map for every replica (``--derp-config``, or an admin's
        replacement); followers everywhere get it once this commits."""
        with self._db.session() as session:
            derp_store.upsert_derp_map(session, derp_map=derp_map, now=self._clock.now())
            self._db.pubsub.publish(session, DERP_MAP, "current")
        self.invalidate()

    def invalidate(self) -> None:
        """The next read goes to the database."""
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


class DERPMapWatch:
    """Followers of the DERP map in this process share one reader, which
    re-reads when a replacement is published and every 5 s (for changes
    made without one), while anyone follows."""

    def __init__(self, source: DERPMapSource, db: Database) -> None:
        self._source = source
        self._db = db
        self._followers = 0
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        # The map as the watcher last read it, and its canonical bytes.
        self._map: tailnet_pb2.DERPMap | None = None
        self._current: bytes | None = None

    async def _watch(self) -> None:
        with self._db.pubsub.subscribe((DERP_MAP, "current")) as sub:
            while True:
                await sub.wait(REFRESH_INTERVAL.total_seconds())
                try:
                    self._source.invalidate()
                    latest = self._source.proto()
                except Exception:
                    log.warning("could not re-read the DERP map", exc_info=True)
                    continue
                latest_bytes = latest.SerializeToString(deterministic=True)
                if latest_bytes != self._current:
                    self._map, self._current = latest, latest_bytes
                    changed, self._changed = self._changed, None
                    if changed is not None and not changed.done():
                        changed.set_result(None)

    def _next_change(self) -> asyncio.Future[None]:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def follow(self) -> AsyncIterator[tailnet_pb2.DERPMap]:
        """The current map, then the map again each time it changes."""
        self._followers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="derp-map-watch")
        try:
            sent = self._source.proto()
            sent_bytes = sent.SerializeToString(deterministic=True)
            yield sent
            while True:
                # Taken before looking, so a change right after the look
                # still wakes this follower.
                change = self._next_change()
                if self._current is not None and self._current != sent_bytes:
                    assert self._map is not None
                    sent, sent_bytes = self._map, self._current
                    yield sent
                    continue
                await asyncio.shield(change)
        finally:
            self._followers -= 1
            if self._followers == 0 and self._task is not None:
                self._task.cancel()
                self._task = None
                self._map = self._current = None
