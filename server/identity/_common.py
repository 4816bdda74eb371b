"""Input hygiene shared by the AWS, Azure and GCP verifiers.

Size caps, strict base64, instance-id sanity and the "only InvalidIdentity
escapes" guard live here so that every cloud applies the same rules.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from .errors import InvalidIdentity

# Instance ids are looked up in the database as text. Real ids are short
# (AWS "i-0123...", GCP decimal, Azure UUID); the cap keeps garbage out of
# the query and the logs. Control characters are refused because PostgreSQL
# text columns reject NUL, which would otherwise surface as a 500.
MAX_INSTANCE_ID_LEN = 255
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# Base64 alphabet check done up front: binascii in validate mode already
# rejects foreign characters, this just keeps the error path uniform.
_B64_STD = re.compile(rb"[A-Za-z0-9+/]*={0,2}")

F = TypeVar("F", bound=Callable[..., Any])


class CallerError(ValueError):
    """Misuse by the calling code (bad clock or trust material), not bad input.

    The only exception besides InvalidIdentity a verifier may raise; it means
    the server is misconfigured, so a 500 is the right outcome.
    """


def require_aware(now: datetime) -> datetime:
    """Normalise the injected clock; naive datetimes are a caller bug."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        # Deliberately not InvalidIdentity: this is a programming error in the
        # caller, not a property of the untrusted credential.
        raise CallerError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def as_text(value: object, *, what: str, max_len: int) -> str:
    """Accept str (or ASCII bytes) of bounded size, else refuse cheaply."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) > max_len:
            raise InvalidIdentity(f"{what} is too large")
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidIdentity(f"{what} is not valid UTF-8") from exc
    if not isinstance(value, str):
        raise InvalidIdentity(f"{what} must be a string")
    if len(value) > max_len:
        raise InvalidIdentity(f"{what} is too large")
    if not value.strip():
        raise InvalidIdentity(f"{what} is empty")
    return value


def strict_b64decode(text: str, *, what: str) -> bytes:
    """Standard-alphabet, padded base64; only CR/LF line wrapping is tolerated.

    Go's base64.StdEncoding (what Coder uses) silently skips CR and LF, and
    AWS IMDS returns the signature wrapped at 64 columns, so those two
    characters must be accepted. Anything else (spaces, tabs, URL-safe
    alphabet, missing padding) is refused rather than guessed at.
    """
    try:
        raw = text.replace("\r", "").replace("\n", "").encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidIdentity(f"{what} is not base64") from exc
    if not raw or len(raw) % 4 != 0 or not _B64_STD.fullmatch(raw):
        raise InvalidIdentity(f"{what} is not base64")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidIdentity(f"{what} is not base64") from exc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Different JSON parsers keep different duplicates; refusing them
            # removes any chance of a parser differential on signed content.
            raise ValueError("duplicate key in JSON object")
        out[key] = value
    return out


def parse_json_object(data: bytes | str, *, what: str) -> dict[str, Any]:
    """Decode a JSON object; every decoder failure becomes InvalidIdentity."""
    try:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")
        obj = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as exc:
        raise InvalidIdentity(f"{what} is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise InvalidIdentity(f"{what} is not a JSON object")
    return obj


def check_instance_id(value: object, *, what: str) -> str:
    """The id is used verbatim for the agent lookup, so it must be sane."""
    if not isinstance(value, str):
        raise InvalidIdentity(f"{what} is missing or not a string")
    if not value.strip():
        # An empty id would match nothing at best and an unset column at
        # worst; refuse it before any database access.
        raise InvalidIdentity(f"{what} is empty")
    if len(value) > MAX_INSTANCE_ID_LEN:
        raise InvalidIdentity(f"{what} is too long")
    if _CONTROL_CHARS.search(value):
        raise InvalidIdentity(f"{what} contains control characters")
    return value


def only_invalid_identity(detail: str) -> Callable[[F], F]:
    """Last line of defence: nothing but InvalidIdentity leaves a verifier.

    The verifiers already translate every failure they anticipate; this
    catches what they did not (a decoder raising an unexpected type on some
    crafted input), so the HTTP layer never turns bad input into a 500.
    CallerError is let through because it flags a bug in the caller.
    """

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except InvalidIdentity:
                raise
            except CallerError:
                raise
            except Exception as exc:
                raise InvalidIdentity(detail) from exc

        return inner  # type: ignore[return-value]

    return wrap
