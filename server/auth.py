"""Who is calling: user API keys, agent tokens and the admin token.

This module is the only reader of gRPC invocation metadata. Every RPC resolves
its caller here first, with Coder's 401 messages for each failure.

* Users send ``coder-session-token: <10-char id>-<22-char secret>``; only
  sha256(secret) is stored and compared in constant time.
* Agents send ``coder-session-token: <agent token UUID>``; only sha256(token)
  is stored. A token is valid while its agent belongs to the latest build of
  a workspace that is not deleted.
* Provisioning sends ``authorization: Bearer <admin token>``.
* Coder's wire door (dRPC over yamux) sends ``coder-api-version: <2.m>``, the
  API version it negotiated with the agent (``/me/rpc?version=``); gRPC
  agents, which negotiate nothing, send none.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.clock import Clock, as_utc
from server.errors import InvalidArgument, PermissionDenied, Unauthenticated
from server.storage import agents as agent_store
from server.storage import users as user_store
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

SESSION_TOKEN_METADATA = "coder-session-token"
AUTHORIZATION_METADATA = "authorization"
# The agent API version negotiated by the dRPC door (rest_facade/wire).
API_VERSION_METADATA = "coder-api-version"
# "major.minor" as the door writes it: no signs, no leading zeros.
_API_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
# Tailnet calls: the one agent a user's client coordinates with (REST
# `{id}/coordinate`), and the resume token that keeps a client's peer id.
AGENT_ID_METADATA = "agent-id"
RESUME_TOKEN_METADATA = "resume-token"
# The REST facade forwards the token's source so 401s can name it like Coder.
SESSION_COOKIE = "coder_session_token"

API_KEY_ID_LENGTH = 10
API_KEY_SECRET_LENGTH = 22
_ALPHANUMERIC = string.ascii_letters + string.digits

SIGNED_OUT = "You are signed out or your session has expired. Please sign in again to continue."


def metadata_value(metadata: Iterable[Any] | None, key: str) -> str | None:
    for item in metadata or ():
        k, v = item[0], item[1]
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


REQUEST_ID_METADATA = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def caller_kind(metadata: Iterable[Any] | None) -> str:
    """What kind of credential a call carries, for logs and metrics only
    (never for a decision): admin, agent, user or anonymous."""
    if metadata_value(metadata, AUTHORIZATION_METADATA):
        return "admin"
    token = metadata_value(metadata, SESSION_TOKEN_METADATA)
    if not token:
        return "anonymous"
    try:
        uuid.UUID(token)
    except ValueError:
        return "user"
    return "agent"


def has_admin_credential(context: Any) -> bool:
    """The call carries an ``authorization`` credential (the admin token's
    place), so it is to be checked as the admin's."""
    return bool(metadata_value(context.invocation_metadata(), AUTHORIZATION_METADATA))


def request_id(metadata: Iterable[Any] | None) -> str:
    """The facade's request id for this call, if it is a plain token (it
    goes into log lines as is)."""
    value = metadata_value(metadata, REQUEST_ID_METADATA) or ""
    return value if _REQUEST_ID.match(value) else ""


def hash_agent_token(token: uuid.UUID | str) -> str:
    return hashlib.sha256(str(token).lower().encode()).hexdigest()


def new_agent_token() -> uuid.UUID:
    return uuid.uuid4()


def _random_alphanumeric(n: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(n))


def new_api_key() -> tuple[str, str]:
    """Returns (key id, full key); the key is shown once and never stored."""
    key_id = _random_alphanumeric(API_KEY_ID_LENGTH)
    secret = _random_alphanumeric(API_KEY_SECRET_LENGTH)
    return key_id, f"{key_id}-{secret}"


def hash_api_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_api_key(token: str) -> tuple[str, str]:
    parts = token.split("-")
    if len(parts) != 2:
        raise ValueError("incorrect amount of API key parts")
    key_id, secret = parts
    if len(key_id) != API_KEY_ID_LENGTH:
        raise ValueError("invalid API key id length")
    if len(secret) != API_KEY_SECRET_LENGTH:
        raise ValueError("invalid API key secret length")
    return key_id, secret


