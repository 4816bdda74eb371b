"""External auth providers (git hosts and the like) and per-user links."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from server.storage.types import json_column, required_timestamp, utc_timestamp


class ExternalAuthProvider(SQLModel, table=True):
    __tablename__ = "external_auth_providers"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=255)
    # The URL pattern that selects this provider for `match=<url>` lookups.
    regex: str = Field(default="", sa_type=sa.Text)
    display_order: int = Field(default=0)
    created_at: dt.datetime = required_timestamp()


class ExternalAuthLink(SQLModel, table=True):
    __tablename__ = "external_auth_links"

    provider_id: str = Field(
        foreign_key="external_auth_providers.id",
        primary_key=True,
        max_length=255,
        ondelete="CASCADE",
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    access_token: str = Field(sa_type=sa.Text)
    refresh_token: str = Field(default="", sa_type=sa.Text)
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
