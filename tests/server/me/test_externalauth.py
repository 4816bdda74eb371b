"""External auth for agents: the provider config, GetExternalAuth's Coder
rules and texts, admin links, and the bounded long-poll."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2
from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.me.externalauth import (
    DEFAULT_REGEX,
    ExternalAuthConfigError,
    load_external_auth_config,
    sync_providers,
)
from server.me.wakeups import external_auth_key
from server.storage import externalauthlinks
from tests.conftest import ADMIN_METADATA, token_md
from tests.rest_facade._live import wait_until

PROVIDERS = [
    {"id": "github", "type": "github", "display_name": "GitHub", "regex": r"github\.com"},
    {"id": "gl", "type": "gitlab", "display_name": "GitLab", "regex": r"gitlab\.example\.com"},
    {"id": "bb", "type": "bitbucket-cloud", "display_name": "BB", "regex": ""},
    # Matches everything on example.com; listed after gl, so it wins there.
    {"id": "any-example", "type": "gitea", "display_name": "Gitea", "regex": r"example\.com"},
]


@pytest.fixture
def providers(db, clock):
    sync_providers(db, clock, PROVIDERS)


def _get(channel, token: str, **kw):
    return me_pb2_grpc.MeServiceStub(channel).GetExternalAuth(
        me_pb2.GetExternalAuthRequest(**kw), metadata=token_md(token), timeout=30
    )


def _link(provision, ws, provider: str, token: str, **kw):
    return provision.stub.LinkExternalAuth(
        admin_pb2.LinkExternalAuthRequest(
            user=ws.username, provider_id=provider, access_token=token, **kw
        ),
        metadata=ADMIN_METADATA,
    )


# -- configuration -------------------------------------------------------------


def test_config_from_yaml_and_json(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- type: github\n- {id: corp, type: gitlab, regex: 'git\\.corp'}\n")
    assert load_external_auth_config(path) == [
        {
            "id": "github",
            "type": "github",
            "display_name": "github",
            "regex": DEFAULT_REGEX["github"],
        },
        {"id": "corp", "type": "gitlab", "display_name": "corp", "regex": r"git\.corp"},
    ]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PROVIDERS))
    assert [p["id"] for p in load_external_auth_config(path)] == [
        "github",
        "gl",
        "bb",
        "any-example",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{}", "expected a list"),
        ("- {id: x}", "type is required"),
        ("- {type: github}\n- {type: github}", "configured twice"),
        ("- {type: github, regex: '('}", "does not compile"),
        ("- {type: github, client_secret: s}", "unknown field"),
        ("- {type: github, id: 'a b'}", "must be 1-255"),
        ("- {type: 3}", "must be a string"),
    ],
)
def test_bad_config_is_refused(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ExternalAuthConfigError, match=problem):
        load_external_auth_config(path)


def test_sync_replaces_providers_and_keeps_kept_links(db, clock, provision, providers) -> None:
    ws = provision.workspace()
    _link(provision, ws, "github", "t1")
    _link(provision, ws, "gl", "t2")
    sync_providers(db, clock, [PROVIDERS[0]])
    with db.read() as conn:
        assert [p.id for p in externalauthlinks.list_providers(conn)] == ["github"]
        assert (
            externalauthlinks.get_link(
                conn, provider_id="github", user_id=uuid.UUID(ws.user_id)
            ).access_token
            == "t1"
        )


# -- GetExternalAuth -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "'url' or 'id' must be provided!"),
        (
            {"match": "https://github.com/a/b", "id": "github"},
            "'url' and 'id' cannot be provided together!",
        ),
    ],
)
def test_query_validation(channel, provision, providers, kw, message) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _get(channel, provision.workspace().agent("main").auth_token, **kw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message


def test_no_provider_matches(channel, provision, providers) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _get(channel, provision.workspace().agent("main").auth_token, match="https://nope.io/x")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == (
        'No matching external auth provider found in Coder for the url "https://nope.io/x".'
    )


def test_no_providers_at_all(channel, provision) -> None:
    from rest_facade.errors import from_rpc_error

    with pytest.raises(grpc.RpcError) as info:
        _get(channel, provision.workspace().agent("main").auth_token, id="github")
    status, body = from_rpc_error(info.value)
    assert status == 404 and body == {
        "message": 'No matching external auth provider found in Coder for the url "".',
        "detail": "External auth provider not found.",
    }


def test_not_found_detail_lists_the_regexes(channel, provision, providers) -> None:
    from rest_facade.errors import from_rpc_error

    with pytest.raises(grpc.RpcError) as info:
        _get(channel, provision.workspace().agent("main").auth_token, match="https://nope.io")
    _status, body = from_rpc_error(info.value)
    assert body["detail"] == (
        "The configured external auth provider have regex filters that do not match the url. "
        'Provider url regex: github="github\\\\.com",gl="gitlab\\\\.example\\\\.com",'
        'any-example="example\\\\.com"'
    )


def test_without_a_token_the_answer_is_the_sign_in_url(
    settings, channel, provision, providers
) -> None:
    token = provision.workspace().agent("main").auth_token
    resp = _get(channel, token, match="https://github.com/coder/coder.git")
    assert resp.url == f"{settings.effective_access_url}/external-auth/github"
    assert resp.access_token == "" and resp.username == "" and resp.type == ""


@pytest.mark.parametrize(
    ("kw", "provider", "username", "password", "kind"),
    [
        ({"match": "https://github.com/x"}, "github", "tok", "", "github"),
        ({"id": "gl"}, "gl", "oauth2", "tok", "gitlab"),
        ({"id": "bb"}, "bb", "x-token-auth", "tok", "bitbucket-cloud"),
        # A later matching provider wins, as in Coder.
        ({"match": "https://gitlab.example.com/x"}, "any-example", "tok", "", "gitea"),
    ],
)
def test_tokens_become_git_credentials(
    channel, provision, providers, kw, provider, username, password, kind
) -> None:
    ws = provision.workspace()
    _link(provision, ws, provider, "tok", token_extra_json='{"scope": "repo"}')
    resp = _get(channel, ws.agent("main").auth_token, **kw)
    assert (resp.access_token, resp.username, resp.password, resp.type, resp.url) == (
        "tok",
        username,
        password,
        kind,
        "",
    )
    assert json.loads(resp.token_extra_json) == {"scope": "repo"}


def test_tokens_are_per_owner(channel, provision, providers) -> None:
    mine = provision.workspace()
    theirs = provision.workspace()
    _link(provision, theirs, "github", "not-yours")
    resp = _get(channel, mine.agent("main").auth_token, id="github")
    assert resp.access_token == "" and resp.url.endswith("/external-auth/github")


def test_expired_token_is_not_handed_out(clock, channel, provision, providers) -> None:
    ws = provision.workspace()
    expires = admin_pb2.LinkExternalAuthRequest().expires_at
    expires.FromDatetime(clock.now() + dt.timedelta(minutes=1))
    _link(provision, ws, "github", "tok", expires_at=expires)
    token = ws.agent("main").auth_token
    assert _get(channel, token, id="github").access_token == "tok"
    clock.advance(minutes=1)
    resp = _get(channel, token, id="github")
    assert resp.access_token == "" and resp.url.endswith("/external-auth/github")


def test_listen_waits_for_a_token(core, channel, provision, providers) -> None:
    ws = provision.workspace()
    call = me_pb2_grpc.MeServiceStub(channel).GetExternalAuth.future(
        me_pb2.GetExternalAuthRequest(id="gl", listen=True),
        metadata=token_md(ws.agent("main").auth_token),
        timeout=30,
    )
    key = external_auth_key(ws.user_id, "gl")
    wait_until(lambda: core.core.wakeups.subscriber_count(key) == 1, what="the long-poll")
    assert not call.done()
    _link(provision, ws, "gl", "fresh")
    resp = call.result(timeout=10)
    assert (resp.access_token, resp.username, resp.password) == ("fresh", "oauth2", "fresh")
    wait_until(lambda: core.core.wakeups.subscriber_count(key) == 0, what="unsubscribe")


def test_listen_skips_the_unusable_token_it_started_with(
    clock, core, channel, provision, providers
) -> None:
    ws = provision.workspace()
    expires = admin_pb2.LinkExternalAuthRequest().expires_at
    expires.FromDatetime(clock.now() - dt.timedelta(minutes=1))
    _link(provision, ws, "github", "stale", expires_at=expires)
    call = me_pb2_grpc.MeServiceStub(channel).GetExternalAuth.future(
        me_pb2.GetExternalAuthRequest(id="github", listen=True),
        metadata=token_md(ws.agent("main").auth_token),
        timeout=30,
    )
    key = external_auth_key(ws.user_id, "github")
    wait_until(lambda: core.core.wakeups.subscriber_count(key) == 1, what="the long-poll")
    _link(provision, ws, "github", "renewed")
    assert call.result(timeout=10).access_token == "renewed"


def test_listen_answers_at_once_when_a_token_exists(channel, provision, providers) -> None:
    ws = provision.workspace()
    _link(provision, ws, "github", "have")
    assert _get(channel, ws.agent("main").auth_token, id="github", listen=True).access_token == (
        "have"
    )


class TestListenTimeout:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, external_auth_listen_timeout_seconds=1)

    def test_listen_gives_up_with_a_clear_timeout(self, channel, provision, providers) -> None:
        from rest_facade.errors import from_rpc_error

        with pytest.raises(grpc.RpcError) as info:
            _get(channel, provision.workspace().agent("main").auth_token, id="github", listen=True)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        status, body = from_rpc_error(info.value)
        assert status == 408
        assert body["message"] == "Timed out waiting for an external auth token."
        assert 'provider "github"' in body["detail"] and "within 1 seconds" in body["detail"]


# -- admin link --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "code", "message"),
    [
        (
            {"provider_id": "nope", "access_token": "t"},
            grpc.StatusCode.NOT_FOUND,
            "External auth provider 'nope' is not configured.",
        ),
        (
            {"provider_id": "github", "access_token": ""},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Validation failed.",
        ),
        (
            {"provider_id": "github", "access_token": "t", "token_extra_json": "[1]"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Validation failed.",
        ),
    ],
)
def test_link_refusals(provision, providers, kw, code, message) -> None:
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError) as info:
        provision.stub.LinkExternalAuth(
            admin_pb2.LinkExternalAuthRequest(user=ws.username, **kw), metadata=ADMIN_METADATA
        )
    assert info.value.code() == code and info.value.details() == message


def test_link_needs_the_admin_token(provision, providers) -> None:
    with pytest.raises(grpc.RpcError) as info:
        provision.stub.LinkExternalAuth(admin_pb2.LinkExternalAuthRequest(user="x"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
