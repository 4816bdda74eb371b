"""AWS instance identity: valid documents, attack vectors and decoder fuzzing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from server.identity import InvalidIdentity, MalformedClaims, default_aws_certs, verify_aws
from server.identity.aws import MAX_DOCUMENT_CHARS, MAX_SIGNATURE_CHARS

from ._support import FUZZ, NOW, b64, wrap64

pytestmark = pytest.mark.timeout(60)


def document(**fields) -> str:
    base = {
        "accountId": "123456789012",
        "architecture": "x86_64",
        "availabilityZone": "us-east-1a",
        "imageId": "ami-0abcdef1234567890",
        "instanceId": "i-0123456789abcdef0",
        "instanceType": "t3.micro",
        "pendingTime": "2026-03-01T10:00:00Z",
        "privateIp": "10.0.0.12",
        "region": "us-east-1",
        "version": "2017-09-30",
    }
    base.update(fields)
    return json.dumps(base, indent=2)


def verify(aws, doc, sig, **kw):
    return verify_aws(doc, sig, [aws.cert], now=NOW, **kw)


# ---------------------------------------------------------------- valid


def test_valid_document_returns_instance_id(aws):
    doc = document()
    assert verify(aws, doc, aws.sign(doc)) == "i-0123456789abcdef0"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_newline_wrapped_signature_is_accepted(aws, newline):
    doc = document()
    sig = aws.sign(doc).replace("\n", newline) + newline
    assert "\n" in sig
    assert verify(aws, doc, sig) == "i-0123456789abcdef0"


def test_first_matching_certificate_wins_among_many(aws, pki):
    other = pki.issue("other-region")
    doc = document()
    certs = [*default_aws_certs(), other.cert, aws.cert]
    assert verify_aws(doc, aws.sign(doc), certs, now=NOW) == "i-0123456789abcdef0"


def test_bare_public_keys_are_accepted(aws):
    doc = document()
    assert verify_aws(doc, aws.sign(doc), [aws.key.public_key()], now=NOW)


def test_bytes_inputs_are_accepted(aws):
    doc = document()
    assert verify(aws, doc.encode(), aws.sign(doc).encode()) == "i-0123456789abcdef0"


def test_expired_certificate_is_still_used_as_a_pinned_key(aws, pki):
    # AWS's own "other" certificate expired in 2024 and still signs IIDs.
    expired = pki.issue(
        "ec2.amazonaws.com",
        key=aws.key,
        not_before=NOW - timedelta(days=4000),
        not_after=NOW - timedelta(days=600),
    )
    doc = document()
    assert verify_aws(doc, aws.sign(doc), [expired.cert], now=NOW)


def test_strict_mode_accepts_fresh_document(aws):
    doc = document(pendingTime="2026-03-01T11:30:00Z")
    assert verify(aws, doc, aws.sign(doc), max_age=timedelta(hours=1))


def test_launched_after_accepts_later_launch(aws):
    doc = document(pendingTime="2026-03-01T11:30:00Z")
    assert verify(aws, doc, aws.sign(doc), launched_after=NOW - timedelta(hours=1))


# ------------------------------------------------------------- attacks


def test_attack_signed_by_untrusted_key(aws, pki):
    doc = document()
    assert_invalid(aws, doc, aws.sign(doc, key=pki.rsa_key()))


def test_attack_self_signed_document_against_real_aws_certs(aws):
    doc = document()
    with pytest.raises(InvalidIdentity):
        verify_aws(doc, aws.sign(doc), default_aws_certs(), now=NOW)


def test_attack_instance_id_swapped_after_signing(aws):
    sig = aws.sign(document())
    assert_invalid(aws, document(instanceId="i-0victim000000000"), sig)


def test_attack_whitespace_mutation_of_document(aws):
    doc = document()
    assert_invalid(aws, doc + "\n", aws.sign(doc))


def test_attack_signature_over_other_bytes(aws):
    # A genuine signature over "{}" must not authenticate another document.
    assert_invalid(aws, document(), aws.sign("{}"))


def test_attack_truncated_signature(aws):
    doc = document()
    raw = aws.key.sign(doc.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert_invalid(aws, doc, b64(raw[:-1]))


def test_attack_sha1_signature_is_not_accepted(aws):
    doc = document()
    raw = aws.key.sign(doc.encode(), padding.PKCS1v15(), hashes.SHA1())
    assert_invalid(aws, doc, b64(raw))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.replace("\n", " "),  # spaces are not AWS wrapping
        lambda s: s.replace("\n", "\t"),
        lambda s: s.replace("\n", "").replace("+", "-").replace("/", "_"),  # url-safe alphabet
        lambda s: s.replace("\n", "").rstrip("=") + ("" if s.endswith("=") else "A"),
        lambda s: s + "!",
        lambda s: "\u20ac" + s,
    ],
    ids=["spaces", "tabs", "urlsafe", "bad-padding", "junk-char", "non-ascii"],
)
def test_attack_non_base64_signature(aws, mangle):
    # Pick a document whose signature contains both '+' and '/' so that the
    # url-safe rewrite really changes it (RSA PKCS#1 v1.5 is deterministic).
    for n in range(100):
        doc = document(instanceId=f"i-{n:017d}")
        sig = aws.sign(doc)
        if "+" in sig and "/" in sig:
            break
    assert verify(aws, doc, sig)
    assert_invalid(aws, doc, mangle(sig))


def test_attack_non_json_document_even_if_signed(aws):
    doc = "instanceId=i-0123456789abcdef0"
    assert_invalid(aws, doc, aws.sign(doc))


@pytest.mark.parametrize(
    "doc", ["[]", '"i-0123"', "null", '{"instanceId": "a", "instanceId": "b"}']
)
def test_attack_signed_document_of_wrong_shape(aws, doc):
    assert_invalid(aws, doc, aws.sign(doc))


@pytest.mark.parametrize("value", ["", "   ", "\t\n", None, 12345, ["i-1"], "i-1\x00", "x" * 256])
def test_attack_empty_or_insane_instance_id(aws, value):
    doc = document(instanceId=value)
    assert_invalid(aws, doc, aws.sign(doc))


def test_attack_missing_instance_id(aws):
    doc = json.dumps({"region": "us-east-1"})
    assert_invalid(aws, doc, aws.sign(doc))


def test_attack_oversized_document_refused_before_crypto(aws):
    doc = document(padding="x" * MAX_DOCUMENT_CHARS)
    with pytest.raises(InvalidIdentity, match="too large"):
        verify(aws, doc, aws.sign(doc))


def test_attack_oversized_signature(aws):
    with pytest.raises(InvalidIdentity, match="too large"):
        verify(aws, document(), "A" * (MAX_SIGNATURE_CHARS + 4))


@pytest.mark.parametrize("value", ["", " ", "\n"])
def test_attack_empty_inputs(aws, value):
    doc = document()
    assert_invalid(aws, value, aws.sign(doc))
    assert_invalid(aws, doc, value)


@pytest.mark.parametrize("value", [None, 42, ["x"], {"a": 1}])
def test_attack_non_string_inputs(aws, value):
    doc = document()
    assert_invalid(aws, value, aws.sign(doc))
    assert_invalid(aws, doc, value)


def test_attack_lone_surrogate_document(aws):
    assert_invalid(aws, '{"instanceId": "\ud800"}', aws.sign("{}"))


def test_attack_pending_time_too_old_in_strict_mode(aws):
    doc = document(pendingTime="2026-02-01T00:00:00Z")
    sig = aws.sign(doc)
    assert verify(aws, doc, sig)  # fine without the policy, as in Coder
    with pytest.raises(InvalidIdentity, match="older"):
        verify(aws, doc, sig, max_age=timedelta(days=7))


@pytest.mark.parametrize("pending", [None, "", "yesterday", 1709251200, "2026-13-01T00:00:00Z"])
def test_attack_pending_time_missing_or_unparseable_in_strict_mode(aws, pending):
    doc = document(pendingTime=pending)
    assert_invalid(aws, doc, aws.sign(doc), max_age=timedelta(days=7))


def test_attack_pending_time_in_the_future(aws):
    doc = document(pendingTime="2026-03-02T12:00:00Z")
    assert_invalid(aws, doc, aws.sign(doc), max_age=timedelta(days=7))


def test_attack_recycled_instance_launched_before_build(aws):
    doc = document(pendingTime="2026-02-01T00:00:00Z")
    assert_invalid(aws, doc, aws.sign(doc), launched_after=NOW - timedelta(hours=1))


def assert_invalid(aws, doc, sig, **kw):
    with pytest.raises(InvalidIdentity) as info:
        verify(aws, doc, sig, **kw)
    assert not isinstance(info.value, MalformedClaims)
    assert info.value.detail


# ----------------------------------------------------------- caller bugs


def test_naive_clock_is_a_caller_error(aws):
    doc = document()
    with pytest.raises(ValueError) as info:
        verify_aws(doc, aws.sign(doc), [aws.cert], now=NOW.replace(tzinfo=None))
    assert not isinstance(info.value, InvalidIdentity)


def test_empty_trust_material_is_a_caller_error(aws):
    with pytest.raises(ValueError):
        verify_aws(document(), "AAAA", [], now=NOW)


# ----------------------------------------------------------------- fuzz


@FUZZ
@given(doc=st.one_of(st.text(max_size=300), st.binary(max_size=300)), sig=st.text(max_size=400))
def test_fuzz_arbitrary_text_only_raises_invalid_identity(aws, doc, sig):
    with pytest.raises(InvalidIdentity):
        verify(aws, doc, sig)


@FUZZ
@given(raw=st.binary(min_size=0, max_size=300), wrap=st.booleans())
def test_fuzz_arbitrary_signature_bytes_only_raise_invalid_identity(aws, raw, wrap):
    sig = b64(raw)
    with pytest.raises(InvalidIdentity):
        verify(aws, document(), wrap64(sig) if wrap else sig)


@FUZZ
@given(
    doc=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["instanceId", "pendingTime", "x"]), children, max_size=3
            )
        ),
        max_leaves=12,
    )
)
def test_fuzz_signed_json_of_any_shape(aws, doc):
    text = json.dumps(doc)
    try:
        result = verify(aws, text, aws.sign(text), max_age=timedelta(days=1))
    except InvalidIdentity:
        return
    assert isinstance(doc, dict) and result == doc["instanceId"]
