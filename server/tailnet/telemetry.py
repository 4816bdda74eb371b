"""Network telemetry from tailnet peers (``coder.tailnet.v2.Tailnet/
PostTelemetry``): Coder forwards it to its telemetry service; agentplane
keeps each peer's newest event (and newest netcheck), so that an agent's
diagnosis can say which DERP region it prefers and whether UDP works.

Events are kept without the DERP map they carry (every replica has the
map), and only for callers with a peer id: agents (their id) and clients
that present a resume token (its subject); other clients' events are
accepted and dropped, as Coder drops them when telemetry is off.
"""

from __future__ import annotations

import datetime as dt
import uuid

from coder.tailnet.v2 import tailnet_pb2

from server.clock import Clock
from server.storage import tailnettelemetry
from server.storage.db import Database

# Kept as long as this after a peer's last report.
TELEMETRY_RETENTION = dt.timedelta(days=7)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _time(event: tailnet_pb2.TelemetryEvent, fallback: dt.datetime) -> dt.datetime:
    if not event.HasField("time"):
        return fallback
    ts = event.time
    try:
        return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    except OverflowError:
        return fallback


def record_telemetry(
    db: Database,
    clock: Clock,
    *,
    peer_id: uuid.UUID | None,
    events: list[tailnet_pb2.TelemetryEvent],
) -> None:
    if peer_id is None or not events:
        return
    now = clock.now()
    # An event dated in the future would pin itself as "newest" forever.
    dated = [(min(_time(e, now), now), e) for e in events]
    newest_time, newest = max(dated, key=lambda pair: pair[0])
    with_netcheck = [(t, e) for t, e in dated if e.HasField("latest_netcheck")]
    netcheck = netcheck_time = None
    if with_netcheck:
        netcheck_time, netcheck_event = max(with_netcheck, key=lambda pair: pair[0])
        netcheck = netcheck_event.latest_netcheck.SerializeToString()
    stored = tailnet_pb2.TelemetryEvent()
    stored.CopyFrom(newest)
    stored.ClearField("derp_map")
    with db.engine.begin() as conn:
        tailnettelemetry.record_event(
            conn,
            peer_id=peer_id,
            event=stored.SerializeToString(),
            event_time=newest_time,
            netcheck=netcheck,
            netcheck_time=netcheck_time,
            now=now,
        )
