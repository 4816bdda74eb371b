"""Users, their API keys and git SSH keys: tables and queries.

API keys follow Coder's format ``<10-char id>-<22-char secret>``; only
sha256(secret) is stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from server.storage.prepared import Prepared
from server.storage.types import (
    new_id,
    required_timestamp,
    string_column,
    text_column,
    utc_timestamp,
)

ROLE_MEMBER = "member"
ROLE_OWNER = "owner"
ROLES = (ROLE_MEMBER, ROLE_OWNER)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    username: str = string_column(64, unique=True, index=True)
    email: str = string_column(255, default="")
    role: str = string_column(16, default=ROLE_MEMBER)
    created_at: dt.datetime = required_timestamp()
    updated_at: dt.datetime = required_timestamp()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = string_column(10, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    hashed_secret: bytes = Field(sa_type=sa.LargeBinary)
    created_at: dt.datetime = required_timestamp()
    last_used_at: dt.datetime | None = utc_timestamp()
    expires_at: dt.datetime | None = utc_timestamp()


class GitSSHKey(SQLModel, table=True):
    __tablename__ = "gitsshkeys"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    private_key: str = text_column()
    public_key: str = text_column()
    created_at: dt.datetime = required_timestamp()
    updated_at: dt.datetime = required_timestamp()


def insert_user(session: Session, *, user: User, ssh_key: GitSSHKey) -> User:
    session.add(user)
    session.flush()
    session.add(ssh_key)
    return user


def get_user_by_id(session: Session, *, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, *, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def insert_api_key(session: Session, *, key: ApiKey) -> ApiKey:
    session.add(key)
    return key


@dataclasses.dataclass(frozen=True)
class KeyOwner:
    """What authenticating an API key needs, read in one query."""

    hashed_secret: bytes
    expires_at: dt.datetime | None
    user: Any


_KEYS, _USERS, _SSH = ApiKey.__table__, User.__table__, GitSSHKey.__table__
_KEY_OWNER = Prepared(
    sa.select(_KEYS.c.hashed_secret, _KEYS.c.expires_at, _USERS)
    .select_from(_KEYS.join(_USERS, _USERS.c.id == _KEYS.c.user_id))
    .where(_KEYS.c.id == sa.bindparam("key_id")),
    memo=4096,
)
_SSH_BY_USER = sa.select(_SSH).where(_SSH.c.user_id == sa.bindparam("user_id"))


def get_api_key_owner(conn: sa.Connection, *, key_id: str) -> KeyOwner | None:
    row = _KEY_OWNER.first(conn, {"key_id": key_id})
    if row is None:
        return None
    return KeyOwner(row.hashed_secret, row.expires_at, row)


def get_gitsshkey_by_user(conn: sa.Connection, *, user_id: uuid.UUID) -> Any:
    return conn.execute(_SSH_BY_USER, {"user_id": user_id}).first()
