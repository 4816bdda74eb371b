"""Column types shared by the tables of every concern."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Deterministic constraint names on every backend, so downgrades can drop them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_timestamp(*, nullable: bool = True, index: bool = False) -> Any:
    """A timezone-aware timestamp column (timestamptz on PostgreSQL)."""
    return Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
        nullable=nullable,
        index=index,
    )


def required_timestamp() -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), nullable=False)


def json_column(default_factory: Any) -> Any:
    return Field(default_factory=default_factory, sa_type=sa.JSON, nullable=False)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


__all__ = ["dt", "json_column", "new_id", "required_timestamp", "utc_timestamp"]
