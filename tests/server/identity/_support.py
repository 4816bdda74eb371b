"""Test-only crypto helpers for the identity tests: a private CA, signers, a canary.

Everything is generated locally with ``cryptography``; nothing touches a
non-loopback address.
"""

from __future__ import annotations

import base64
import http.server
import json
import textwrap
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, settings

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

# Modest example counts keep the whole folder well under 30 s on 2 cores; no
# example database, so runs leave nothing behind in the working tree.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Pki:
    """Small certificate factory. Every call gets a fresh key, so a "rogue" CA
    can never accidentally share a key with the pinned one."""

    def __init__(self) -> None:
        self.ec_key = ec.generate_private_key(ec.SECP256R1())

    def rsa_key(self) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(65537, 2048)

    def issue(
        self,
        cn: str,
        *,
        issuer: Issued | None = None,
        key=None,
        ca: bool = False,
        path_length: int | None = None,
        basic_constraints: bool = True,
        not_before: datetime = NOW - timedelta(days=30),
        not_after: datetime = NOW + timedelta(days=300),
        aia_url: str | None = None,
        org: str | None = None,
        subject: x509.Name | None = None,
    ) -> Issued:
        key = key or self.rsa_key()
        subject = subject or _name(cn, org)
        signer_key = issuer.key if issuer else key
        issuer_name = issuer.cert.subject if issuer else subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(_CA_USAGE if ca else _LEAF_USAGE, critical=True)
        )
        if basic_constraints:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                critical=True,
            )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            ).add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        if aia_url:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier(aia_url),
                        )
                    ]
                ),
                critical=False,
            )
        return Issued(builder.sign(signer_key, hashes.SHA256()), key)


@dataclass
class AzureWorld:
    pki: Pki
    root: Issued
    intermediate: Issued
    leaf: Issued

    def sign(
        self,
        content: bytes | dict,
        *,
        signer: Issued | None = None,
        extra_certs: list[x509.Certificate] | None = None,
        options: list[pkcs7.PKCS7Options] | None = None,
        hash_alg: hashes.HashAlgorithm | None = None,
    ) -> bytes:
        """DER PKCS#7 SignedData; by default embeds the leaf and the intermediate."""
        if isinstance(content, dict):
            content = json.dumps(content).encode()
        signer = signer or self.leaf
        builder = pkcs7.PKCS7SignatureBuilder().set_data(content)
        builder = builder.add_signer(signer.cert, signer.key, hash_alg or hashes.SHA256())
        certs = [self.intermediate.cert] if extra_certs is None else extra_certs
        for cert in certs:
            builder = builder.add_certificate(cert)
        return builder.sign(serialization.Encoding.DER, options or [])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wrap64(text: str, newline: str = "\n") -> str:
    """IMDS-style line wrapping of base64 text."""
    return newline.join(textwrap.wrap(text, 64))


@dataclass
class AwsWorld:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def sign(self, document: str | bytes, key: rsa.RSAPrivateKey | None = None) -> str:
        if isinstance(document, str):
            document = document.encode()
        sig = (key or self.key).sign(document, padding.PKCS1v15(), hashes.SHA256())
        return wrap64(b64(sig))


@dataclass
class GoogleWorld:
    key: rsa.RSAPrivateKey
    other_key: rsa.RSAPrivateKey
    kid: str

    @property
    def keys(self) -> dict:
        return {self.kid: self.key.public_key()}

    def claims(self, **overrides) -> dict:
        iat = int(NOW.timestamp()) - 60
        claims = {
            "iss": "https://accounts.google.com",
            "aud": "coder",
            "azp": "1234567890",
            "sub": "1234567890",
            "iat": iat,
            "exp": iat + 3600,
            "google": {
                "compute_engine": {
                    "instance_id": "5918123409876543210",
                    "instance_name": "ws-1",
                    "project_id": "proj",
                    "zone": "us-central1-a",
                }
            },
        }
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, claims: dict | None = None, *, key=None, headers=None, **overrides) -> str:
        headers = {"kid": self.kid, **(headers or {})}
        return jwt.encode(
            claims if claims is not None else self.claims(**overrides),
            key or self.key,
            algorithm="RS256",
            headers=headers,
        )


DROP = object()


class Canary:
    """A loopback HTTP server that records every request it receives."""

    def __init__(self) -> None:
        canary = self
        self.hits: list[str] = []
        self.body = b""
        self.status = 200

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.hits.append(self.path)
                self.send_response(canary.status)
                self.send_header("Content-Length", str(len(canary.body)))
                self.end_headers()
                self.wfile.write(canary.body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/ca.crt") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
