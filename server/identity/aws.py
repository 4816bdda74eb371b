"""AWS EC2 instance identity: verifying the IID document and its RSA signature.

The agent posts the plain-text instance identity document and the base64
``signature`` from IMDS (``/latest/dynamic/instance-identity/{document,signature}``).
AWS signs the exact document bytes with RSASSA-PKCS1-v1_5 / SHA-256 using one
key per region group; the matching certificates are published by AWS and are
shipped in ``data/aws-instance-identity.pem``.

Behaviour relative to Coder (``coderd/awsidentity``):

* Same: every pinned certificate is tried, first match wins, and certificate
  validity dates are ignored (several AWS certificates expired years ago but
  are still the signing keys; they are pinned keys, not a PKI).
* Stricter: the signature is checked before the JSON is parsed, the base64
  must be canonical (only CR/LF wrapping tolerated), inputs are size-capped,
  ``instanceId`` must be a sane non-blank string, and an optional freshness
  policy on ``pendingTime`` can be enabled. The IID is static for the life of
  the instance and has no nonce, so ``max_age`` / ``launched_after`` are the
  only replay bounds available without a protocol change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._common import (
    CallerError,
    as_text,
    check_instance_id,
    only_invalid_identity,
    parse_json_object,
    require_aware,
    strict_b64decode,
)
from .errors import InvalidIdentity
from .trust import default_aws_certs

__all__ = ["MAX_DOCUMENT_CHARS", "MAX_SIGNATURE_CHARS", "default_aws_certs", "verify_aws"]

# A real IID is well under 1 KiB; 64 KiB leaves room for future fields while
# refusing multi-megabyte bodies before any RSA work.
MAX_DOCUMENT_CHARS = 64 * 1024
# The largest RSA modulus anyone uses (8192 bit) is 1 KiB of signature,
# about 1.4 KiB of wrapped base64.
MAX_SIGNATURE_CHARS = 16 * 1024
# How far in the future pendingTime may lie (clock skew) in strict mode.
PENDING_TIME_SKEW = timedelta(minutes=5)


def _public_keys(certs: Iterable[x509.Certificate | rsa.RSAPublicKey]) -> list[rsa.RSAPublicKey]:
    keys: list[rsa.RSAPublicKey] = []
    for item in certs:
        key = item.public_key() if isinstance(item, x509.Certificate) else item
        if not isinstance(key, rsa.RSAPublicKey):
            raise CallerError("AWS trust material must be RSA certificates or keys")
        keys.append(key)
    if not keys:
        raise CallerError("no AWS certificates configured")
    return keys


def _parse_pending_time(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidIdentity("pendingTime is missing or not a string")
    try:
        # AWS writes "2024-05-01T12:34:56Z"; 3.11's fromisoformat takes the Z.
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidIdentity("pendingTime is not a valid timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@only_invalid_identity("AWS identity could not be verified")
def verify_aws(
    document: str | bytes,
    signature: str | bytes,
    certs: Iterable[x509.Certificate | rsa.RSAPublicKey],
    *,
    now: datetime,
    max_age: timedelta | None = None,
    launched_after: datetime | None = None,
) -> str:
    """Verify an EC2 instance identity document; return its ``instanceId``.

    ``certs``: pinned AWS certificates (``default_aws_certs()`` or a bundle
    from settings); bare RSA public keys are accepted too.
    ``max_age``: when set, ``pendingTime`` (instance launch time) must be
    present and no older than ``now - max_age``.
    ``launched_after``: when set, ``pendingTime`` must not precede it
    (pass the workspace build's creation time minus skew to defeat recycled
    instance ids).

    Raises ``InvalidIdentity`` for every problem with the credential.
    """
    now = require_aware(now)
    keys = _public_keys(certs)

    doc_text = as_text(document, what="document", max_len=MAX_DOCUMENT_CHARS)
    sig_text = as_text(signature, what="signature", max_len=MAX_SIGNATURE_CHARS)
    try:
        doc_bytes = doc_text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates smuggled in via JSON escapes
        raise InvalidIdentity("document is not valid UTF-8") from exc
    raw_sig = strict_b64decode(sig_text, what="signature")

    for key in keys:
        if len(raw_sig) != (key.key_size + 7) // 8:
            continue
        try:
            key.verify(raw_sig, doc_bytes, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        break
    else:
        raise InvalidIdentity("signature does not verify against any pinned AWS certificate")

    # Only signed bytes reach the JSON parser.
    doc = parse_json_object(doc_bytes, what="document")
    instance_id = check_instance_id(doc.get("instanceId"), what="instanceId")

    if max_age is not None or launched_after is not None:
        pending = _parse_pending_time(doc.get("pendingTime"))
        if pending > now + PENDING_TIME_SKEW:
            raise InvalidIdentity("pendingTime is in the future")
        if max_age is not None and pending < now - max_age:
            raise InvalidIdentity("document is older than the allowed maximum age")
        if launched_after is not None and pending < require_aware(launched_after):
            raise InvalidIdentity("instance was launched before the workspace build")
    return instance_id
