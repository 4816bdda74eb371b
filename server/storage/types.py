"""Column types shared by the tables of every concern.

One rule for text, the same on every backend: a NUL character is stored as
U+274C (❌), the replacement Coder uses for agent log output. PostgreSQL's
text types cannot hold NUL at all (a NUL in any bound string failed the
whole statement: a 500, and the batch it rode in), and SQLite would store
it, so the two backends disagreed. The rule lives in the column types
(``NulFreeText``, ``NulFreeString``, ``NulFreeJSON``), which every table
uses for every string and JSON column (tests/server/storage/test_types.py
checks that none is left out): whatever writes or compares a value through
SQLAlchemy, the ORM, Core statements or ``Prepared``, gets it, so no route
or RPC has to remember it. The one write that bypasses bind processing,
the log ``COPY``/``INSERT`` on the driver, applies the same rule itself
(``sanitize_output`` in storage/logs.py).
"""

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

NUL = "\x00"
# What Coder stores instead of NUL (its agent log output rule).
NUL_REPLACEMENT = "\u274c"


def without_nul(value: str) -> str:
    """The text as stored: NUL replaced by U+274C (the same length in
    characters, so a length limit means the same before and after)."""
    return value.replace(NUL, NUL_REPLACEMENT) if NUL in value else value


def json_without_nul(value: Any) -> Any:
    """A JSON value as stored: the rule applied to every string in it, object
    keys included (two keys that differ only there become one; the later
    wins, as with any repeated key)."""
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, dict):
        return {
            (without_nul(k) if isinstance(k, str) else k): json_without_nul(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [json_without_nul(v) for v in value]
    return value


class NulFreeText(sa.types.TypeDecorator[str]):
    """TEXT, with the NUL rule applied to every value bound to it."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return without_nul(value) if isinstance(value, str) else value

    def process_literal_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return self.process_bind_param(value, dialect)

    @property
    def python_type(self) -> type:
        return str


class NulFreeString(NulFreeText):
    """VARCHAR(n), with the NUL rule (n counts characters, which the rule
    keeps the same)."""

    impl = sa.String
    cache_ok = True


class NulFreeJSON(sa.types.TypeDecorator[Any]):
    """JSON, with the NUL rule applied to every string in the value."""

    impl = sa.JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return json_without_nul(value)

    @property
    def python_type(self) -> type:
        return object


def string_column(max_length: int, **kwargs: Any) -> Any:
    """A VARCHAR(max_length) column under the NUL rule."""
    return Field(max_length=max_length, sa_type=NulFreeString(max_length), **kwargs)


def text_column(**kwargs: Any) -> Any:
    """A TEXT column under the NUL rule."""
    return Field(sa_type=NulFreeText, **kwargs)


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
    return Field(default_factory=default_factory, sa_type=NulFreeJSON, nullable=False)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


__all__ = [
    "NUL_REPLACEMENT",
    "NulFreeJSON",
    "NulFreeString",
    "NulFreeText",
    "dt",
    "json_column",
    "json_without_nul",
    "new_id",
    "required_timestamp",
    "string_column",
    "text_column",
    "utc_timestamp",
    "without_nul",
]
