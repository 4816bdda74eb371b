"""``GET /api/v2/workspaceagents/me/external-auth`` and the legacy
``GET /api/v2/workspaceagents/me/gitauth`` <-> ``agentplane.me.v1.MeService/GetExternalAuth``.

Query: ``match`` (or the legacy ``url``) xor ``id``; ``listen`` (present
means true) long-polls until the owner has a usable token — bounded by the
server's ``--external-auth-listen-timeout-seconds``, then a 408 in Coder's
envelope. Answers ``agentsdk.ExternalAuthResponse`` JSON.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from agentplane.me.v1 import me_pb2
from flask import Blueprint, Response, current_app, request

from rest_facade import core
from rest_facade.coderjson import respond
from rest_facade.parse import session_token
from rest_facade.serving.exchange import Exchange, Handoff
from rest_facade.streams import stream_slots, until_gone

bp = Blueprint("externalauth", __name__)

# The long-poll's own bound is the core's; the call's deadline only has to
# outlast it.
DEADLINE_MARGIN_SECONDS = 15.0


def external_auth_json(resp: me_pb2.GetExternalAuthResponse) -> dict[str, Any]:
    return {
        "access_token": resp.access_token,
        "password": resp.password,
        "token_extra": json.loads(resp.token_extra_json) if resp.token_extra_json else None,
        "type": resp.type,
        "url": resp.url,
        "username": resp.username,
    }


def _external_auth() -> Response:
    args = request.args
    listen = "listen" in args
    req = me_pb2.GetExternalAuthRequest(
        match=args.get("match") or args.get("url") or "",
        id=args.get("id", ""),
        listen=listen,
    )
    token = session_token()
    if listen:
        return _listen(req, token)
    client = core()
    return respond(external_auth_json(client.call(client.me.GetExternalAuth, req, token=token)))


def _listen(req: me_pb2.GetExternalAuthRequest, token: str | None) -> Response:
    """The long poll, carried on the front's loop; it ends early (and its
    core call with it) when the agent goes away."""
    settings = current_app.extensions["agentplane.settings"]
    timeout = settings.external_auth_listen_timeout_seconds + DEADLINE_MARGIN_SECONDS

    async def run(exchange: Exchange) -> None:
        core = exchange.core
        call = core.call(core.me.GetExternalAuth, req, token=token, timeout=timeout)
        try:
            resp = await until_gone(exchange.wait_disconnected(), call)
        except grpc.RpcError as err:
            await exchange.respond_rpc_error(err)
            return
        await exchange.respond_json(200, external_auth_json(resp))

    return Handoff(run, on_done=stream_slots().acquire())


@bp.get("/workspaceagents/me/external-auth")
def get_external_auth() -> Response:
    return _external_auth()


@bp.get("/workspaceagents/me/gitauth")
def get_git_auth() -> Response:
    # Deprecated alias, served by the same handler as in Coder.
    return _external_auth()
