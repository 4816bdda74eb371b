"""BatchUpdateMetadata: the agent reports collected metadata values.

Serves ``coder.agent.v2.Agent/BatchUpdateMetadata`` with Coder's limits:
values and errors longer than 2048 bytes are cut (the error then says so),
the keys of one request may total at most 6144 bytes (Coder keeps them under
PostgreSQL's NOTIFY cap; later keys are dropped and the call fails *after*
the accepted ones are stored), keys the spec does not define are ignored,
and the collection time is the server's, not the agent's. Values are
written through a write-behind buffer (``MetadataWriter``) that keeps only
the newest value of each key, as Coder's metadata batcher does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

from coder.agent.v2 import agent_pb2

from server.agentapi.writebehind import WriteBehind
from server.clock import Clock
from server.errors import LimitExceeded
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database
from server.storage.metadatavalues import MetadataValue, update_metadata_values

MAX_ALL_KEYS_BYTES = 6144
MAX_VALUE_BYTES = 2048
MAX_ERROR_BYTES = MAX_VALUE_BYTES


@dataclasses.dataclass(frozen=True)
class MetadataReport:
    """One collected value of one of an agent's keys."""

    agent_id: uuid.UUID
    collected_at: dt.datetime
    value: MetadataValue


def _report_key(report: MetadataReport) -> tuple[uuid.UUID, str]:
    return report.agent_id, report.value.key


class MetadataWriter(WriteBehind[MetadataReport]):
    """Buffers values by (agent, key): a newer value of a key replaces one
    still waiting, as Coder's metadata batcher keeps only the newest."""

    def __init__(self, db: Database) -> None:
        self._db = db
        super().__init__(
            "agent metadata", self._write_reports, key=_report_key, run_off_loop=db.offload
        )

    def _write_reports(self, reports: Sequence[MetadataReport]) -> None:
        by_report: dict[tuple[uuid.UUID, dt.datetime], list[MetadataValue]] = {}
        for report in reports:
            by_report.setdefault((report.agent_id, report.collected_at), []).append(report.value)
        with self._db.engine.begin() as conn:
            for (agent_id, at), values in by_report.items():
                update_metadata_values(conn, agent_id=agent_id, values=values, collected_at=at)


def _cut(data: bytes, limit: int) -> str:
    # Go slices bytes; a character split at the cut is dropped, not stored
    # half (PostgreSQL refuses invalid UTF-8).
    return data[:limit].decode("utf-8", "ignore")


def batch_update_metadata(
    writer: MetadataWriter,
    clock: Clock,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.BatchUpdateMetadataRequest,
) -> agent_pb2.BatchUpdateMetadataResponse:
    collected_at = clock.now()
    all_keys = 0
    over_cap = False
    values: list[MetadataValue] = []
    for item in request.metadata:
        all_keys += len(item.key.encode())
        if all_keys > MAX_ALL_KEYS_BYTES:
            over_cap = True
            break
        value, error = item.result.value, item.result.error
        value_bytes, error_bytes = value.encode(), error.encode()
        message = error
        if len(value_bytes) > MAX_VALUE_BYTES:
            message = f"value of {len(value_bytes)} bytes exceeded {MAX_VALUE_BYTES} bytes"
            value = _cut(value_bytes, MAX_VALUE_BYTES)
        if len(error_bytes) > MAX_ERROR_BYTES:
            message = f"error of {len(error_bytes)} bytes exceeded {MAX_ERROR_BYTES} bytes"
        values.append(MetadataValue(key=item.key, value=value, error=message))
    for value in values:
        writer.add(MetadataReport(agent_id=caller.agent.id, collected_at=collected_at, value=value))
    if over_cap:
        raise LimitExceeded(
            f"metadata keys of {all_keys} bytes exceeded {MAX_ALL_KEYS_BYTES} bytes"
        )
    return agent_pb2.BatchUpdateMetadataResponse()
