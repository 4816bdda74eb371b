"""External auth providers (git hosts and the like) and per-user links."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from server.storage.types import (
    json_column,
    required_timestamp,
    string_column,
    text_column,
    utc_timestamp,
)


class ExternalAuthProvider(SQLModel, table=True):
    __tablename__ = "external_auth_providers"

    id: str = string_column(255, primary_key=True)
    type: str = string_column(64)
    display_name: str = string_column(255, default="")
    # The URL pattern that selects this provider for `match=<url>` lookups.
    regex: str = text_column(default="")
    display_order: int = Field(default=0)
    created_at: dt.datetime = required_timestamp()


class ExternalAuthLink(SQLModel, table=True):
    __tablename__ = "external_auth_links"

    provider_id: str = string_column(
        255, foreign_key="external_auth_providers.id", primary_key=True, ondelete="CASCADE"
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    access_token: str = text_column()
    refresh_token: str = text_column(default="")
    token_extra: dict[str, Any] = json_column(dict)
    expires_at: dt.datetime | None = utc_timestamp()
    created_at: dt.datetime = required_timestamp()
    updated_at: dt.datetime = required_timestamp()


def list_providers(session: Session) -> list[ExternalAuthProvider]:
    return list(
        session.exec(
            select(ExternalAuthProvider).order_by(
                col(ExternalAuthProvider.display_order), col(ExternalAuthProvider.id)
            )
        ).all()
    )


def count_providers(conn: sa.Connection, *, types: set[str] | None = None) -> int:
    t = ExternalAuthProvider.__table__
    query = sa.select(sa.func.count()).select_from(t)
    if types is not None:
        query = query.where(t.c.type.in_(sorted(types)))
    return int(conn.execute(query).scalar_one())
