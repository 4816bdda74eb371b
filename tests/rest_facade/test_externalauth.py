"""GET me/external-auth and me/gitauth: Coder's JSON and texts, and the
listen long-poll with a real HTTP client against a real server."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request

import pytest
from agentplane.admin.v1 import admin_pb2

from server.me.externalauth import sync_providers
from server.me.wakeups import external_auth_key
from tests.conftest import ADMIN_METADATA
from tests.rest_facade._live import live_facade, wait_until

PATH = "/api/v2/workspaceagents/me/external-auth"
PROVIDERS = [
    {"id": "github", "type": "github", "display_name": "GitHub", "regex": r"github\.com"},
    {"id": "gitlab", "type": "gitlab", "display_name": "GitLab", "regex": r"gitlab\.com"},
]
KEYS = {"access_token", "password", "token_extra", "type", "url", "username"}


@pytest.fixture
def providers(db, clock):
    sync_providers(db, clock, PROVIDERS)


def _link(provision, ws, provider: str, token: str) -> None:
    provision.stub.LinkExternalAuth(
        admin_pb2.LinkExternalAuthRequest(
            user=ws.username, provider_id=provider, access_token=token
        ),
        metadata=ADMIN_METADATA,
    )


def test_sign_in_url_then_token(rest, settings, provision, providers) -> None:
    ws = provision.workspace()
    headers = {"Coder-Session-Token": ws.agent("main").auth_token}
    resp = rest.get(f"{PATH}?match=https://github.com/coder/coder", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json() == {
        "access_token": "",
        "password": "",
        "token_extra": None,
        "type": "",
        "url": f"{settings.effective_access_url}/external-auth/github",
        "username": "",
    }
    _link(provision, ws, "gitlab", "glpat-1")
    for path in (
        f"{PATH}?id=gitlab",
        "/api/v2/workspaceagents/me/gitauth?url=https://gitlab.com/x",
    ):
        body = rest.get(path, headers=headers).get_json()
        assert set(body) == KEYS
        assert (body["access_token"], body["username"], body["password"], body["type"]) == (
            "glpat-1",
            "oauth2",
            "glpat-1",
            "gitlab",
        )


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("", 400, "'url' or 'id' must be provided!"),
        ("?url=https://github.com&id=github", 400, "'url' and 'id' cannot be provided together!"),
        (
            "?match=https://nope.io",
            404,
            'No matching external auth provider found in Coder for the url "https://nope.io".',
        ),
    ],
)
def test_refusals(rest, provision, providers, query, status, message) -> None:
    ws = provision.workspace()
    resp = rest.get(PATH + query, headers={"Coder-Session-Token": ws.agent("main").auth_token})
    assert resp.status_code == status and resp.get_json()["message"] == message


def _get_json(url: str, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Coder-Session-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_listen_long_polls_over_real_http(settings, core, provision, providers) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    result: dict = {}
    with live_facade(settings, core.address) as base:
        poller = threading.Thread(
            target=lambda: result.update(answer=_get_json(f"{base}{PATH}?id=github&listen", token))
        )
        poller.start()
        key = external_auth_key(ws.user_id, "github")
        wait_until(lambda: core.core.wakeups.subscriber_count(key) == 1, what="the long-poll")
        assert poller.is_alive()
        _link(provision, ws, "github", "ghp_new")
        poller.join(timeout=10)
    status, body = result["answer"]
    assert status == 200
    assert (body["access_token"], body["username"], body["password"], body["url"]) == (
        "ghp_new",
        "ghp_new",
        "",
        "",
    )


class TestListenTimeout:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, external_auth_listen_timeout_seconds=1)

    def test_timeout_is_a_408_envelope(self, settings, core, provision, providers) -> None:
        ws = provision.workspace()
        with live_facade(settings, core.address) as base:
            status, body = _get_json(
                f"{base}{PATH}?id=github&listen=true", ws.agent("main").auth_token
            )
        assert status == 408
        assert body["message"] == "Timed out waiting for an external auth token."
        assert body["detail"].endswith(
            f"sign in at {settings.effective_access_url}/external-auth/github and retry."
        )
