"""POST /api/v2/workspaceagents/{aws,azure,google}-instance-identity through the facade.

The facade runs against the live core (SQLite and PostgreSQL); trust material is
generated here and handed to the core through its settings files. Single use of
GCP tokens is switched on for this module, so every GCP credential built here
is unique and a replay is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from server.config import Settings
from tests.server.identity._support import (
    FUZZ,
    NOW,
    AwsWorld,
    AzureWorld,
    GoogleWorld,
    Pki,
    b64,
)
from tests.server.identity.test_login import (
    aws_credential,
    azure_credential,
    bind_sub_agents,
    google_credential,
    instance_spec,
    rebuild_with,
    trust_settings,
)

pytestmark = pytest.mark.timeout(120)

AWS = "/api/v2/workspaceagents/aws-instance-identity"
AZURE = "/api/v2/workspaceagents/azure-instance-identity"
GOOGLE = "/api/v2/workspaceagents/google-instance-identity"
MANIFEST = "/api/v2/workspaceagents/me/manifest"
REQUIRED = 'Validation failed for tag "required" with value: ""'


@pytest.fixture(scope="module")
def w() -> SimpleNamespace:
    """This module's own clouds: a private AWS key, Azure PKI and Google key."""
    pki = Pki()
    root = pki.issue("Test Azure Root", ca=True, path_length=1, org="Test")
    inter = pki.issue("Test Azure Issuing CA", issuer=root, ca=True, path_length=0, org="Test")
    leaf = pki.issue("metadata.azure.com", issuer=inter)
    aws = pki.issue("ec2.amazonaws.com")
    return SimpleNamespace(
        pki=pki,
        aws=AwsWorld(aws.key, aws.cert),
        azure=AzureWorld(pki, root, inter, leaf),
        google=GoogleWorld(pki.rsa_key(), pki.rsa_key(), kid="kid-rest"),
    )


@pytest.fixture
def settings(tmp_path: Path, w: SimpleNamespace) -> Settings:
    return trust_settings(
        tmp_path, w.aws, w.azure, w.google, google_instance_identity_single_use=True
    )


@pytest.fixture(autouse=True)
def _at_now(clock) -> None:
    clock.set(NOW)


def aws_body(w: SimpleNamespace, instance_id: str, **extra: Any) -> dict[str, str]:
    document, signature = aws_credential(w.aws, instance_id)
    return {"document": document, "signature": signature, **extra}


def azure_body(w: SimpleNamespace, vm_id: str, **extra: Any) -> dict[str, str]:
    return {"signature": azure_credential(w.azure, vm_id), "encoding": "pkcs7", **extra}


def google_body(w: SimpleNamespace, instance_id: str, **extra: Any) -> dict[str, str]:
    return {"json_web_token": google_credential(w.google, instance_id), **extra}


def manifest_status(rest, token: str) -> tuple[int, Any]:
    resp = rest.get(MANIFEST, headers={"Coder-Session-Token": token})
    return resp.status_code, resp.get_json()


# -- success per cloud ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "auth", "instance_id", "body"),
    [
        (AWS, "aws-instance-identity", "i-0123456789abcdef0", aws_body),
        (AZURE, "azure-instance-identity", "7b4a2c1e-0d1f-4c7a-9f3e-2b8d6e5a4c10", azure_body),
        (GOOGLE, "google-instance-identity", "5918123409876543210", google_body),
    ],
)
def test_valid_login_returns_a_token_that_works(
    rest, provision, w, route, auth, instance_id, body
) -> None:
    ws = provision.workspace(instance_spec(instance_id, "main", auth=auth))
    resp = rest.post(route, json=body(w, instance_id))
    assert resp.status_code == 200, resp.get_json()
    assert resp.mimetype == "application/json"
    payload = resp.get_json()
    assert list(payload) == ["session_token"]
    status, manifest = manifest_status(rest, payload["session_token"])
    assert status == 200
    assert manifest["agent_id"] == ws.agent("main").id and manifest["agent_name"] == "main"


