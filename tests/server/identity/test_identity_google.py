"""GCP identity tokens: valid tokens, attack vectors, replay cache and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from server.identity import InMemoryReplayCache, InvalidIdentity, MalformedClaims, verify_google
from server.identity.google import MAX_TOKEN_CHARS

from ._support import FUZZ, NOW

pytestmark = pytest.mark.timeout(60)

INSTANCE_ID = "5918123409876543210"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj) -> str:
    return b64url(json.dumps(obj).encode())


def verify(google, token, **kw):
    kw.setdefault("keys", google.keys)
    kw.setdefault("now", NOW)
    return verify_google(token, **kw)


def assert_invalid(google, token, match=None, **kw):
    with pytest.raises(InvalidIdentity, match=match) as info:
        verify(google, token, **kw)
    assert not isinstance(info.value, MalformedClaims)
    return info.value


def assert_malformed(google, token, **kw):
    with pytest.raises(MalformedClaims):
        verify(google, token, **kw)


# ------------------------------------------------------------------ valid


def test_valid_token_returns_instance_id(google):
    assert verify(google, google.token()) == INSTANCE_ID


def test_valid_bare_issuer_form(google):
    assert verify(google, google.token(iss="accounts.google.com")) == INSTANCE_ID


def test_valid_custom_audience(google):
    token = google.token(aud="https://coder.example.com")
    assert verify(google, token, audience="https://coder.example.com") == INSTANCE_ID


def test_valid_single_element_audience_list(google):
    assert verify(google, google.token(aud=["coder"])) == INSTANCE_ID


def test_valid_expired_within_leeway(google):
    token = google.token(exp=int(NOW.timestamp()) - 10)
    assert verify(google, token) == INSTANCE_ID
    assert_invalid(google, token, "expired", leeway=timedelta(0))


def test_valid_with_replay_cache_first_use(google):
    assert verify(google, google.token(), replay_cache=InMemoryReplayCache(clock=lambda: NOW))


# ---------------------------------------------------------------- attacks


def test_attack_alg_none(google):
    token = (
        f"{segment({'alg': 'none', 'typ': 'JWT', 'kid': google.kid})}.{segment(google.claims())}."
    )
    assert_invalid(google, token)
    unsigned = jwt.encode(google.claims(), None, algorithm="none", headers={"kid": google.kid})
    assert_invalid(google, unsigned)


def test_attack_hs256_keyed_with_the_public_key_pem(google):
    pem = google.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = segment({"alg": "HS256", "typ": "JWT", "kid": google.kid})
    body = segment(google.claims())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert_invalid(google, f"{head}.{body}.{b64url(mac)}", "RS256")


def test_attack_ps256_header(google):
    token = jwt.encode(google.claims(), google.key, algorithm="PS256", headers={"kid": google.kid})
    assert_invalid(google, token, "RS256")


def test_attack_header_alg_rewritten_to_rs256_over_other_algorithm(google):
    token = jwt.encode(google.claims(), google.key, algorithm="RS512", headers={"kid": google.kid})
    _, body, sig = token.split(".")
    forged = f"{segment({'alg': 'RS256', 'typ': 'JWT', 'kid': google.kid})}.{body}.{sig}"
    assert_invalid(google, forged, "signature")


@pytest.mark.parametrize("aud", ["other-service", "", None, ["coder", "other"], ["other"], 7])
def test_attack_wrong_audience(google, aud, drop):
    token = google.token(aud=drop if aud is None else aud)
    assert_invalid(google, token, "audience")


@pytest.mark.parametrize(
    "iss",
    ["https://evil.example", "https://accounts.google.com/", None, "", ["accounts.google.com"]],
)
def test_attack_wrong_issuer(google, iss, drop):
    claims = google.claims(iss=drop if iss is None else iss)
    # Sign the raw JSON: pyjwt's encoder itself refuses a non-string iss.
    token = jwt.api_jws.encode(
        json.dumps(claims).encode(), google.key, algorithm="RS256", headers={"kid": google.kid}
    )
    assert_invalid(google, token, "issuer")


def test_attack_expired(google):
    assert_invalid(google, google.token(exp=int(NOW.timestamp()) - 31), "expired")


def test_attack_missing_exp(google, drop):
    # coderdtest's "expired" token is one without exp.
    assert_invalid(google, google.token(exp=drop), "exp")


@pytest.mark.parametrize("exp", ["9999999999", True, 1e400, None])
def test_attack_bad_exp_type(google, exp):
    claims = google.claims()
    claims["exp"] = exp
    token = google.token(claims)
    assert_invalid(google, token)


def test_attack_issued_in_the_future(google):
    iat = int(NOW.timestamp()) + 120
    assert_invalid(google, google.token(iat=iat, exp=iat + 3600), "future")


def test_attack_missing_iat(google, drop):
    assert_invalid(google, google.token(iat=drop), "iat")


def test_attack_not_before_in_the_future(google):
    assert_invalid(google, google.token(nbf=int(NOW.timestamp()) + 120), "not yet valid")


def test_attack_clock_is_injected_not_wall_time(google):
    token = google.token()
    assert_invalid(google, token, "expired", now=NOW + timedelta(hours=2))


def test_attack_unknown_kid(google):
    assert_invalid(google, google.token(headers={"kid": "someone-else"}), "unknown key")


def test_attack_missing_kid(google):
    token = jwt.encode(google.claims(), google.key, algorithm="RS256")
    assert_invalid(google, token, "unknown key")


def test_attack_known_kid_signed_by_other_key(google):
    assert_invalid(google, google.token(key=google.other_key), "signature")


def test_attack_payload_edited_after_signing(google):
    head, _, sig = google.token().split(".")
    claims = google.claims()
    claims["google"]["compute_engine"]["instance_id"] = "victim"
    assert_invalid(google, f"{head}.{segment(claims)}.{sig}", "signature")


def test_attack_critical_header(google):
    assert_invalid(google, google.token(headers={"crit": ["exp"]}), "critical")


def test_attack_replay_when_single_use(google):
    cache = InMemoryReplayCache(clock=lambda: NOW)
    token = google.token()
    assert verify(google, token, replay_cache=cache) == INSTANCE_ID
    assert_invalid(google, token, "already been used", replay_cache=cache)
    # A freshly minted token (what a real agent sends next time) is fine.
    assert verify(google, google.token(iat=int(NOW.timestamp()) - 59), replay_cache=cache)


def test_attack_replay_with_malleated_signature_encoding(google):
    cache = InMemoryReplayCache(clock=lambda: NOW)
    token = google.token()
    assert verify(google, token, replay_cache=cache)
    head, body, sig = token.split(".")
    # A 256-byte signature leaves 4 spare bits in the last base64url char;
    # flipping them changes the string but not the decoded signature.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twin = sig[:-1] + alphabet[last ^ 0b0001]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(sig + "==")
    assert_invalid(google, f"{head}.{body}.{twin}", "canonical", replay_cache=cache)


def test_attack_replay_of_failed_token_is_not_recorded(google):
    # Rejected tokens must not poison the cache for anything else.
    cache = InMemoryReplayCache(clock=lambda: NOW)
    assert_invalid(google, google.token(aud="other"), replay_cache=cache)
    assert len(cache) == 0


@pytest.mark.parametrize("value", ["", "   ", "\t", "1\x00"])
def test_attack_blank_instance_id_is_401_not_400(google, value):
    claims = google.claims()
    claims["google"]["compute_engine"]["instance_id"] = value
    assert_invalid(google, google.token(claims))


@pytest.mark.parametrize(
    "shape",
    [
        lambda c: c.pop("google"),
        lambda c: c.__setitem__("google", "compute_engine"),
        lambda c: c["google"].pop("compute_engine"),
        lambda c: c["google"].__setitem__("compute_engine", []),
        lambda c: c["google"]["compute_engine"].pop("instance_id"),
        lambda c: c["google"]["compute_engine"].__setitem__("instance_id", 5918123409876543210),
        lambda c: c["google"]["compute_engine"].__setitem__("instance_id", None),
        lambda c: c["google"]["compute_engine"].__setitem__("instance_id", ["1"]),
    ],
    ids=[
        "no-google",
        "google-str",
        "no-compute-engine",
        "compute-engine-list",
        "no-instance-id",
        "instance-id-int",
        "instance-id-null",
        "instance-id-list",
    ],
)
def test_malformed_claims_in_a_genuine_token(google, shape):
    # format=standard tokens have no compute_engine claim -> 400, like Coder.
    claims = google.claims()
    shape(claims)
    assert_malformed(google, google.token(claims))


def test_malformed_claims_only_after_signature_check(google):
    claims = google.claims()
    claims.pop("google")
    with pytest.raises(InvalidIdentity) as info:
        verify(google, google.token(claims, key=google.other_key))
    assert not isinstance(info.value, MalformedClaims)


def test_attack_oversized_token(google):
    assert_invalid(google, google.token(pad="x" * MAX_TOKEN_CHARS), "too large")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "a.b",
        "a.b.c.d",
        "..",
        "e30.e30.",
        "e30.e30.e30",
        "!!.!!.!!",
        "a b.c.d",
        "W10.e30.AAAA",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA",
    ],
)
def test_attack_not_a_jwt(google, token):
    assert_invalid(google, token)


@pytest.mark.parametrize("value", [None, 1, ["a.b.c"], b"\xff.\xfe.\xfd"])
def test_attack_non_string_token(google, value):
    assert_invalid(google, value)


def test_attack_payload_not_an_object(google):
    token = jwt.api_jws.encode(
        b"[1, 2]", google.key, algorithm="RS256", headers={"kid": google.kid}
    )
    assert_invalid(google, token)


# ----------------------------------------------------------- replay cache


def test_replay_cache_evicts_expired_entries():
    clock = [NOW]
    cache = InMemoryReplayCache(clock=lambda: clock[0])
    assert cache.seen("a", NOW + timedelta(minutes=1)) is False
    assert cache.seen("a", NOW + timedelta(minutes=1)) is True
    clock[0] = NOW + timedelta(minutes=2)
    assert cache.seen("b", NOW + timedelta(minutes=5)) is False
    assert len(cache) == 1  # "a" was evicted
    assert cache.seen("a", NOW + timedelta(minutes=5)) is False


def test_replay_cache_fails_closed_when_full():
    cache = InMemoryReplayCache(clock=lambda: NOW, max_entries=2)
    assert not cache.seen("a", NOW + timedelta(hours=1))
    assert not cache.seen("b", NOW + timedelta(hours=1))
    assert cache.seen("c", NOW + timedelta(hours=1)) is True


def test_replay_cache_is_single_use_under_concurrency(google):
    cache = InMemoryReplayCache(clock=lambda: NOW)
    token = google.token()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        try:
            results.append(verify(google, token, replay_cache=cache))
        except InvalidIdentity:
            results.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [INSTANCE_ID] + ["refused"] * 7


# ------------------------------------------------------------ caller bugs


@pytest.mark.parametrize("kw", [{"keys": {}}, {"leeway": timedelta(minutes=5)}, {"audience": ""}])
def test_misconfiguration_is_a_caller_error(google, kw):
    with pytest.raises(ValueError) as info:
        verify(google, google.token(), **kw)
    assert not isinstance(info.value, InvalidIdentity)


# ------------------------------------------------------------------- fuzz


@FUZZ
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_arbitrary_input(google, token):
    with pytest.raises(InvalidIdentity):
        verify(google, token)


_b64url_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80
)


@FUZZ
@given(head=_b64url_text, body=_b64url_text, sig=_b64url_text)
def test_fuzz_three_segment_shapes(google, head, body, sig):
    with pytest.raises(InvalidIdentity):
        verify(google, f"{head}.{body}.{sig}")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "x"]), _json, max_size=4),
    payload=_json,
)
def test_fuzz_json_headers_and_payloads(google, header, payload):
    token = f"{segment(header)}.{segment(payload)}.{b64url(b'x' * 256)}"
    with pytest.raises(InvalidIdentity):
        verify(google, token)


@FUZZ
@given(engine=_json, google_claim=st.sampled_from(["keep", "replace"]))
def test_fuzz_signed_claim_shapes(google, engine, google_claim):
    # Any structure under a *genuine* signature yields an id, MalformedClaims
    # or InvalidIdentity -- never another exception.
    claims = google.claims()
    if google_claim == "keep":
        claims["google"]["compute_engine"] = engine
    else:
        claims["google"] = engine
    try:
        result = verify(google, google.token(claims))
    except InvalidIdentity:
        return
    assert isinstance(result, str) and result.strip()
