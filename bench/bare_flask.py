"""The local limit for the REST facade: a bare Flask handler returning a
JSON body of the same size, on the same HTTP front with the same options.

With ``BENCH_ECHO_ADDRESS`` set it also serves ``/via-grpc``: the same body
after one unary call to the bare grpcio echo — what any facade that calls a
gRPC core costs before it does any work (the ceiling of this architecture)."""

from __future__ import annotations

import os
import sys

from flask import Flask, Response

from rest_facade.serve import serve_wsgi


def create_bare_app(body_size: int) -> Flask:
    app = Flask(__name__)
    body = ('{"pad":"' + "x" * max(0, body_size - 10) + '"}').encode()

    @app.get("/bare")
    def bare() -> Response:
        return Response(body, mimetype="application/json")

    echo = os.environ.get("BENCH_ECHO_ADDRESS")
    if echo:
        import grpc
        from agentplane.workspaceagents.v1 import workspace_agents_pb2 as pb
        from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as pb_grpc

        stub = pb_grpc.WorkspaceAgentsServiceStub(grpc.insecure_channel(echo))
        request = pb.GetWorkspaceAgentRequest(id="bench")

        @app.get("/via-grpc")
        def via_grpc() -> Response:
            stub.GetWorkspaceAgent(request, timeout=10)
            return Response(body, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"{}", mimetype="application/json")

    return app


if __name__ == "__main__":
    serve_wsgi(create_bare_app(int(os.environ.get("BENCH_BODY_SIZE", "2000"))), sys.argv[1])
