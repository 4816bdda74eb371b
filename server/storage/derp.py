"""The deployment's DERP map, shared by every replica through the database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from server.storage.types import json_column, required_timestamp

# A deployment has exactly one DERP map; the row id is fixed.
DERP_MAP_ROW_ID = 1


class DERPMapConfig(SQLModel, table=True):
    __tablename__ = "derp_map_config"

    id: int = Field(default=DERP_MAP_ROW_ID, primary_key=True)
    # Tailscale's tailcfg.DERPMap JSON (camelCase keys), as Coder's REST shows it.
    derp_map: dict[str, Any] = json_column(dict)
    updated_at: dt.datetime = required_timestamp()


_CONFIG = DERPMapConfig.__table__
_GET = sa.select(_CONFIG.c.derp_map).where(_CONFIG.c.id == DERP_MAP_ROW_ID)


def get_derp_map(conn: sa.Connection) -> dict[str, Any] | None:
    return conn.execute(_GET).scalar()


def upsert_derp_map(session: Session, *, derp_map: dict[str, Any], now: dt.datetime) -> None:
    row = session.get(DERPMapConfig, DERP_MAP_ROW_ID)
    if row is None:
        session.add(DERPMapConfig(id=DERP_MAP_ROW_ID, derp_map=derp_map, updated_at=now))
    else:
        row.derp_map = derp_map
        row.updated_at = now
        session.add(row)
