"""Loading trust material (pinned certificates and Google signing keys).

Settings hold file paths; these helpers turn them into the objects the
verifiers take. All failures raise ``ValueError`` naming the file, so a bad
path or an empty bundle stops the server at start-up instead of turning into
"Invalid identity" for every agent.

Google key files may be:

* a JWKS document (``{"keys": [{"kty": "RSA", "kid": ..., "n": ..., "e": ...}]}``,
  what https://www.googleapis.com/oauth2/v3/certs serves);
* the x509 form (``{"<kid>": "-----BEGIN CERTIFICATE-----..."}``,
  what https://www.googleapis.com/oauth2/v1/certs serves);
* a PEM bundle of certificates or public keys, each block preceded by a
  ``kid: <kid>`` line. PEM carries no key id and tokens are matched by
  ``kid``, so an unlabelled block is an error rather than a guess.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from importlib import resources
from os import PathLike
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "default_aws_certs",
    "default_azure_roots",
    "load_google_keys",
    "load_pem_certificates",
    "parse_google_keys",
    "parse_pem_certificates",
]

StrPath = str | PathLike[str]

# Trust files are small; a cap stops a mistaken path (a log, a disk image)
# from being slurped into memory.
MAX_TRUST_FILE_BYTES = 4 * 1024 * 1024

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n.*?-----END (?P=label)-----",
    re.DOTALL,
)
_KID_LINE = re.compile(rb"^\s*#?\s*kid\s*[:=]\s*(?P<kid>\S+)\s*$", re.MULTILINE)


def _read(path: StrPath) -> bytes:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_TRUST_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{p}: cannot read trust file: {exc.strerror or exc}") from exc
    if len(data) > MAX_TRUST_FILE_BYTES:
        raise ValueError(f"{p}: trust file is larger than {MAX_TRUST_FILE_BYTES} bytes")
    if not data.strip():
        raise ValueError(f"{p}: trust file is empty")
    return data


def parse_pem_certificates(
    data: bytes | str, *, source: str = "<memory>"
) -> list[x509.Certificate]:
    """Parse every CERTIFICATE block of a PEM bundle (comments between blocks allowed)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data) if m.group("label") == b"CERTIFICATE"]
    if not blocks:
        raise ValueError(f"{source}: no PEM CERTIFICATE blocks found")
    certs: list[x509.Certificate] = []
    for index, block in enumerate(blocks, start=1):
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise ValueError(f"{source}: certificate #{index} cannot be parsed: {exc}") from exc
    return certs


def load_pem_certificates(path: StrPath) -> list[x509.Certificate]:
    """PEM bundle file -> certificates, e.g. AWS region certs or Azure roots."""
    return parse_pem_certificates(_read(path), source=str(path))


def _b64url_uint(value: object, *, source: str, kid: str, field: str) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{source}: key {kid!r} has no {field!r}")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{source}: key {kid!r} field {field!r} is not base64url") from exc
    return int.from_bytes(raw, "big")


def _rsa_only(key: object, *, source: str, kid: str) -> rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPublicKey):
        # Google signs identity tokens with RS256 only and the verifier pins
        # that algorithm, so any other key type could never verify anything.
        raise ValueError(f"{source}: key {kid!r} is not an RSA public key")
    return key


def _from_jwks(doc: Mapping[str, object], *, source: str) -> dict[str, rsa.RSAPublicKey]:
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise ValueError(f"{source}: JWKS 'keys' must be a list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: JWKS entry is not an object")
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{source}: JWKS entry without a 'kid'")
        if entry.get("kty") != "RSA":
            # Skip rather than fail: a future non-RSA key in Google's set must
            # not take down the RS256 keys next to it.
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        n = _b64url_uint(entry.get("n"), source=source, kid=kid, field="n")
        e = _b64url_uint(entry.get("e"), source=source, kid=kid, field="e")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise ValueError(f"{source}: key {kid!r} is not a valid RSA key: {exc}") from exc
        _add(keys, kid, key, source=source)
    return keys


def _from_x509_map(doc: Mapping[str, object], *, source: str) -> dict[str, rsa.RSAPublicKey]:
    keys: dict[str, rsa.RSAPublicKey] = {}
    for kid, pem in doc.items():
        if not isinstance(pem, str):
            raise ValueError(f"{source}: value for kid {kid!r} is not a PEM string")
        try:
            cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"{source}: certificate for kid {kid!r} cannot be parsed") from exc
        _add(keys, kid, _rsa_only(cert.public_key(), source=source, kid=kid), source=source)
    return keys


def _from_pem(data: bytes, *, source: str) -> dict[str, rsa.RSAPublicKey]:
    keys: dict[str, rsa.RSAPublicKey] = {}
    cursor = 0
    for match in _PEM_BLOCK.finditer(data):
        # The label for this block is the last "kid:" line since the previous block.
        labels = list(_KID_LINE.finditer(data, cursor, match.start()))
        cursor = match.end()
        if not labels:
            raise ValueError(
                f"{source}: PEM block at byte {match.start()} has no preceding 'kid: <id>' line"
            )
        kid = labels[-1].group("kid").decode("utf-8", "replace")
        label = match.group("label")
        try:
            if label == b"CERTIFICATE":
                key = x509.load_pem_x509_certificate(match.group(0)).public_key()
            elif label == b"PUBLIC KEY":
                key = serialization.load_pem_public_key(match.group(0))
            else:
                raise ValueError(f"unsupported PEM block {label.decode()!r}")
        except ValueError as exc:
            raise ValueError(f"{source}: key {kid!r} cannot be parsed: {exc}") from exc
        _add(keys, kid, _rsa_only(key, source=source, kid=kid), source=source)
    return keys


def _add(
    keys: dict[str, rsa.RSAPublicKey], kid: str, key: rsa.RSAPublicKey, *, source: str
) -> None:
    if kid in keys:
        raise ValueError(f"{source}: duplicate kid {kid!r}")
    keys[kid] = key


def parse_google_keys(
    data: bytes | str, *, source: str = "<memory>"
) -> dict[str, rsa.RSAPublicKey]:
    """JWKS JSON, Google's ``{kid: PEM}`` JSON or a kid-labelled PEM bundle -> {kid: key}."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data.lstrip().startswith(b"{"):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{source}: JSON key file must be an object")
        if "keys" in doc:
            keys = _from_jwks(doc, source=source)
        else:
            keys = _from_x509_map(doc, source=source)
    else:
        keys = _from_pem(data, source=source)
    if not keys:
        raise ValueError(f"{source}: no usable RSA signing keys found")
    return keys


def load_google_keys(path: StrPath) -> dict[str, rsa.RSAPublicKey]:
    """Google signing-key file -> {kid: RSA public key} for ``verify_google``."""
    return parse_google_keys(_read(path), source=str(path))


def _packaged(name: str) -> list[x509.Certificate]:
    ref = resources.files(__package__).joinpath("data", name)
    return parse_pem_certificates(ref.read_bytes(), source=f"{__package__}/data/{name}")


def default_aws_certs() -> list[x509.Certificate]:
    """AWS's published per-region RSA certificates for the IID ``signature``."""
    return _packaged("aws-instance-identity.pem")


def default_azure_roots() -> list[x509.Certificate]:
    """DigiCert Global Root G2 and G3, the roots Azure's issuing CAs chain to."""
    return _packaged("azure-roots.pem")
