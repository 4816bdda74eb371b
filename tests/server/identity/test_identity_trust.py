"""Trust material loading: PEM bundles, Google JWKS / x509 maps, shipped data."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from server.identity import (
    default_aws_certs,
    default_azure_roots,
    load_google_keys,
    load_pem_certificates,
    parse_google_keys,
)

pytestmark = pytest.mark.timeout(60)


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def jwk(kid: str, key: rsa.RSAPrivateKey, **extra) -> dict:
    nums = key.public_key().public_numbers()

    def enc(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": enc(nums.n),
        "e": enc(nums.e),
        **extra,
    }


def same_key(a, b) -> bool:
    return a.public_numbers() == b.public_numbers()


# ----------------------------------------------------------- PEM bundles


def test_pem_bundle_with_comments(tmp_path, azure):
    path = tmp_path / "bundle.pem"
    path.write_text(f"# root\n{pem(azure.root.cert)}\nsome note\n{pem(azure.intermediate.cert)}")
    assert load_pem_certificates(path) == [azure.root.cert, azure.intermediate.cert]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.pem"):
        load_pem_certificates(tmp_path / "nope.pem")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_names_the_path(tmp_path):
    path = tmp_path / "locked.pem"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(ValueError, match=r"locked\.pem"):
        load_pem_certificates(path)


def test_directory_is_not_a_trust_file(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_pem_certificates(tmp_path)


@pytest.mark.parametrize("content", ["", "   \n", "# only a comment\n", "not pem at all"])
def test_empty_or_certless_bundle(tmp_path, content):
    path = tmp_path / "empty.pem"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"empty\.pem"):
        load_pem_certificates(path)


def test_corrupt_certificate_block(tmp_path):
    path = tmp_path / "bad.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"bad\.pem: certificate #1"):
        load_pem_certificates(path)


# ----------------------------------------------------------- shipped data


def test_shipped_aws_certificates_are_intact():
    certs = default_aws_certs()
    assert len(certs) == 14
    for cert in certs:
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        # Every AWS certificate is self-signed: a transcription error in the
        # data file would break its own signature.
        key.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    assert len({c.fingerprint(hashes.SHA256()) for c in certs}) == 14


def test_shipped_azure_roots_are_intact():
    fingerprints = {c.fingerprint(hashes.SHA256()).hex() for c in default_azure_roots()}
    assert fingerprints == {
        "cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f",  # DigiCert G2
        "31ad6648f8104138c738f39ea4320133393e3a18cc02296ef97c2ac9ef6731d0",  # DigiCert G3
    }


# ------------------------------------------------------------ Google keys


def test_google_jwks(tmp_path, google):
    path = tmp_path / "jwks.json"
    ec_entry = {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": "AA", "y": "AA"}
    enc_entry = jwk("enc1", google.other_key, use="enc")
    path.write_text(json.dumps({"keys": [jwk("k1", google.key), ec_entry, enc_entry]}))
    keys = load_google_keys(path)
    assert list(keys) == ["k1"]
    assert same_key(keys["k1"], google.key.public_key())


def test_google_x509_map(tmp_path, google, pki):
    cert = pki.issue("googleapis", key=google.key).cert
    path = tmp_path / "certs.json"
    path.write_text(json.dumps({"kid-a": pem(cert)}))
    keys = load_google_keys(path)
    assert same_key(keys["kid-a"], google.key.public_key())


def test_google_pem_bundle_with_kid_labels(tmp_path, google, pki):
    cert = pki.issue("googleapis", key=google.key).cert
    spki = google.other_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "google.pem"
    path.write_text(f"kid: aaa\n{pem(cert)}\n# kid: bbb\n{spki.decode()}")
    keys = load_google_keys(path)
    assert set(keys) == {"aaa", "bbb"}
    assert same_key(keys["bbb"], google.other_key.public_key())


def test_google_pem_bundle_without_kid_is_refused(tmp_path, azure):
    path = tmp_path / "google.pem"
    path.write_text(pem(azure.root.cert))
    with pytest.raises(ValueError, match="kid"):
        load_google_keys(path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ("[]", "no PEM|no usable"),
        ('{"keys": {}}', "must be a list"),
        ('{"keys": []}', "no usable"),
        ('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', "without a 'kid'"),
        ('{"keys": [{"kty": "RSA", "kid": "a", "e": "AQAB"}]}', "has no 'n'"),
        ('{"kid": 5}', "not a PEM string"),
        (
            '{"kid": "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"}',
            "cannot be parsed",
        ),
    ],
)
def test_google_key_file_errors(tmp_path, content, match):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_google_keys(path)


def test_google_duplicate_kid(google):
    doc = {"keys": [jwk("k1", google.key), jwk("k1", google.other_key)]}
    with pytest.raises(ValueError, match="duplicate kid"):
        parse_google_keys(json.dumps(doc))


def test_google_non_rsa_certificate_refused(pki):
    cert = pki.issue("ec", key=ec.generate_private_key(ec.SECP256R1())).cert
    with pytest.raises(ValueError, match="not an RSA"):
        parse_google_keys(json.dumps({"k": pem(cert)}))