# agent_for_write: how long a token lookup is reused, and how many are kept.
RECENT_AGENT_SECONDS = 1.0
MAX_RECENT_AGENTS = 10_000


class Authenticator:
    """Resolves the caller of an RPC from its metadata."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        admin_token: str,
        on_agent_seen: Callable[[AgentInWorkspace], Awaitable[None]] | None = None,
        on_agent_refused: Callable[[str], Awaitable[None]] | None = None,
        on_agent_contact: Callable[[uuid.UUID], bool] | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._admin_token = admin_token.encode()
        # Agent-status hooks: every authenticated agent call is contact (its
        # connection status), every refused known token is a diagnosis clue.
        self._on_agent_seen = on_agent_seen
        self._on_agent_refused = on_agent_refused
        # Contact without a fresh row (agent_for_write): True when nothing
        # more is needed; False asks for the lookup and on_agent_seen.
        self._on_agent_contact = on_agent_contact
        # agent_for_write: token hash -> (lookup, expiry on the monotonic clock).
        self._recent_agents: dict[str, tuple[AgentInWorkspace, float]] = {}

    # -- users -------------------------------------------------------------
    def user(self, context: Any) -> Any:
        """The calling user (a read-only users row)."""
        token = metadata_value(context.invocation_metadata(), SESSION_TOKEN_METADATA)
        if not token:
            raise Unauthenticated(
                SIGNED_OUT,
                detail=f'Cookie "{SESSION_COOKIE}" or query parameter must be provided.',
            )
        try:
            key_id, secret = split_api_key(token)
        except ValueError as err:
            raise Unauthenticated(SIGNED_OUT, detail=f"Invalid API key format: {err}") from None
        key = self._db.read_retrying(lambda conn: user_store.get_api_key_owner(conn, key_id=key_id))
        if key is None:
            raise Unauthenticated(SIGNED_OUT, detail="API key is invalid.")
        if not hmac.compare_digest(key.hashed_secret, hash_api_secret(secret)):
            raise Unauthenticated(SIGNED_OUT, detail="API key secret is invalid.")
        expires_at = as_utc(key.expires_at)
        if expires_at is not None and expires_at <= self._clock.now():
            raise Unauthenticated(
                SIGNED_OUT, detail=f'API key expired at "{expires_at.isoformat()}".'
            )
        return key.user

    # -- agents ------------------------------------------------------------
    def _agent_token_hash(self, context: Any) -> str:
        token = metadata_value(context.invocation_metadata(), SESSION_TOKEN_METADATA)
        if not token:
            raise Unauthenticated(f'Cookie "{SESSION_COOKIE}" must be provided.')
        try:
            parsed = uuid.UUID(token)
        except ValueError:
            raise Unauthenticated(
                "Workspace agent token invalid.",
                detail=f"An agent token must be a valid UUIDv4. (len {len(token)})",
            ) from None
        return hash_agent_token(parsed)

    async def agent(self, context: Any) -> AgentInWorkspace:
        """The calling agent. Its contact is recorded (connection status)
        without waiting for any lock; a refused token is recorded as a
        diagnosis clue the same way."""
        return await self._agent_by_hash(self._agent_token_hash(context))

    async def _agent_by_hash(self, token_hash: str) -> AgentInWorkspace:
        found = self._db.read_retrying(
            lambda conn: agent_store.get_authenticated_agent_by_token_hash(
                conn, token_hash=token_hash
            )
        )
        if found is None:
            raise await self.agent_token_refused(token_hash)
        if self._on_agent_seen is not None:
            await self._on_agent_seen(found)
        return found

    async def agent_for_write(self, context: Any) -> tuple[AgentInWorkspace, str]:
        """The calling agent, for a write that checks the token itself, in
        its own statement (log ingestion): (agent, token hash to check).

        A lookup of the same token less than RECENT_AGENT_SECONDS ago is
        reused instead of a read per call (on PostgreSQL the read was a
        sixth of a log batch's time). The write, not this answer, decides:
        a token that stopped authenticating since is refused there, in the
        transaction, so no stale answer ever lets a write through; the
        caller then reports it with ``agent_token_refused``."""
        token_hash = self._agent_token_hash(context)
        now = time.monotonic()
        recent = self._recent_agents.get(token_hash)
        if recent is not None and recent[1] > now:
            found = recent[0]
            if self._on_agent_contact is None or self._on_agent_contact(found.agent.id):
                return found, token_hash
        found = await self._agent_by_hash(token_hash)
        if len(self._recent_agents) >= MAX_RECENT_AGENTS:
            self._recent_agents.clear()
        self._recent_agents[token_hash] = (found, now + RECENT_AGENT_SECONDS)
        return found, token_hash

    async def agent_token_refused(self, token_hash: str) -> Unauthenticated:
        """This token does not authenticate (the lookup found no agent, or a
        write refused it, see agent_for_write): forgets any recent lookup,
        records the clue, and returns the error for the caller to raise."""
        self._recent_agents.pop(token_hash, None)
        if self._on_agent_refused is not None:
            await self._on_agent_refused(token_hash)
        return Unauthenticated(
            "Workspace agent not authorized.",
            detail=(
                "The agent cannot authenticate until the workspace provision job "
                "has been completed. If the job is no longer running, this agent "
                "is invalid."
            ),
        )

    # -- API version -----------------------------------------------------------
    def api_version(self, context: Any, *, newest: str) -> str:
        """The API version the caller negotiated (``newest``, the version
        this core serves, when it sent none). Metadata is the caller's to
        write, so a version the door could not have negotiated (another
        major, a newer minor, not ``major.minor``) is refused."""
        value = metadata_value(context.invocation_metadata(), API_VERSION_METADATA)
        if value is None:
            return newest
        major, minor = (int(part) for part in newest.split("."))
        match = _API_VERSION.fullmatch(value)
        if match is None or int(match[1]) != major or int(match[2]) > minor:
            raise InvalidArgument(
                "Unknown or unsupported API version",
                validations=[("version", f"server is at version {newest}, not {value!r}")],
            )
        return value

    # -- either --------------------------------------------------------------
    async def user_or_agent(self, context: Any) -> tuple[Any, AgentInWorkspace | None]:
        """(user, None) for a user API key, (None, agent) for an agent token;
        told apart by shape (``<id>-<secret>`` has one hyphen, a UUID four or
        none), each with its own 401s."""
        token = metadata_value(context.invocation_metadata(), SESSION_TOKEN_METADATA)
        if token and token.count("-") != 1:
            return None, await self.agent(context)
        return self.user(context), None

    def tailnet_metadata(self, context: Any) -> tuple[str | None, str | None]:
        """The ``agent-id`` and ``resume-token`` a tailnet call carries."""
        metadata = context.invocation_metadata()
        return (
            metadata_value(metadata, AGENT_ID_METADATA),
            metadata_value(metadata, RESUME_TOKEN_METADATA),
        )

    # -- provisioning --------------------------------------------------------
    def admin(self, context: Any) -> None:
        header = metadata_value(context.invocation_metadata(), AUTHORIZATION_METADATA) or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthenticated(
                "Admin token required.",
                detail="Send the admin token as 'authorization: Bearer <token>'.",
            )
        if not hmac.compare_digest(value.encode(), self._admin_token):
            raise PermissionDenied("Admin token is invalid.")


def can_read_workspace(user: Any, owner_id: uuid.UUID) -> bool:
    """Owners of the deployment read everything; members their own workspaces."""
    return user.role == user_store.ROLE_OWNER or user.id == owner_id
