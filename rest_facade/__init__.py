"""The REST facade: Coder's documented ``/api/v2`` routes, served by calling
the core over gRPC. ``create_app(settings, client=None)`` is the factory."""

from __future__ import annotations

import grpc
from agentplane.me.v1 import me_pb2
from flask import Flask, Response, request
from grpc_health.v1 import health_pb2
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from rest_facade.coderjson import respond
from rest_facade.core import CoreClient
from rest_facade.errors import error_response, rpc_error_response
from rest_facade.metrics import ROUTE_KEY
from rest_facade.parse import session_token
from rest_facade.streams import EXTENSION as STREAMS_EXTENSION
from rest_facade.streams import StreamSlots
from server.config import Settings

CORE_EXTENSION = "agentplane.core"
# Routes an agent calls with its own token.
AGENT_ROUTES = "/api/v2/workspaceagents/me/"
WHO_AM_I_TIMEOUT_SECONDS = 5.0
# /healthz waits this long for the core's answer (which is itself bounded by
# its database probe's timeout).
HEALTH_TIMEOUT_SECONDS = 3.0


class AgentIdConverter(BaseConverter):
    """``{workspaceagent}`` in a path: any segment but ``me``. In Coder's
    router ``/workspaceagents/me`` is a mounted sub-router that takes every
    method, so ``GET me/logs`` is that sub-router's 405, never a user's read
    of an agent called "me" (a 401). The single static routes beside it
    (``connection``, the identity logins) do fall through to the agent
    routes on another method, as chi backtracks; werkzeug does the same."""

    regex = r"(?!me(?:/|$))[^/]+"


def create_app(settings: Settings, client: CoreClient | None = None) -> Flask:
    from rest_facade.routes import agents, connection, gitsshkey, identity, logs, manifest

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Every answer is Coder's JSON: no automatic OPTIONS (an empty text/html
    # 200), no redirect to a path with merged slashes (a 308 with HTML).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.url_map.converters["agent"] = AgentIdConverter
    app.extensions[CORE_EXTENSION] = client or CoreClient(settings.effective_core_address)
    app.extensions["agentplane.settings"] = settings
    app.extensions[STREAMS_EXTENSION] = StreamSlots(
        settings.facade_max_streams, settings.facade_max_streams_per_session
    )
    for module in (manifest, gitsshkey, connection, identity, agents, logs):
        app.register_blueprint(module.bp, url_prefix="/api/v2")
    # Agent status (issue 4): app health/status, stats, external auth, reinit.
    from rest_facade.routes import apps, buildinfo, derp, externalauth, metrics, reinit, rpc, stats

    for module in (apps, stats, externalauth, reinit, buildinfo, rpc):
        app.register_blueprint(module.bp, url_prefix="/api/v2")
    app.register_blueprint(metrics.bp)
    app.register_blueprint(derp.bp)

    @app.before_request
    def _route_for_logs() -> None:
        # The route's template names the request in logs and metrics.
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    # Through the agent's tunnel (issue 13): ports, containers, terminals.
    from rest_facade.routes import agentconn, tailnet

    app.register_blueprint(agentconn.bp, url_prefix="/api/v2")
    # Tailnet coordination's doors (issue 12): derp-map, coordinate, tailnet.
    app.register_blueprint(tailnet.bp, url_prefix="/api/v2")

    @app.before_request
    def _limit_body() -> Response | None:
        # Refuse oversized bodies up front, whether or not the route reads one.
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return _too_large(None)
        return None

    @app.after_request
    def _token_before_request(response: Response) -> Response:
        """coderd checks an agent's token before a handler reads the body or
        the query, so on a `me/...` route a 400 about those only reaches a
        caller whose token authenticates; any other caller gets the 401.
        Handlers parse first (most calls are valid, and the core checks the
        token anyway), so the check is made here, on the 400s alone."""
        if response.status_code != 400 or not request.path.startswith(AGENT_ROUTES):
            return response
        try:
            # Short: a 400 that needs no core must not wait long on a stuck one.
            core().call(
                core().me.WhoAmI,
                me_pb2.WhoAmIRequest(),
                token=session_token(),
                timeout=WHO_AM_I_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                return rpc_error_response(err)
        # Authenticated, or the core cannot say (down, slow): the 400 stands.
        return response

    @app.errorhandler(grpc.RpcError)
    def _rpc_error(err: grpc.RpcError) -> Response:
        return rpc_error_response(err)

    @app.errorhandler(404)
    def _not_found(_err: HTTPException) -> Response:
        return error_response(404, "Route not found.")

    @app.errorhandler(405)
    def _method(err: HTTPException) -> Response:
        resp = error_response(405, "Method not allowed.")
        allowed = getattr(err, "valid_methods", None)
        if allowed:
            resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp

    @app.errorhandler(500)
    def _internal(err: HTTPException) -> Response:
        # Anything unexpected still answers in Coder's envelope, not HTML.
        original = getattr(err, "original_exception", None)
        if original is not None:
            app.logger.error(
                "unhandled error in %s %s", request.method, request.path, exc_info=original
            )
        return error_response(500, "An internal error occurred.")

    @app.errorhandler(413)
    def _too_large(_err: HTTPException | None) -> Response:
        return error_response(
            413,
            "Request body too large.",
            detail=f"The body exceeds the {settings.max_body_bytes}-byte limit.",
        )

    @app.get("/healthz")
    def _healthz() -> Response:
        """Readiness: the core answers and reports its database answering
        (grpc.health.v1, a short deadline); otherwise 503 in Coder's envelope."""
        try:
            reply = core().health.Check(
                health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_SECONDS
            )
        except grpc.RpcError as err:
            return error_response(
                503,
                "The agentplane core is unavailable.",
                detail=f"{err.code().name}: {err.details() or ''}".rstrip(": "),
            )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return error_response(
                503,
                "agentplane's database is unavailable.",
                detail="The core reports NOT_SERVING: its database does not answer.",
            )
        return respond({"status": "ok"})

    @app.get("/healthz/live")
    def _live() -> Response:
        """Liveness: this process serves HTTP (for process supervisors)."""
        return respond({"status": "ok"})

    return app


def core() -> CoreClient:
    from flask import current_app

    return current_app.extensions[CORE_EXTENSION]
