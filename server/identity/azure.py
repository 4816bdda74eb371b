"""Azure attested data: verifying the PKCS#7 envelope, its signer and its chain.

The agent posts ``{"signature": <base64 PKCS#7 SignedData>, "encoding": "pkcs7"}``
from IMDS ``/metadata/attested/document``. The signed content is JSON whose
``vmId`` is the instance id.

Three independent checks must all pass, and this module does each explicitly:

1. **The CMS signature itself** (RFC 5652 §5.4): with signed attributes, the
   ``content-type`` attribute must be ``id-data`` and ``message-digest`` must
   equal the digest of the encapsulated content; the signature is then over
   the DER of the attributes re-tagged as a SET. Skipping this step is
   GHSA-6x44-w3xg-hqqf: Coder checked only the chain, so a genuine (public)
   Azure certificate could vouch for any ``vmId``.
2. **The signer's name**: subject CN must match Coder's pattern for the IMDS
   signing certificate (``metadata.azure.com`` and the sovereign-cloud
   variants).
3. **The chain** from the signer through intermediates (embedded in the
   envelope plus operator-configured ones, optionally fetched from AIA) to one
   of the *pinned* roots, valid at the injected ``now``. The OS trust store is
   never consulted (Coder PR #25390: using it widened trust from Azure's roots
   to every CA on the host). Path building is cryptography's RFC 5280 / Web
   PKI verifier; only the leaf's extension policy is relaxed (see
   ``_leaf_policy``).

Azure quirk: the SignerInfo ``digestAlgorithm`` carries
``sha256WithRSAEncryption`` instead of plain ``sha256``. That field is not
covered by the signature and is accepted as meaning SHA-256.

Deviation from Coder, off by default: ``enforce_expires_on`` rejects
documents whose ``timeStamp.expiresOn`` has passed (Coder never checks it, so
a captured document can be replayed indefinitely).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

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
from .fetch import fetch_ca_issuer
from .trust import default_azure_roots

__all__ = [
    "MAX_SIGNATURE_CHARS",
    "SIGNER_CN_PATTERN",
    "default_azure_roots",
    "verify_azure",
]

# Coder's accepted signer names (public cloud, US Gov, China, legacy Germany).
SIGNER_CN_PATTERN = re.compile(r"(.*\.)?metadata\.(azure\.(com|us|cn)|microsoftazure\.de)")

# A real envelope (content + signer cert, sometimes an intermediate) is a few
# KiB of base64; 64 KiB bounds parsing work for junk.
MAX_SIGNATURE_CHARS = 64 * 1024
# Bounds path-building work; real envelopes carry one to three certificates.
MAX_EMBEDDED_CERTS = 8
MAX_CHAIN_DEPTH = 6
# The signer names at most a couple of CA-issuers URLs; never chase a list.
MAX_AIA_URLS = 4
# Azure's timeStamp format, e.g. "11/28/23 19:58:47 -0000".
_AZURE_TIMESTAMP_FORMAT = "%m/%d/%y %H:%M:%S %z"

_DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256(),
    "2.16.840.1.101.3.4.2.2": hashes.SHA384(),
    "2.16.840.1.101.3.4.2.3": hashes.SHA512(),
    # The Azure quirk: a signature-algorithm OID in the digest field.
    "1.2.840.113549.1.1.11": hashes.SHA256(),
    "1.2.840.113549.1.1.12": hashes.SHA384(),
    "1.2.840.113549.1.1.13": hashes.SHA512(),
}
# signatureAlgorithm OID -> (key kind, hash implied by the OID or None).
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
}
_NO_CHAIN = "signer certificate does not chain to a pinned root"
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"

Fetcher = Callable[[str], "x509.Certificate | bytes"]


# --------------------------------------------------------------------------
# Envelope parsing
# --------------------------------------------------------------------------


def _signed_data(der: bytes) -> cms.SignedData:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].dotted != _OID_SIGNED_DATA:
        raise InvalidIdentity("PKCS#7 content is not SignedData")
    signed = info["content"]
    if not isinstance(signed, cms.SignedData):
        raise InvalidIdentity("PKCS#7 content is not SignedData")
    return signed


def _only_signer(signed: cms.SignedData) -> cms.SignerInfo:
    signers = signed["signer_infos"]
    count = len(signers)
    if count == 0:
        raise InvalidIdentity("PKCS#7 envelope is unsigned")
    if count != 1:
        # One signer is the only shape Azure produces; with more, "which
        # signer vouches for the content" becomes ambiguous.
        raise InvalidIdentity("PKCS#7 envelope must have exactly one signer")
    return signers[0]


def _content(signed: cms.SignedData) -> bytes:
    encap = signed["encap_content_info"]
    if encap["content_type"].dotted != _OID_DATA:
        raise InvalidIdentity("PKCS#7 content type is not data")
    content = encap["content"]
    if content.native is None:
        raise InvalidIdentity("PKCS#7 content is detached")
    value = content.native
    if not isinstance(value, bytes):
        raise InvalidIdentity("PKCS#7 content is not an octet string")
    return value


def _embedded_certs(signed: cms.SignedData) -> list[tuple[object, x509.Certificate]]:
    """(asn1crypto cert, cryptography cert) pairs for every X.509 cert in the envelope."""
    choices = signed["certificates"]
    if choices.native is None:
        return []
    if len(choices) > MAX_EMBEDDED_CERTS:
        raise InvalidIdentity("PKCS#7 envelope carries too many certificates")
    out = []
    for choice in choices:
        if choice.name != "certificate":
            continue  # attribute/other certificate formats play no role here
        asn1_cert = choice.chosen
        out.append((asn1_cert, x509.load_der_x509_certificate(asn1_cert.dump())))
    return out


def _find_signer_cert(
    signer: cms.SignerInfo, certs: list[tuple[object, x509.Certificate]]
) -> x509.Certificate:
    sid = signer["sid"]
    matches: list[x509.Certificate] = []
    for asn1_cert, cert in certs:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (
                asn1_cert.issuer == ias["issuer"]
                and asn1_cert.serial_number == ias["serial_number"].native
            ):
                matches.append(cert)
        elif sid.name == "subject_key_identifier":
            ski = asn1_cert.key_identifier
            if ski is not None and hmac.compare_digest(ski, sid.chosen.native):
                matches.append(cert)
    unique = {c.fingerprint(hashes.SHA256()): c for c in matches}
    if not unique:
        raise InvalidIdentity("signer certificate is not in the PKCS#7 envelope")
    if len(unique) > 1:
        raise InvalidIdentity("signer certificate is ambiguous")
    return next(iter(unique.values()))


# --------------------------------------------------------------------------
# Signature verification
# --------------------------------------------------------------------------


def _attr_value(attrs: cms.CMSAttributes, oid: str) -> object:
    found = [a for a in attrs if a["type"].dotted == oid]
    if len(found) != 1 or len(found[0]["values"]) != 1:
        # RFC 5652 §11: exactly one attribute with exactly one value.
        raise InvalidIdentity("PKCS#7 signed attributes are malformed")
    return found[0]["values"][0]


def _verify_signature(signer: cms.SignerInfo, cert: x509.Certificate, content: bytes) -> None:
    digest_oid = signer["digest_algorithm"]["algorithm"].dotted
    digest = _DIGESTS.get(digest_oid)
    if digest is None:
        raise InvalidIdentity("PKCS#7 digest algorithm is not supported")
    sig_oid = signer["signature_algorithm"]["algorithm"].dotted
    if sig_oid not in _SIGNATURES:
        raise InvalidIdentity("PKCS#7 signature algorithm is not supported")
    kind, implied_hash = _SIGNATURES[sig_oid]
    if implied_hash is not None and implied_hash != digest.name:
        raise InvalidIdentity("PKCS#7 digest and signature algorithms disagree")

    attrs = signer["signed_attrs"]
    if attrs.native is not None:
        if len(attrs) == 0:
            raise InvalidIdentity("PKCS#7 signed attributes are empty")
        content_type = _attr_value(attrs, _OID_CONTENT_TYPE)
        if content_type.dotted != _OID_DATA:
            raise InvalidIdentity("PKCS#7 content-type attribute does not match")
        claimed = _attr_value(attrs, _OID_MESSAGE_DIGEST).native
        hasher = hashes.Hash(digest)
        hasher.update(content)
        if not isinstance(claimed, bytes) or not hmac.compare_digest(claimed, hasher.finalize()):
            raise InvalidIdentity("PKCS#7 message digest does not match the content")
        encoded = attrs.dump()
        if encoded[:1] != b"\xa0":
            raise InvalidIdentity("PKCS#7 signed attributes are malformed")
        # The signature covers the attributes as a universal SET OF, not the
        # [0] IMPLICIT tag they travel under (RFC 5652 §5.4).
        signed_bytes = b"\x31" + encoded[1:]
    else:
        signed_bytes = content

    signature = signer["signature"].native
    key = cert.public_key()
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed_bytes, padding.PKCS1v15(), digest)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed_bytes, ec.ECDSA(digest))
        else:
            raise InvalidIdentity("signer key does not match the signature algorithm")
    except InvalidSignature as exc:
        raise InvalidIdentity("PKCS#7 signature does not verify") from exc


# --------------------------------------------------------------------------
# Name and chain
# --------------------------------------------------------------------------


def _check_signer_name(cert: x509.Certificate) -> None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise InvalidIdentity("signer certificate must have exactly one common name")
    if not SIGNER_CN_PATTERN.fullmatch(names[0].value):
        raise InvalidIdentity("signer certificate is not an Azure metadata certificate")


def _leaf_not_ca(
    _policy: object, _cert: x509.Certificate, ext: x509.BasicConstraints | None
) -> None:
    if ext is not None and ext.ca:
        raise ValueError("signing certificate must not be a CA")


def _leaf_policy() -> ExtensionPolicy:
    # Web PKI leaf defaults demand a SAN and a TLS EKU (serverAuth for the
    # server verifier, clientAuth for the client one). The IMDS certificate is
    # used to sign CMS, not to serve TLS, and CAs are dropping clientAuth from
    # TLS certificates, so the leaf is only required not to be a CA; its EKU
    # is not restricted (Coder verifies with ExtKeyUsageAny). Issuers keep
    # the full Web PKI CA policy.
    return (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _leaf_not_ca)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    )


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy()
        )
        .build_client_verifier()
    )
    verifier.verify(leaf, list(intermediates))


def _aia_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    urls = [
        desc.access_location.value
        for desc in aia
        if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(desc.access_location, x509.UniformResourceIdentifier)
    ]
    return urls[:MAX_AIA_URLS]


def _fetch_issuers(leaf: x509.Certificate, fetcher: Fetcher) -> list[x509.Certificate]:
    urls = _aia_urls(leaf)
    if not urls:
        raise InvalidIdentity("certificate chain is incomplete and the signer names no CA issuer")
    fetched = []
    for url in urls:
        try:
            got = fetcher(url)
            cert = got if isinstance(got, x509.Certificate) else x509.load_der_x509_certificate(got)
        except Exception as exc:
            # Like Coder, one refused URL fails the whole verification, and the
            # reason is not echoed (it may describe internal network layout).
            raise InvalidIdentity("issuer certificate could not be fetched") from exc
        fetched.append(cert)
    return fetched


def _check_roots(roots: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    roots = list(roots)
    if not roots:
        # An empty store must never fall back to anything else.
        raise CallerError("no pinned Azure root certificates configured")
    if not all(isinstance(r, x509.Certificate) for r in roots):
        raise CallerError("Azure roots must be x509.Certificate objects")
    return roots


def _check_expires_on(doc: dict, now: datetime, skew: timedelta) -> None:
    stamp = doc.get("timeStamp")
    value = stamp.get("expiresOn") if isinstance(stamp, dict) else None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidIdentity("attested document has no expiresOn")
    try:
        expires = datetime.strptime(value, _AZURE_TIMESTAMP_FORMAT).astimezone(UTC)
    except ValueError as exc:
        raise InvalidIdentity("attested document expiresOn is not a valid timestamp") from exc
    if now > expires + skew:
        raise InvalidIdentity("attested document has expired")


@only_invalid_identity("Azure identity could not be verified")
def verify_azure(
    signature_b64: str | bytes,
    *,
    roots: Iterable[x509.Certificate],
    intermediates: Iterable[x509.Certificate] = (),
    now: datetime,
    fetch_missing: bool = False,
    fetcher: Fetcher | None = None,
    enforce_expires_on: bool = False,
    expires_on_skew: timedelta = timedelta(minutes=5),
) -> str:
    """Verify an Azure attested-data PKCS#7 envelope; return its ``vmId``.

    ``roots``: the pinned trust anchors (``default_azure_roots()`` or a
    bundle from settings); never empty, never the OS store.
    ``intermediates``: operator-configured issuing CAs, added to the ones
    embedded in the envelope.
    ``fetch_missing``: if the chain does not verify, fetch the signer's AIA
    CA-issuers certificates with ``fetcher`` (default: the SSRF-hardened
    ``fetch.fetch_ca_issuer``) and try once more.
    ``enforce_expires_on``: also reject documents past ``timeStamp.expiresOn``.

    Raises ``InvalidIdentity`` for every problem with the credential.
    """
    now = require_aware(now)
    roots = _check_roots(roots)
    configured = list(intermediates)

    text = as_text(signature_b64, what="signature", max_len=MAX_SIGNATURE_CHARS)
    der = strict_b64decode(text, what="signature")

    signed = _signed_data(der)
    signer = _only_signer(signed)
    content = _content(signed)
    embedded = _embedded_certs(signed)
    leaf = _find_signer_cert(signer, embedded)

    _check_signer_name(leaf)
    _verify_signature(signer, leaf, content)

    chain_pool = [c for _, c in embedded if c != leaf] + configured
    try:
        _verify_chain(leaf, chain_pool, roots, now)
    except VerificationError as first_error:
        if not fetch_missing:
            raise InvalidIdentity(_NO_CHAIN) from first_error
        fetched = _fetch_issuers(leaf, fetcher or fetch_ca_issuer)
        try:
            _verify_chain(leaf, chain_pool + fetched, roots, now)
        except VerificationError as exc:
            raise InvalidIdentity(_NO_CHAIN) from exc

    doc = parse_json_object(content, what="attested document")
    vm_id = check_instance_id(doc.get("vmId"), what="vmId")
    if enforce_expires_on:
        _check_expires_on(doc, now, expires_on_skew)
    return vm_id
