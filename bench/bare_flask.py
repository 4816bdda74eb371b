"""The local limit for the REST facade: a bare Flask handler returning a
JSON body of the same size, on the same WSGI server with the same options."""

from __future__ import annotations

import os
import sys

from flask import Flask, Response

from rest_facade.serve import FacadeServer, gunicorn_options
from server.config import load_settings


def create_bare_app(body_size: int) -> Flask:
    app = Flask(__name__)
    body = ('{"pad":"' + "x" * max(0, body_size - 10) + '"}').encode()

    @app.get("/bare")
    def bare() -> Response:
        return Response(body, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"{}", mimetype="application/json")

    return app


class BareServer(FacadeServer):
    def load(self):  # type: ignore[no-untyped-def]
        return create_bare_app(int(os.environ.get("BENCH_BODY_SIZE", "2000")))


if __name__ == "__main__":
    settings = load_settings({"http_address": sys.argv[1]})
    BareServer(settings, gunicorn_options(settings)).run()
