"""The embedded DERP relay (Tailscale's DERP, rest_facade/derp), the relay
the default DERP map advertises (region 999 at the access URL):

* ``GET /derp`` with ``Upgrade: DERP`` — the relay protocol on the raw
  connection after ``101 Switching Protocols`` (with ``Derp-Version`` and
  ``Derp-Public-Key``; a client sending ``Derp-Fast-Start: 1`` gets no 101
  and starts at once), or with ``Upgrade: websocket`` (subprotocol
  ``derp``) the same protocol in binary WebSocket messages, for clients
  behind proxies and every client when ``derp_force_websockets`` is on.
  Anything else: 426 ``DERP requires connection upgrade``.
* ``GET /derp/latency-check`` — 200, for clients measuring the round trip.

The relay's key comes from the core (the same on every replica), fetched
once with the admin token. ``--derp-server-enable=false`` turns both routes
off (404), for deployments that hand out an external map only.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from rest_facade.errors import error_response
from rest_facade.parse import wants_websocket
from rest_facade.serving.exchange import Exchange, Handoff
from rest_facade.serving.wsgi import UPGRADE_KEY
from rest_facade.streams import stream_slots
from rest_facade.wire.transport import WebSocketTransport

bp = Blueprint("derp", __name__)

RELAY = "derp-relay"
PROTOCOL_VERSION = b"2"


def _admin_token() -> str:
    settings = current_app.extensions["agentplane.settings"]
    if settings.admin_token:
        return settings.admin_token
    try:
        return settings.admin_token_path.read_text().strip()
    except OSError:
        return ""


def _disabled() -> Response | None:
    if not current_app.extensions["agentplane.settings"].derp_server_enable:
        return error_response(404, "Route not found.")
    return None


async def _relay(exchange: Exchange, admin_token: str):  # type: ignore[no-untyped-def]
    from rest_facade.derp.relay import DERPRelay
    from rest_facade.derp.serverkey import fetch_server_key

    async def make(channel):  # type: ignore[no-untyped-def]
        return DERPRelay(await fetch_server_key(channel, admin_token=admin_token))

    return await exchange.core.shared_async(RELAY, make)


@bp.get("/derp")
def derp() -> Response:
    refused = _disabled()
    if refused is not None:
        return refused
    upgrade = request.environ.get(UPGRADE_KEY, "")
    websocket = wants_websocket()
    if upgrade != "derp" and not websocket:
        return error_response(426, "DERP requires connection upgrade")
    fast_start = request.headers.get("Derp-Fast-Start") == "1"
    admin_token = _admin_token()
    remote = request.remote_addr or ""

    async def run(exchange: Exchange) -> None:
        relay = await _relay(exchange, admin_token)
        if websocket:
            ws = await exchange.websocket(subprotocol="derp")
            try:
                await relay.serve(WebSocketTransport(ws), remote_addr=remote)
            finally:
                await ws.aclose()
            return
        transport = await exchange.upgrade(
            "DERP",
            [
                (b"derp-version", PROTOCOL_VERSION),
                (b"derp-public-key", relay.public_key_hex.encode()),
            ],
            send=not fast_start,
        )
        await relay.serve(transport, remote_addr=remote)

    return Handoff(run, on_done=stream_slots().acquire())


@bp.get("/derp/latency-check")
def latency_check() -> Response:
    refused = _disabled()
    if refused is not None:
        return refused
    return Response(b"", status=200)
