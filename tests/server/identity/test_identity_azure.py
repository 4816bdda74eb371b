"""Azure attested data: valid envelopes, attack vectors, AIA fetching and fuzzing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from hypothesis import given
from hypothesis import strategies as st

from server.identity import InvalidIdentity, default_azure_roots, verify_azure
from server.identity.azure import MAX_SIGNATURE_CHARS
from server.identity.fetch import fetch_ca_issuer

from ._support import FUZZ, NOW, AzureWorld, b64, wrap64

pytestmark = pytest.mark.timeout(60)

VM_ID = "7b4a2c1e-0d1f-4c7a-9f3e-2b8d6e5a4c10"


def attested(vm_id=VM_ID, **extra) -> dict:
    doc = {
        "licenseType": "",
        "nonce": "20260301-120000",
        "plan": {"name": "", "product": "", "publisher": ""},
        "sku": "22_04-lts-gen2",
        "subscriptionId": "00000000-1111-2222-3333-444444444444",
        "timeStamp": {
            "createdOn": "03/01/26 11:00:00 -0000",
            "expiresOn": "03/01/26 17:00:00 -0000",
        },
        "vmId": vm_id,
    }
    doc.update(extra)
    return doc


def verify(world: AzureWorld, der: bytes | str, **kw) -> str:
    kw.setdefault("roots", [world.root.cert])
    kw.setdefault("now", NOW)
    return verify_azure(der if isinstance(der, str) else b64(der), **kw)


def assert_invalid(world, der, match=None, **kw):
    with pytest.raises(InvalidIdentity, match=match) as info:
        verify(world, der, **kw)
    assert info.value.detail
    return info.value


# --------------------------------------------- asn1crypto surgery helpers
#
# New parents are assembled from the parsed children, which keep their
# original encodings, so nothing signed is re-serialised by accident.


def _signed_data(der: bytes) -> cms.SignedData:
    return cms.ContentInfo.load(der)["content"]


def rebuild(der: bytes, **overrides) -> bytes:
    sd = _signed_data(der)
    fields = {}
    for name in (
        "version",
        "digest_algorithms",
        "encap_content_info",
        "certificates",
        "signer_infos",
    ):
        value = overrides.pop(name, sd[name])
        if value is not None and getattr(value, "native", True) is not None:
            fields[name] = value
    assert not overrides
    return cms.ContentInfo(
        {"content_type": "signed_data", "content": cms.SignedData(fields)}
    ).dump()


def rebuild_signer(der: bytes, **overrides) -> cms.SignerInfo:
    si = _signed_data(der)["signer_infos"][0]
    fields = {}
    for name in (
        "version",
        "sid",
        "digest_algorithm",
        "signed_attrs",
        "signature_algorithm",
        "signature",
        "unsigned_attrs",
    ):
        value = overrides.pop(name, si[name])
        if value is not None and getattr(value, "native", True) is not None:
            fields[name] = value
    assert not overrides
    return cms.SignerInfo(fields)


def content_info(data: bytes) -> cms.ContentInfo:
    # SignedData v1 (what the builder emits) carries a PKCS#7-style ContentInfo.
    return cms.ContentInfo({"content_type": "data", "content": data})


def doc_bytes(**kw) -> bytes:
    return json.dumps(attested(**kw)).encode()


# ------------------------------------------------------------------ valid


def test_valid_envelope_returns_vm_id(azure):
    assert verify(azure, azure.sign(attested())) == VM_ID


def test_surgery_helpers_are_lossless(azure):
    # Control for every asn1crypto-built attack below: a rebuild that changes
    # nothing must still verify.
    der = azure.sign(attested())
    assert verify(azure, rebuild(der)) == VM_ID
    assert verify(azure, rebuild(der, signer_infos=cms.SignerInfos([rebuild_signer(der)]))) == VM_ID


def test_valid_wrapped_base64(azure):
    assert verify(azure, wrap64(b64(azure.sign(attested())))) == VM_ID


def test_valid_with_configured_intermediate_only(azure):
    der = azure.sign(attested(), extra_certs=[])
    assert verify(azure, der, intermediates=[azure.intermediate.cert]) == VM_ID


def test_valid_without_signed_attributes(azure):
    der = azure.sign(attested(), options=[pkcs7.PKCS7Options.NoAttributes])
    assert _signed_data(der)["signer_infos"][0]["signed_attrs"].native is None
    assert verify(azure, der) == VM_ID


@pytest.mark.parametrize("hash_alg", [hashes.SHA384(), hashes.SHA512()])
def test_valid_other_digests(azure, hash_alg):
    assert verify(azure, azure.sign(attested(), hash_alg=hash_alg)) == VM_ID


def test_valid_ecdsa_signer(azure, pki):
    leaf = pki.issue("metadata.azure.com", issuer=azure.intermediate, key=pki.ec_key)
    assert verify(azure, azure.sign(attested(), signer=leaf)) == VM_ID


def test_valid_azure_digest_oid_quirk(azure):
    # Azure puts sha256WithRSAEncryption in SignerInfo.digestAlgorithm; that
    # field is unsigned, so the envelope stays valid and must be accepted.
    der = azure.sign(attested())
    quirk = rebuild_signer(
        der, digest_algorithm=cms.DigestAlgorithm({"algorithm": "1.2.840.113549.1.1.11"})
    )
    assert quirk["digest_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.11"
    assert verify(azure, rebuild(der, signer_infos=cms.SignerInfos([quirk]))) == VM_ID


def test_valid_signer_identified_by_subject_key_identifier(azure):
    der = azure.sign(attested())
    ski = azure.leaf.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    si = rebuild_signer(
        der, version="v3", sid=cms.SignerIdentifier({"subject_key_identifier": ski})
    )
    assert verify(azure, rebuild(der, signer_infos=cms.SignerInfos([si]))) == VM_ID


@pytest.mark.parametrize(
    "cn",
    [
        "metadata.azure.us",
        "metadata.azure.cn",
        "metadata.microsoftazure.de",
        "eastus.metadata.azure.com",
    ],
)
def test_valid_sovereign_cloud_names(azure, pki, cn):
    leaf = pki.issue(cn, issuer=azure.intermediate)
    assert verify(azure, azure.sign(attested(), signer=leaf)) == VM_ID


def test_valid_enforced_expires_on(azure):
    assert verify(azure, azure.sign(attested()), enforce_expires_on=True) == VM_ID


def test_valid_with_fetched_intermediate(azure):
    der = azure.sign(attested(), extra_certs=[])
    urls = []

    def fetcher(url):
        urls.append(url)
        return azure.intermediate.cert.public_bytes(serialization.Encoding.DER)

    assert verify(azure, der, fetch_missing=True, fetcher=fetcher) == VM_ID
    assert urls == ["http://www.microsoft.com/pkiops/certs/test-issuing-ca.crt"]


def test_no_fetch_when_chain_already_verifies(azure):
    def fetcher(url):
        raise AssertionError("must not fetch")

    assert verify(azure, azure.sign(attested()), fetch_missing=True, fetcher=fetcher) == VM_ID


def test_shipped_roots_load():
    roots = default_azure_roots()
    assert {r.subject.rfc4514_string().split(",")[0] for r in roots} == {
        "CN=DigiCert Global Root G2",
        "CN=DigiCert Global Root G3",
    }


# ---------------------------------------------------------------- attacks


def test_attack_self_signed_leaf_with_the_right_name(azure, pki):
    rogue = pki.issue("metadata.azure.com")
    assert_invalid(azure, azure.sign(attested(), signer=rogue, extra_certs=[]), "chain")


def test_attack_rogue_root_with_identical_subject(azure, pki):
    rogue_root = pki.issue("Test Azure Root", ca=True, path_length=1, org="Test")
    rogue_int = pki.issue(
        "Test Azure Issuing CA", issuer=rogue_root, ca=True, path_length=0, org="Test"
    )
    rogue_leaf = pki.issue("metadata.azure.com", issuer=rogue_int)
    der = azure.sign(attested(), signer=rogue_leaf, extra_certs=[rogue_int.cert, rogue_root.cert])
    assert_invalid(azure, der, "chain")


def test_attack_rogue_chain_is_fine_only_when_its_root_is_pinned(azure, pki):
    # The same rogue envelope verifies if (and only if) its root is pinned,
    # proving the failure above is about trust, not about the envelope.
    rogue_root = pki.issue("Rogue Root", ca=True, path_length=1)
    rogue_leaf = pki.issue("metadata.azure.com", issuer=rogue_root)
    der = azure.sign(attested(), signer=rogue_leaf, extra_certs=[])
    assert_invalid(azure, der)
    assert verify(azure, der, roots=[rogue_root.cert]) == VM_ID


def test_attack_pinned_roots_do_not_include_the_system_store(azure):
    with pytest.raises(InvalidIdentity):
        verify(azure, azure.sign(attested()), roots=default_azure_roots())


@pytest.mark.parametrize(
    "cn",
    [
        "evil.com",
        "metadata.azure.com.evil.com",
        "xmetadata.azure.com",
        "metadata.azure.org",
        "metadata.azure.com\n",
        "METADATA.AZURE.COM",
        "metadata-azure.com",
    ],
)
def test_attack_wrong_signer_name(azure, pki, cn):
    leaf = pki.issue(
        cn,
        issuer=azure.intermediate,
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]),
    )
    assert_invalid(azure, azure.sign(attested(), signer=leaf), "not an Azure metadata")


def test_attack_two_common_names(azure, pki):
    subject = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "evil.com"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "metadata.azure.com"),
        ]
    )
    leaf = pki.issue("x", issuer=azure.intermediate, subject=subject)
    assert_invalid(azure, azure.sign(attested(), signer=leaf), "exactly one common name")


def test_attack_expired_leaf(azure, pki):
    leaf = pki.issue(
        "metadata.azure.com",
        issuer=azure.intermediate,
        not_before=NOW - timedelta(days=30),
        not_after=NOW - timedelta(seconds=1),
    )
    assert_invalid(azure, azure.sign(attested(), signer=leaf), "chain")


def test_attack_not_yet_valid_leaf(azure, pki):
    leaf = pki.issue(
        "metadata.azure.com", issuer=azure.intermediate, not_before=NOW + timedelta(minutes=5)
    )
    assert_invalid(azure, azure.sign(attested(), signer=leaf), "chain")


def test_attack_expired_intermediate(azure, pki):
    inter = pki.issue(
        "Old Issuing CA",
        issuer=azure.root,
        ca=True,
        path_length=0,
        not_after=NOW - timedelta(days=1),
    )
    leaf = pki.issue("metadata.azure.com", issuer=inter)
    assert_invalid(azure, azure.sign(attested(), signer=leaf, extra_certs=[inter.cert]), "chain")


def test_attack_verification_time_is_the_injected_clock(azure):
    der = azure.sign(attested())
    assert_invalid(azure, der, "chain", now=NOW + timedelta(days=400))


def test_attack_missing_intermediate(azure):
    assert_invalid(azure, azure.sign(attested(), extra_certs=[]), "chain")


def test_attack_intermediate_without_ca_flag(azure, pki):
    inter = pki.issue("Not A CA", issuer=azure.root, ca=False)
    leaf = pki.issue("metadata.azure.com", issuer=inter)
    assert_invalid(azure, azure.sign(attested(), signer=leaf, extra_certs=[inter.cert]), "chain")


def test_attack_genuine_leaf_used_as_a_ca(azure, pki):
    # Whoever holds a genuine end-entity key must not mint further "Azure" certs.
    leaf2 = pki.issue("metadata.azure.com", issuer=azure.leaf)
    der = azure.sign(
        attested(), signer=leaf2, extra_certs=[azure.leaf.cert, azure.intermediate.cert]
    )
    assert_invalid(azure, der, "chain")


def test_attack_signer_that_is_itself_a_ca(azure, pki):
    ca_leaf = pki.issue("metadata.azure.com", issuer=azure.root, ca=True, path_length=0)
    assert_invalid(azure, azure.sign(attested(), signer=ca_leaf, extra_certs=[]), "chain")


def test_attack_unsigned_envelope(azure):
    der = rebuild(azure.sign(attested()), signer_infos=cms.SignerInfos([]))
    assert_invalid(azure, der, "unsigned")


def test_attack_two_signers(azure, pki):
    other = pki.issue("metadata.azure.com", issuer=azure.intermediate)
    der1 = azure.sign(attested())
    der2 = azure.sign(attested(), signer=other)
    signers = cms.SignerInfos([rebuild_signer(der1), rebuild_signer(der2)])
    second = cms.CertificateChoices({"certificate": _signed_data(der2)["certificates"][0].chosen})
    certs = cms.CertificateSet([*_signed_data(der1)["certificates"], second])
    assert_invalid(azure, rebuild(der1, signer_infos=signers, certificates=certs), "exactly one")


def test_attack_content_swapped_after_signing(azure):
    der = azure.sign(attested())
    swapped = rebuild(der, encap_content_info=content_info(doc_bytes(vm_id="victim-vm")))
    assert_invalid(azure, swapped, "message digest")


def test_attack_content_swapped_and_digest_attribute_recomputed(azure):
    der = azure.sign(attested())
    forged = doc_bytes(vm_id="victim-vm")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(forged)
    si = rebuild_signer(der)
    attrs = []
    for attr in si["signed_attrs"]:
        if attr["type"].native == "message_digest":
            attr = cms.CMSAttribute({"type": "message_digest", "values": [digest.finalize()]})
        attrs.append(attr)
    si = rebuild_signer(der, signed_attrs=cms.CMSAttributes(attrs))
    der = rebuild(der, encap_content_info=content_info(forged), signer_infos=cms.SignerInfos([si]))
    assert_invalid(azure, der, "signature does not verify")


def test_attack_content_swapped_without_signed_attributes(azure):
    der = azure.sign(attested(), options=[pkcs7.PKCS7Options.NoAttributes])
    swapped = rebuild(der, encap_content_info=content_info(doc_bytes(vm_id="victim-vm")))
    assert_invalid(azure, swapped, "signature does not verify")


def test_attack_genuine_certificate_wrapped_around_attacker_signature(azure, pki):
    # GHSA-6x44-w3xg-hqqf: the genuine chain is public; the attacker signs
    # with their own key and presents the genuine certificate as signer.
    attacker = pki.issue("metadata.azure.com", issuer=pki.issue("Attacker CA", ca=True))
    der = azure.sign(attested(vm_id="victim-vm"), signer=attacker, extra_certs=[])
    genuine = _signed_data(azure.sign(attested()))
    si = rebuild_signer(der, sid=genuine["signer_infos"][0]["sid"])
    forged = rebuild(der, certificates=genuine["certificates"], signer_infos=cms.SignerInfos([si]))
    assert_invalid(azure, forged, "signature does not verify")


def test_attack_signer_certificate_not_in_envelope(azure):
    der = azure.sign(attested(), options=[pkcs7.PKCS7Options.NoCerts])
    # Even with the leaf offered as a configured "intermediate", the signer
    # must be identified from the envelope itself.
    assert_invalid(azure, der, "not in the PKCS#7", intermediates=[azure.leaf.cert])


def test_attack_signer_identifier_points_elsewhere(azure):
    der = azure.sign(attested())
    ias = cms.IssuerAndSerialNumber(
        {
            "issuer": _signed_data(der)["signer_infos"][0]["sid"].chosen["issuer"],
            "serial_number": 4242,
        }
    )
    si = rebuild_signer(der, sid=cms.SignerIdentifier({"issuer_and_serial_number": ias}))
    assert_invalid(azure, rebuild(der, signer_infos=cms.SignerInfos([si])), "not in the PKCS#7")


def test_attack_detached_content(azure):
    der = azure.sign(attested(), options=[pkcs7.PKCS7Options.DetachedSignature])
    assert_invalid(azure, der, "detached")


def test_attack_wrong_content_type_attribute(azure):
    der = azure.sign(attested())
    si = rebuild_signer(der)
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["signed_data"]})
        if a["type"].native == "content_type"
        else a
        for a in si["signed_attrs"]
    ]
    si = rebuild_signer(der, signed_attrs=cms.CMSAttributes(attrs))
    assert_invalid(azure, rebuild(der, signer_infos=cms.SignerInfos([si])), "content-type")


def test_attack_missing_message_digest_attribute(azure):
    der = azure.sign(attested())
    attrs = [a for a in rebuild_signer(der)["signed_attrs"] if a["type"].native != "message_digest"]
    si = rebuild_signer(der, signed_attrs=cms.CMSAttributes(attrs))
    assert_invalid(azure, rebuild(der, signer_infos=cms.SignerInfos([si])), "malformed")


@pytest.mark.parametrize("oid", ["1.2.840.113549.2.5", "1.3.14.3.2.26", "1.2.3.4"])
def test_attack_weak_or_unknown_digest_algorithm(azure, oid):
    der = azure.sign(attested())
    si = rebuild_signer(der, digest_algorithm=cms.DigestAlgorithm({"algorithm": oid}))
    assert_invalid(azure, rebuild(der, signer_infos=cms.SignerInfos([si])), "digest algorithm")


def test_attack_digest_and_signature_algorithm_disagree(azure):
    der = azure.sign(attested())
    si = rebuild_signer(
        der, signature_algorithm=cms.SignedDigestAlgorithm({"algorithm": "1.2.840.113549.1.1.12"})
    )
    assert_invalid(azure, rebuild(der, signer_infos=cms.SignerInfos([si])), "disagree")


def test_attack_wrong_outer_content_type(azure):
    der = cms.ContentInfo({"content_type": "data", "content": b"{}"}).dump()
    assert_invalid(azure, der, "not SignedData")


def test_attack_trailing_garbage_after_der(azure):
    assert_invalid(azure, azure.sign(attested()) + b"\x00\x00")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"vmId": 12}',
        b"{}",
        b'{"vmId": ""}',
        b'{"vmId": "   "}',
        b'{"vmId": "a", "vmId": "b"}',
        b"\xff\xfe",
        b'{"vmId": "a\\u0000"}',
    ],
)
def test_attack_bad_content_even_if_signed(azure, content):
    assert_invalid(azure, azure.sign(content))


def test_attack_expired_document_when_enforced(azure):
    der = azure.sign(attested())
    assert verify(azure, der, now=NOW + timedelta(hours=6)) == VM_ID  # Coder's behaviour
    assert_invalid(azure, der, "expired", now=NOW + timedelta(hours=6), enforce_expires_on=True)


@pytest.mark.parametrize("stamp", [None, {}, {"expiresOn": "tomorrow"}, {"expiresOn": 5}])
def test_attack_missing_expires_on_when_enforced(azure, stamp):
    doc = attested()
    doc["timeStamp"] = stamp
    assert_invalid(azure, azure.sign(doc), enforce_expires_on=True)


def test_attack_oversized_input(azure):
    assert_invalid(azure, "A" * (MAX_SIGNATURE_CHARS + 4), "too large")


@pytest.mark.parametrize("text", ["", "   ", "not base64!", "QUJD", "QUJDRA", "-_-_", "\u00e9AAA"])
def test_attack_non_base64_or_garbage(azure, text):
    assert_invalid(azure, text)


@pytest.mark.parametrize("value", [None, 1, ["x"]])
def test_attack_non_string_input(azure, value):
    with pytest.raises(InvalidIdentity):
        verify_azure(value, roots=[azure.root.cert], now=NOW)


def test_attack_too_many_embedded_certificates(azure):
    der = azure.sign(attested(), extra_certs=[azure.intermediate.cert] * 12)
    assert_invalid(azure, der, "too many")


# ---------------------------------------------------------- AIA fetching


def test_fetch_disabled_by_default(azure):
    def fetcher(url):
        raise AssertionError("fetching is opt-in")

    assert_invalid(azure, azure.sign(attested(), extra_certs=[]), "chain", fetcher=fetcher)


def test_attack_aia_pointing_at_loopback_is_refused(azure, pki, canary):
    canary.body = azure.intermediate.cert.public_bytes(serialization.Encoding.DER)
    leaf = pki.issue("metadata.azure.com", issuer=azure.intermediate, aia_url=canary.url())
    der = azure.sign(attested(), signer=leaf, extra_certs=[])
    assert_invalid(azure, der, "could not be fetched", fetch_missing=True)
    assert canary.hits == []


def test_attack_allow_listed_name_rebound_to_loopback_is_refused(azure, canary):
    canary.body = azure.intermediate.cert.public_bytes(serialization.Encoding.DER)

    def fetcher(url):
        return fetch_ca_issuer(url, resolver=lambda host, port: ["127.0.0.1"])

    der = azure.sign(attested(), extra_certs=[])
    assert_invalid(azure, der, "could not be fetched", fetch_missing=True, fetcher=fetcher)
    assert canary.hits == []


def test_attack_fetched_certificate_still_has_to_chain(azure, pki):
    unrelated = pki.issue("Test Azure Issuing CA", ca=True, path_length=0, org="Test")
    der = azure.sign(attested(), extra_certs=[])
    assert_invalid(azure, der, "chain", fetch_missing=True, fetcher=lambda url: unrelated.cert)


def test_attack_fetcher_returning_garbage(azure):
    der = azure.sign(attested(), extra_certs=[])
    assert_invalid(
        azure, der, "could not be fetched", fetch_missing=True, fetcher=lambda u: b"junk"
    )


# ------------------------------------------------------------ caller bugs


def test_empty_roots_is_a_caller_error(azure):
    with pytest.raises(ValueError) as info:
        verify(azure, azure.sign(attested()), roots=[])
    assert not isinstance(info.value, InvalidIdentity)


# ------------------------------------------------------------------- fuzz


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_arbitrary_text(azure, text):
    with pytest.raises(InvalidIdentity):
        verify(azure, text)


@FUZZ
@given(raw=st.binary(max_size=600))
def test_fuzz_arbitrary_der_bytes(azure, raw):
    with pytest.raises(InvalidIdentity):
        verify(azure, raw)


@pytest.fixture(scope="module")
def valid_der(azure):
    return azure.sign(attested())


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_envelope_never_yields_another_vm_id(azure, valid_der, data):
    # Flip, drop or insert bytes anywhere in a valid envelope: the result may
    # still verify (some fields are unsigned, e.g. SignedData.version) but can
    # never produce a different vmId, and can only fail with InvalidIdentity.
    der = bytearray(valid_der)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(der) - 1))
        op = data.draw(st.sampled_from(["flip", "drop", "insert", "set"]))
        if op == "flip":
            der[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "drop":
            del der[pos]
        elif op == "insert":
            der.insert(pos, data.draw(st.integers(0, 255)))
        else:
            der[pos] = data.draw(st.sampled_from([0x00, 0x80, 0xFF, 0x30, 0x31, 0xA0]))
    try:
        result = verify(azure, bytes(der))
    except InvalidIdentity:
        return
    assert result == VM_ID


@FUZZ
@given(content=st.binary(max_size=200))
def test_fuzz_signed_arbitrary_content(azure, content):
    try:
        result = verify(azure, azure.sign(content))
    except InvalidIdentity:
        return
    assert json.loads(content)["vmId"] == result