def test_login_ignores_any_session_token_sent(rest, provision, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main"))
    resp = rest.post(AWS, json=aws_body(w, "i-0abc"), headers={"Coder-Session-Token": "junk"})
    assert resp.status_code == 200


def test_a_new_login_rotates_the_token(rest, provision, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main"))
    first = rest.post(AWS, json=aws_body(w, "i-0abc")).get_json()["session_token"]
    second = rest.post(AWS, json=aws_body(w, "i-0abc")).get_json()["session_token"]
    assert manifest_status(rest, second)[0] == 200
    status, body = manifest_status(rest, first)
    assert status == 401 and body["message"] == "Workspace agent not authorized."


def test_a_rebuild_invalidates_the_token(rest, provision, w) -> None:
    ws = provision.workspace(instance_spec("i-0abc", "main"))
    token = rest.post(AWS, json=aws_body(w, "i-0abc")).get_json()["session_token"]
    provision.rebuild(ws)
    assert manifest_status(rest, token)[0] == 401
    # ... and a login after the rebuild reaches the new build's agent.
    fresh = rest.post(AWS, json=aws_body(w, "i-0abc")).get_json()["session_token"]
    assert manifest_status(rest, fresh)[0] == 200


# -- agent selection -------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"agent_name": ""}, {"agent_name": "  \t"}])
def test_two_root_agents_conflict_without_a_name(rest, provision, w, extra) -> None:
    provision.workspace(instance_spec("i-0abc", "beta", "alpha"))
    resp = rest.post(AWS, json=aws_body(w, "i-0abc", **extra))
    assert resp.status_code == 409
    message = resp.get_json()["message"]
    assert "CODER_AGENT_NAME" in message and message.endswith("one of: alpha, beta")


def test_a_name_selects_among_root_agents(rest, provision, w) -> None:
    provision.workspace(instance_spec("vm-1", "beta", "alpha", auth="azure-instance-identity"))
    resp = rest.post(AZURE, json=azure_body(w, "vm-1", agent_name="alpha"))
    assert resp.status_code == 200
    _status, manifest = manifest_status(rest, resp.get_json()["session_token"])
    assert manifest["agent_name"] == "alpha"


def test_unknown_name_is_404(rest, provision, w) -> None:
    provision.workspace(instance_spec("5918", "beta", "alpha", auth="google-instance-identity"))
    resp = rest.post(GOOGLE, json=google_body(w, "5918", agent_name="gamma"))
    assert resp.status_code == 404
    assert resp.get_json() == {
        "message": 'No agent found with instance ID "5918" and name "gamma".'
    }


def test_sub_agents_are_excluded(rest, provision, db, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main", child=True))
    bind_sub_agents(db, "i-0abc")
    resp = rest.post(AWS, json=aws_body(w, "i-0abc"))
    assert resp.status_code == 200
    assert manifest_status(rest, resp.get_json()["session_token"])[1]["agent_name"] == "main"
    assert rest.post(AWS, json=aws_body(w, "i-0abc", agent_name="main-sub")).status_code == 404


def test_prior_build_agents_are_excluded(rest, provision, w) -> None:
    ws = provision.workspace(instance_spec("i-0abc", "main"))
    new = rebuild_with(provision, ws, instance_spec("i-0abc", "main"))
    resp = rest.post(AWS, json=aws_body(w, "i-0abc"))
    assert resp.status_code == 200
    manifest = manifest_status(rest, resp.get_json()["session_token"])[1]
    assert manifest["agent_id"] == next(a.id for a in new.agents) != ws.agent("main").id


def test_instance_not_found(rest, provision, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main"))
    resp = rest.post(AWS, json=aws_body(w, "i-0nope"))
    assert resp.status_code == 404
    assert resp.get_json() == {"message": 'Instance with id "i-0nope" not found.'}


def test_huge_agent_name_is_a_bounded_404(rest, provision, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main"))
    resp = rest.post(AWS, json=aws_body(w, "i-0abc", agent_name="n" * 1_000_000))
    assert resp.status_code == 404
    assert len(resp.get_data()) < 300


# -- request bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "fields"),
    [
        (AWS, {}, ["signature", "document"]),
        (AWS, {"signature": "x", "document": ""}, ["document"]),
        (AWS, None, ["signature", "document"]),
        (AZURE, {"signature": "x"}, ["encoding"]),
        (AZURE, {"signature": None, "encoding": None}, ["signature", "encoding"]),
        (GOOGLE, {"agent_name": "main"}, ["json_web_token"]),
    ],
)
def test_missing_fields_are_coders_validation_error(rest, route, body, fields) -> None:
    resp = rest.post(route, data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json() == {
        "message": "Validation failed.",
        "validations": [{"field": f, "detail": REQUIRED} for f in fields],
    }


@pytest.mark.parametrize(
    ("route", "raw", "detail"),
    [
        (AWS, b"{", None),
        (AWS, b"", None),
        (AZURE, b"[1]", "json: cannot unmarshal array into Go value of type "
         "agentsdk.AzureInstanceIdentityToken"),
        (GOOGLE, b'"jwt"', "json: cannot unmarshal string into Go value of type "
         "agentsdk.GoogleInstanceIdentityToken"),
        (AWS, b'{"signature": 1, "document": "d"}', "json: cannot unmarshal number into Go "
         "struct field AWSInstanceIdentityToken.signature of type string"),
        (GOOGLE, b'{"json_web_token": "t", "agent_name": ["a"]}', "json: cannot unmarshal "
         "array into Go struct field GoogleInstanceIdentityToken.agent_name of type string"),
    ],
)  # fmt: skip
def test_undecodable_bodies_are_400(rest, route, raw, detail) -> None:
    resp = rest.post(route, data=raw, content_type="application/json")
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["message"] == "Request body must be valid JSON."
    if detail:
        assert body["detail"] == detail


def test_keys_match_case_insensitively_like_go(rest, provision, w) -> None:
    provision.workspace(instance_spec("i-0abc", "main"))
    body = aws_body(w, "i-0abc")
    resp = rest.post(AWS, json={"Signature": body["signature"], "DOCUMENT": body["document"]})
    assert resp.status_code == 200


def test_lone_surrogates_are_not_a_server_error(rest) -> None:
    raw = b'{"signature": "\\ud800", "document": "\\udfff", "agent_name": "\\ud83d"}'
    resp = rest.post(AWS, data=raw, content_type="application/json")
    assert resp.status_code == 401


def test_oversized_body_is_413(rest, settings) -> None:
    raw = b'{"signature": "' + b"A" * settings.max_body_bytes + b'"}'
    assert rest.post(AWS, data=raw, content_type="application/json").status_code == 413


@pytest.mark.parametrize("route", [AWS, AZURE, GOOGLE])
def test_other_methods_do_not_log_in(rest, route) -> None:
    # The static login paths take POST only. A GET falls through to
    # GET /workspaceagents/{id} (as in Coder's router), which needs a user.
    assert rest.get(route).status_code == 401
    assert rest.put(route, json={}).status_code == 405


# -- attacks ----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jws(header: dict, claims: dict, sign) -> str:
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64url(sign(signing_input.encode()))}"


def _gce_claims(w: SimpleNamespace, instance_id: str = "5918", **overrides: Any) -> dict:
    claims = w.google.claims(**overrides)
    claims["google"]["compute_engine"]["instance_id"] = instance_id
    claims["jti"] = uuid.uuid4().hex
    return claims


def _public_pem(w: SimpleNamespace) -> bytes:
    return w.google.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def aws_tampered(w):
    document, signature = aws_credential(w.aws, "i-0aaaaaaaaaaaaaaaa")
    return {"document": document.replace("i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"),
            "signature": signature}  # fmt: skip


def aws_foreign_key(w):
    document, _ = aws_credential(w.aws, "i-0abc")
    return {"document": document, "signature": w.aws.sign(document, key=w.pki.rsa_key())}


def aws_other_bytes(w):
    document, _ = aws_credential(w.aws, "i-0abc")
    return {"document": document, "signature": w.aws.sign("{}")}


def aws_whitespace(w):
    document, signature = aws_credential(w.aws, "i-0abc")
    return {"document": document + " ", "signature": signature}


def aws_truncated(w):
    document, signature = aws_credential(w.aws, "i-0abc")
    return {"document": document, "signature": signature[:-8]}


def aws_not_base64(w):
    document, _ = aws_credential(w.aws, "i-0abc")
    return {"document": document, "signature": "!!!not-base64!!!"}


def aws_empty_instance(w):
    document, signature = aws_credential(w.aws, "   ")
    return {"document": document, "signature": signature}


def aws_oversized(w):
    document = json.dumps({"instanceId": "i-0abc", "pad": "x" * 100_000})
    return {"document": document, "signature": w.aws.sign(document)}


def azure_tampered(w):
    der = w.azure.sign({"vmId": "vm-aaaa"})
    return {"signature": b64(der.replace(b"vm-aaaa", b"vm-bbbb")), "encoding": "pkcs7"}


def azure_rogue_root(w):
    pki = w.pki
    root = pki.issue("Test Azure Root", ca=True, path_length=1, org="Test")
    inter = pki.issue("Test Azure Issuing CA", issuer=root, ca=True, path_length=0, org="Test")
    leaf = pki.issue("metadata.azure.com", issuer=inter)
    world = AzureWorld(pki, root, inter, leaf)
    return {"signature": b64(world.sign({"vmId": "vm-1"})), "encoding": "pkcs7"}


def azure_wrong_cn(w):
    leaf = w.pki.issue("metadata.azure.com.evil.com", issuer=w.azure.intermediate)
    return {"signature": azure_credential(w.azure, "vm-1", signer=leaf), "encoding": "pkcs7"}


def azure_expired_leaf(w):
    leaf = w.pki.issue(
        "metadata.azure.com",
        issuer=w.azure.intermediate,
        not_before=NOW - timedelta(days=60),
        not_after=NOW - timedelta(days=1),
    )
    return {"signature": azure_credential(w.azure, "vm-1", signer=leaf), "encoding": "pkcs7"}


def azure_missing_intermediate(w):
    return {"signature": azure_credential(w.azure, "vm-1", extra_certs=[]), "encoding": "pkcs7"}


def azure_unsigned(w):
    info = cms.ContentInfo.load(w.azure.sign({"vmId": "vm-1"}))
    info["content"]["signer_infos"] = cms.SignerInfos([])
    return {"signature": b64(info.dump(force=True)), "encoding": "pkcs7"}


def azure_garbage(w):
    return {"signature": b64(b"\x30\x82\x01\x00" + b"\x00" * 32), "encoding": "pkcs7"}


def gcp_alg_none(w):
    token = _jws({"alg": "none", "kid": w.google.kid}, _gce_claims(w), lambda _m: b"")
    return {"json_web_token": token}


def gcp_hs256_public_key(w):
    def sign(m: bytes) -> bytes:
        return hmac.new(_public_pem(w), m, hashlib.sha256).digest()

    return {"json_web_token": _jws({"alg": "HS256", "kid": w.google.kid}, _gce_claims(w), sign)}


def gcp_token(w, claims=None, **kw):
    return {"json_web_token": w.google.token(claims or _gce_claims(w), **kw)}


def gcp_payload_edited(w):
    header, payload, signature = gcp_token(w)["json_web_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["google"]["compute_engine"]["instance_id"] = "9999"
    return {"json_web_token": f"{header}.{_b64url(json.dumps(claims).encode())}.{signature}"}


def gcp_no_claims(w):
    claims = _gce_claims(w)
    del claims["google"]
    return gcp_token(w, claims)


ATTACKS = [
    (AWS, aws_tampered, 401, "Invalid AWS identity."),
    (AWS, aws_foreign_key, 401, "Invalid AWS identity."),
    (AWS, aws_other_bytes, 401, "Invalid AWS identity."),
    (AWS, aws_whitespace, 401, "Invalid AWS identity."),
    (AWS, aws_truncated, 401, "Invalid AWS identity."),
    (AWS, aws_not_base64, 401, "Invalid AWS identity."),
    (AWS, aws_empty_instance, 401, "Invalid AWS identity."),
    (AWS, aws_oversized, 401, "Invalid AWS identity."),
    (AZURE, azure_tampered, 401, "Invalid Azure identity."),
    (AZURE, azure_rogue_root, 401, "Invalid Azure identity."),
    (AZURE, azure_wrong_cn, 401, "Invalid Azure identity."),
    (AZURE, azure_expired_leaf, 401, "Invalid Azure identity."),
    (AZURE, azure_missing_intermediate, 401, "Invalid Azure identity."),
    (AZURE, azure_unsigned, 401, "Invalid Azure identity."),
    (AZURE, azure_garbage, 401, "Invalid Azure identity."),
    (GOOGLE, gcp_alg_none, 401, "Invalid GCP identity."),
    (GOOGLE, gcp_hs256_public_key, 401, "Invalid GCP identity."),
    (GOOGLE, lambda w: gcp_token(w, _gce_claims(w, aud="someone-else")), 401, None),
    (GOOGLE, lambda w: gcp_token(w, _gce_claims(w, iss="https://evil.example")), 401, None),
    (GOOGLE, lambda w: gcp_token(w, _gce_claims(w, exp=int(NOW.timestamp()) - 120)), 401, None),
    (GOOGLE, lambda w: gcp_token(w, headers={"kid": "unknown"}), 401, None),
    (GOOGLE, lambda w: gcp_token(w, key=w.google.other_key), 401, None),
    (GOOGLE, gcp_payload_edited, 401, "Invalid GCP identity."),
    (GOOGLE, lambda w: gcp_token(w, _gce_claims(w, instance_id="")), 401, None),
    (GOOGLE, lambda w: {"json_web_token": "not.a.jwt"}, 401, "Invalid GCP identity."),
    (GOOGLE, gcp_no_claims, 400, "Error decoding JWT claims."),
]


@pytest.mark.parametrize(
    ("route", "build", "status", "message"),
    ATTACKS,
    ids=[getattr(a[1], "__name__", "x").replace("<lambda>", f"gcp{i}") for i, a in
         enumerate(ATTACKS)],
)  # fmt: skip
def test_attack_is_refused(rest, provision, w, route, build, status, message) -> None:
    # Every instance id the attacks name exists, so only verification can refuse.
    for instance_id in ("i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb", "i-0abc", "vm-1",
                        "vm-aaaa", "vm-bbbb", "5918", "9999"):  # fmt: skip
        provision.workspace(instance_spec(instance_id, "main"), name=f"ws-{instance_id}")
    resp = rest.post(route, json=build(w))
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()
    assert body["message"] == (message or "Invalid GCP identity.")
    assert body.get("detail")
    assert "session_token" not in body


def test_gcp_replay_is_refused(rest, provision, w) -> None:
    provision.workspace(instance_spec("5918", "main", auth="google-instance-identity"))
    body = google_body(w, "5918")
    assert rest.post(GOOGLE, json=body).status_code == 200
    resp = rest.post(GOOGLE, json=body)
    assert resp.status_code == 401
    assert resp.get_json()["detail"] == "token has already been used"


# -- fuzz ---------------------------------------------------------------------------------------

_FIELDS = ("signature", "document", "encoding", "json_web_token", "agent_name")
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), _scalars, max_size=2),
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.one_of(st.sampled_from(_FIELDS), st.text(max_size=12)), _values, max_size=6
    ).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(_FIELDS), st.text(), max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
)  # fmt: skip


@FUZZ
@given(route=st.sampled_from([AWS, AZURE, GOOGLE]), raw=_bodies)
def test_fuzz_bodies_never_5xx(rest, route, raw) -> None:
    resp = rest.post(route, data=raw, content_type="application/json")
    assert resp.status_code in (400, 401), (resp.status_code, resp.get_data()[:200])
    assert resp.get_json()["message"]


@pytest.fixture
def two_agents(provision) -> None:
    # Function-scoped: provisioned once for all examples of a hypothesis test.
    provision.workspace(instance_spec("i-0abc", "alpha", "beta"))


@FUZZ
@given(name=st.text(), mutate=st.integers(min_value=-1, max_value=2000))
def test_fuzz_valid_credential_mutations_never_5xx(rest, two_agents, w, name, mutate) -> None:
    body = aws_body(w, "i-0abc", agent_name=name)
    if 0 <= mutate < len(body["document"]):
        # Flip one character of the signed document.
        doc = body["document"]
        body["document"] = doc[:mutate] + chr((ord(doc[mutate]) + 1) % 0x80) + doc[mutate + 1 :]
    resp = rest.post(AWS, json=body)
    assert resp.status_code in (200, 401, 404, 409), (resp.status_code, resp.get_json())
