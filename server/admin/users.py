"""Provisioning users: the user row, its git SSH key pair and API keys."""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from server.admin.spec import MAX_NAME, NAME_RE
from server.auth import hash_api_secret, new_api_key
from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound
from server.storage import users as user_store
from server.storage.db import Database


@dataclasses.dataclass(frozen=True)
class CreatedUser:
    user: user_store.User
    api_key: str


def generate_git_ssh_key() -> tuple[str, str]:
    """An ed25519 key pair as (OpenSSH private key, authorized_keys line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


def _mint_api_key(session: sa.orm.Session, *, user_id: uuid.UUID, clock: Clock) -> str:
    key_id, full = new_api_key()
    user_store.insert_api_key(
        session,
        key=user_store.ApiKey(
            id=key_id,
            user_id=user_id,
            hashed_secret=hash_api_secret(full.split("-", 1)[1]),
            created_at=clock.now(),
        ),
    )
    return full


def create_user(db: Database, clock: Clock, *, username: str, email: str, role: str) -> CreatedUser:
    role = role or user_store.ROLE_MEMBER
    problems = []
    if not username or len(username) > MAX_NAME or not NAME_RE.match(username):
        problems.append(("username", "must be 1-64 letters, digits and inner hyphens"))
    if email and ("@" not in email or len(email) > 255):
        problems.append(("email", "must be an email address"))
    if role not in user_store.ROLES:
        problems.append(("role", f"must be one of: {', '.join(user_store.ROLES)}"))
    if problems:
        raise InvalidArgument("Validation failed.", validations=problems)
    now = clock.now()
    private, public = generate_git_ssh_key()
    with db.session() as session:
        if user_store.get_user_by_username(session, username=username) is not None:
            raise Conflict(f"User {username!r} already exists.")
        user = user_store.User(
            username=username, email=email, role=role, created_at=now, updated_at=now
        )
        user_store.insert_user(
            session,
            user=user,
            ssh_key=user_store.GitSSHKey(
                user_id=user.id,
                private_key=private,
                public_key=public,
                created_at=now,
                updated_at=now,
            ),
        )
        api_key = _mint_api_key(session, user_id=user.id, clock=clock)
    return CreatedUser(user=user, api_key=api_key)


def resolve_user(session: sa.orm.Session, ref: str) -> user_store.User:
    """A user by username or id, or NotFound."""
    user = user_store.get_user_by_username(session, username=ref)
    if user is None:
        try:
            user = user_store.get_user_by_id(session, user_id=uuid.UUID(ref))
        except ValueError:
            user = None
    if user is None:
        raise NotFound(f"User {ref!r} not found.")
    return user


def create_token(db: Database, clock: Clock, *, user_ref: str) -> str:
    with db.session() as session:
        user = resolve_user(session, user_ref)
        return _mint_api_key(session, user_id=user.id, clock=clock)
