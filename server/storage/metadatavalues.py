"""Collected metadata values (``BatchUpdateMetadata``): the latest value,
error and collection time of each key an agent's spec defines.

Values are not part of the agent's cached view (only the definitions are),
so these writes do not bump the agent's revision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from server.storage.metadata import WorkspaceAgentMetadatum

_METADATA = WorkspaceAgentMetadatum.__table__
# A key the spec does not define matches no row: ignored, as in Coder.
_SET_VALUE = (
    sa.update(_METADATA)
    .where(
        _METADATA.c.workspace_agent_id == sa.bindparam("agent_id"),
        _METADATA.c.key == sa.bindparam("item_key"),
    )
    .values(
        value=sa.bindparam("value"),
        error=sa.bindparam("error"),
        collected_at=sa.bindparam("collected_at"),
    )
)


@dataclasses.dataclass(frozen=True)
class MetadataValue:
    key: str
    value: str
    error: str


def update_metadata_values(
    conn: sa.Connection,
    *,
    agent_id: uuid.UUID,
    values: Sequence[MetadataValue],
    collected_at: dt.datetime,
) -> None:
    if not values:
        return
    conn.execute(
        _SET_VALUE,
        [
            {
                "agent_id": agent_id,
                "item_key": v.key,
                "value": v.value,
                "error": v.error,
                "collected_at": collected_at,
            }
            for v in values
        ],
    )
