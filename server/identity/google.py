"""Google Compute Engine identity tokens: verifying the RS256 JWT and its claims.

The agent posts ``{"json_web_token": ...}``, the token from the metadata
server's ``service-accounts/<sa>/identity?audience=coder&format=full``. The
instance id is ``google.compute_engine.instance_id`` (present only with
``format=full``).

Stricter than Coder (``coderd/workspaceresourceauth.go``), which validates
with an empty audience:

* only RS256, with the key chosen by the header ``kid`` among pinned keys
  (``alg: none``, HS256 keyed with the public key, PS256 ... all fail);
* ``aud`` must equal the configured audience (default ``"coder"``), so a
  token the instance minted for some other relying party cannot be replayed
  here;
* ``iss`` must be Google's, ``exp`` / ``nbf`` / ``iat`` are checked against
  the injected ``now`` (pyjwt has no clock parameter, so its own time checks
  are disabled and done here);
* optional single use: Google recommends accepting each identity token once,
  and the agent fetches a fresh token for every exchange, so a replay cache
  keyed by the token's SHA-256 is compatible with real agents.

Leeway: ``DEFAULT_LEEWAY`` (30 s) absorbs clock skew between Google and this
server for ``exp``/``nbf``/``iat``; callers may pick 0-60 s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import math
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from ._common import (
    CallerError,
    as_text,
    check_instance_id,
    only_invalid_identity,
    parse_json_object,
    require_aware,
)
from .errors import InvalidIdentity, MalformedClaims

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_LEEWAY",
    "GOOGLE_ISSUERS",
    "MAX_TOKEN_CHARS",
    "InMemoryReplayCache",
    "ReplayCache",
    "verify_google",
]

DEFAULT_AUDIENCE = "coder"
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
DEFAULT_LEEWAY = timedelta(seconds=30)
MAX_LEEWAY = timedelta(seconds=60)
# A format=full identity token is about 1 KiB; 16 KiB refuses junk cheaply.
MAX_TOKEN_CHARS = 16 * 1024
_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class ReplayCache(Protocol):
    """Single-use store. ``seen`` atomically records ``key`` until ``expires_at``
    and returns True if it was already recorded (i.e. this is a replay)."""

    def seen(self, key: str, expires_at: datetime) -> bool: ...


class InMemoryReplayCache:
    """Thread-safe, process-local ReplayCache; expired keys are evicted lazily.

    Only correct for a single server process. With several replicas, back
    ``seen`` with shared storage (e.g. an INSERT ... ON CONFLICT DO NOTHING).
    ``clock`` should be the same clock the caller passes as ``now``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_entries: int = 100_000,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, datetime] = {}
        self._expiry_heap: list[tuple[datetime, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _evict(self, now: datetime) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._entries.get(key) == expires_at:
                del self._entries[key]

    def seen(self, key: str, expires_at: datetime) -> bool:
        now = self._clock()
        with self._lock:
            self._evict(now)
            if key in self._entries:
                return True
            if len(self._entries) >= self._max_entries:
                # Failing closed: forgetting a live token would permit its
                # replay, so refuse new ones until old ones expire.
                return True
            self._entries[key] = expires_at
            heapq.heappush(self._expiry_heap, (expires_at, key))
            return False


def _b64url_segment(segment: str) -> bytes:
    if not segment or not set(segment) <= _B64URL_ALPHABET or len(segment) % 4 == 1:
        raise InvalidIdentity("token is not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidIdentity("token is not a compact JWS") from exc
    # Non-canonical encodings (spare low bits set in the last character)
    # decode to the same bytes; refusing them keeps one signature = one token
    # string, which the replay cache relies on.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise InvalidIdentity("token is not canonically encoded")
    return raw


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidIdentity(f"token {name} claim is not a number")
    return float(value)


def _check_keys(keys: Mapping[str, rsa.RSAPublicKey]) -> None:
    if not isinstance(keys, Mapping) or not keys:
        raise CallerError("no Google signing keys configured")


@only_invalid_identity("GCP identity could not be verified")
def verify_google(
    jwt_token: str | bytes,
    *,
    keys: Mapping[str, rsa.RSAPublicKey],
    audience: str = DEFAULT_AUDIENCE,
    now: datetime,
    replay_cache: ReplayCache | None = None,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> str:
    """Verify a Google instance identity token; return the GCE instance id.

    ``keys``: ``{kid: RSA public key}`` from ``trust.load_google_keys``.
    ``replay_cache``: when given, each token is accepted at most once.

    Raises ``InvalidIdentity`` (-> 401) for bad signature, key, time, issuer,
    audience, replay or a blank instance id; ``MalformedClaims`` (-> 400) for
    a correctly signed token whose ``google.compute_engine.instance_id`` is
    missing or of the wrong type.
    """
    now = require_aware(now)
    _check_keys(keys)
    if not isinstance(leeway, timedelta) or not timedelta(0) <= leeway <= MAX_LEEWAY:
        raise CallerError("leeway must be between 0 and 60 seconds")
    if not isinstance(audience, str) or not audience:
        raise CallerError("audience must be a non-empty string")

    token = as_text(jwt_token, what="token", max_len=MAX_TOKEN_CHARS)
    segments = token.split(".")
    if len(segments) != 3:
        raise InvalidIdentity("token is not a compact JWS")
    for segment in segments:
        _b64url_segment(segment)

    header = parse_json_object(_b64url_segment(segments[0]), what="token header")
    if header.get("alg") != "RS256":
        raise InvalidIdentity("token algorithm must be RS256")
    if "crit" in header:
        # No critical header extensions are understood, so none may be present.
        raise InvalidIdentity("token has critical header parameters")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise InvalidIdentity("token is signed with an unknown key")
    key = keys[kid]
    if not isinstance(key, rsa.RSAPublicKey):
        raise CallerError("Google signing keys must be RSA public keys")

    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            options={
                "verify_signature": True,
                # Time, audience and issuer are checked below against the
                # injected clock and this module's stricter rules.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": [],
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise InvalidIdentity("token signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise InvalidIdentity("token cannot be decoded") from exc
    if not isinstance(claims, dict):
        raise InvalidIdentity("token payload is not a JSON object")

    now_ts = now.timestamp()
    slack = leeway.total_seconds()
    exp = _numeric_date(claims, "exp")
    iat = _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf")
    if exp is None:
        # Coder's test helper mints its "expired" token by omitting exp.
        raise InvalidIdentity("token has no exp claim")
    if iat is None:
        raise InvalidIdentity("token has no iat claim")
    if now_ts > exp + slack:
        raise InvalidIdentity("token has expired")
    if iat > now_ts + slack:
        raise InvalidIdentity("token was issued in the future")
    if nbf is not None and nbf > now_ts + slack:
        raise InvalidIdentity("token is not yet valid")

    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in GOOGLE_ISSUERS:
        raise InvalidIdentity("token issuer is not Google")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and aud == [audience])):
        raise InvalidIdentity("token audience does not match")

    google = claims.get("google")
    engine = google.get("compute_engine") if isinstance(google, dict) else None
    if not isinstance(engine, dict) or "instance_id" not in engine:
        raise MalformedClaims("token has no google.compute_engine.instance_id claim")
    raw_id = engine["instance_id"]
    if not isinstance(raw_id, str):
        raise MalformedClaims("google.compute_engine.instance_id is not a string")
    instance_id = check_instance_id(raw_id, what="instance_id")

    if replay_cache is not None:
        key_digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        try:
            expires_at = datetime.fromtimestamp(exp + slack, tz=UTC)
        except (OverflowError, OSError, ValueError):
            # exp beyond datetime's range: remember the token "forever".
            expires_at = datetime.max.replace(tzinfo=UTC)
        if replay_cache.seen(key_digest, expires_at):
            raise InvalidIdentity("token has already been used")
    return instance_id
