"""Tailnet resume tokens (``coder.tailnet.v2.Tailnet/RefreshResumeToken``):
a client that reconnects with one keeps its peer id, so its agents keep
their tunnels to it.

A token is an HS256 JWT whose subject is the peer id, valid 24 h (clients
are told to refresh at half that), signed with a key stored in the database
(``crypto_keys``, feature ``tailnet_resume``) so that every replica signs
and verifies alike. Its header's ``kid`` names the key. Rotating adds a key
that signs from then on; older keys keep verifying until the tokens they
signed have expired.

Beyond Coder, a token also names who it was issued to (``own``: the user or
agent), and only that caller may present it: a leaked token does not let
another user take over a peer id and the tunnels that come with it.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
import uuid
from typing import Any

import jwt
from coder.tailnet.v2 import tailnet_pb2

from server.clock import Clock, as_utc
from server.errors import Unauthenticated
from server.prototime import to_timestamp
from server.storage import cryptokeys
from server.storage.cryptokeys import FEATURE_TAILNET_RESUME, Key
from server.storage.db import Database

# Coder's DefaultResumeTokenExpiry.
RESUME_TOKEN_EXPIRY = dt.timedelta(hours=24)
# How long a replica signs with the key it last read before looking for a
# newer one (a rotation made on another replica takes effect within this).
SIGNING_KEY_REFRESH_SECONDS = 60.0
INVALID_RESUME_TOKEN = "Invalid resume token"
_ALGORITHM = "HS256"
_MAX_TOKEN_CHARS = 4096


def invalid_resume_token(detail: str) -> Unauthenticated:
    return Unauthenticated(
        INVALID_RESUME_TOKEN,
        detail=detail,
        validations=[("resume_token", INVALID_RESUME_TOKEN)],
    )


class ResumeTokens:
    def __init__(
        self, db: Database, clock: Clock, *, expiry: dt.timedelta = RESUME_TOKEN_EXPIRY
    ) -> None:
        self._db = db
        self._clock = clock
        self.expiry = expiry
        self._lock = threading.Lock()
        self._keys: dict[int, Key] = {}
        self._signing: Key | None = None
        self._signing_read_at = 0.0

    # -- keys ----------------------------------------------------------------
    def _load(self) -> list[Key]:
        with self._db.engine.begin() as conn:
            keys = cryptokeys.list_keys(conn, feature=FEATURE_TAILNET_RESUME)
        with self._lock:
            self._keys = {k.sequence: k for k in keys}
        return keys

    def _usable(self, keys: list[Key]) -> Key | None:
        now = self._clock.now()
        for key in keys:  # newest first
            starts = as_utc(key.starts_at)
            deletes = as_utc(key.deletes_at)
            if starts is not None and starts <= now and (deletes is None or deletes > now):
                return key
        return None

    def _signing_key(self) -> Key:
        with self._lock:
            key, read_at = self._signing, self._signing_read_at
        if key is not None and time.monotonic() - read_at < SIGNING_KEY_REFRESH_SECONDS:
            return key
        key = self._usable(self._load())
        if key is None:
            key = self._add_key()
        with self._lock:
            self._signing, self._signing_read_at = key, time.monotonic()
        return key

    def _add_key(self) -> Key:
        """A new key with the next sequence; when another replica adds one
        at the same time, theirs is used."""
        now = self._clock.now()
        while True:
            keys = self._load()
            sequence = (keys[0].sequence if keys else 0) + 1
            with self._db.engine.begin() as conn:
                added = cryptokeys.insert_key(
                    conn,
                    feature=FEATURE_TAILNET_RESUME,
                    sequence=sequence,
                    secret=secrets.token_bytes(64),
                    now=now,
                )
                if added:
                    cryptokeys.retire_keys_before(
                        conn,
                        feature=FEATURE_TAILNET_RESUME,
                        sequence=sequence,
                        deletes_at=now + self.expiry,
                    )
                    cryptokeys.delete_expired_keys(conn, feature=FEATURE_TAILNET_RESUME, now=now)
            key = self._usable(self._load())
            if key is not None and (not added or key.sequence == sequence):
                return key

    def rotate(self) -> int:
        """Signs with a new key from now on (every replica within a minute);
        returns its sequence."""
        key = self._add_key()
        with self._lock:
            self._signing, self._signing_read_at = key, time.monotonic()
        return key.sequence

    def _verification_key(self, sequence: int) -> Key | None:
        with self._lock:
            key = self._keys.get(sequence)
        if key is None:
            self._load()
            with self._lock:
                key = self._keys.get(sequence)
        if key is None:
            return None
        deletes = as_utc(key.deletes_at)
        if deletes is not None and deletes <= self._clock.now():
            return None
        return key

    # -- tokens -----------------------------------------------------------------
    def issue(self, peer_id: uuid.UUID, *, owner: str) -> tailnet_pb2.RefreshResumeTokenResponse:
        key = self._signing_key()
        expires = self._clock.now() + self.expiry
        token = jwt.encode(
            {"sub": str(peer_id), "exp": int(expires.timestamp()), "own": owner},
            key.secret,
            algorithm=_ALGORITHM,
            headers={"kid": str(key.sequence)},
        )
        response = tailnet_pb2.RefreshResumeTokenResponse(
            token=token, expires_at=to_timestamp(expires.replace(microsecond=0))
        )
        response.refresh_in.FromTimedelta(self.expiry / 2)
        return response

    def verify(self, token: str, *, owner: str) -> uuid.UUID | None:
        """The peer id a token resumes; None for a token without a key id
        (Coder: an old token, so a new peer id); Unauthenticated otherwise."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise invalid_resume_token("verify payload: token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise invalid_resume_token(f"verify payload: {err}") from None
        kid = header.get("kid")
        if kid is None or kid == "":
            return None
        if (
            header.get("alg") != _ALGORITHM
            or not isinstance(kid, str)
            or not kid.isdigit()
            or len(kid) > 9
        ):
            raise invalid_resume_token("verify payload: unexpected token header")
        key = self._verification_key(int(kid))
        if key is None:
            raise invalid_resume_token(f"verify payload: key {kid} not found")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.secret,
                algorithms=[_ALGORITHM],
                options={"verify_exp": False, "require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as err:
            raise invalid_resume_token(f"verify payload: {err}") from None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= self._clock.now().timestamp():
            raise invalid_resume_token("verify payload: token is expired")
        if claims.get("own") != owner:
            raise invalid_resume_token("verify payload: the token was issued to someone else")
        try:
            return uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise invalid_resume_token("parse peerID from token: invalid UUID") from None
