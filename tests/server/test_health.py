"""Health follows the core and its database: grpc.health.v1 NOT_SERVING while
the database does not answer; the facade's /healthz is 503 in Coder's
envelope when the core or the database is away, /healthz/live 200 while the
facade runs."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rest_facade import create_app
from rest_facade.core import CoreClient
from server.embedded import EmbeddedCore
from server.storage.db import Database, create_engine, migrate
from tests.conftest import ADMIN_TOKEN, PG_URL, require_pg
from tests.proxy import TcpProxy
from tests.rest_facade._live import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING


def test_core_unreachable_is_503_and_live_is_200(settings) -> None:
    app = create_app(settings, client=CoreClient("127.0.0.1:1"))
    client = app.test_client()
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["message"] == "The agentplane core is unavailable."
    assert body["detail"].startswith("UNAVAILABLE")
    live = client.get("/healthz/live")
    assert (live.status_code, live.get_json()) == (200, {"status": "ok"})


def test_healthy_core_is_200(rest, channel) -> None:
    assert rest.get("/healthz").get_json() == {"status": "ok"}
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == SERVING


@pytest.fixture
def pg_behind_proxy(tmp_path):
    """A migrated PostgreSQL schema reached through a TCP hop the test cuts."""
    require_pg()
    schema = f"h_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    parts = urlsplit(PG_URL)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    url = f"postgresql://{parts.username}@{proxy.address}{parts.path}"
    engine = create_engine(f"{url}?options=-csearch_path%3D{schema}&connect_timeout=2")
    migrate(engine)
    database = Database(engine)
    yield database, proxy
    proxy.cut()
    database.dispose()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_database_away_is_not_serving_then_back(settings, clock, pg_behind_proxy) -> None:
    db, proxy = pg_behind_proxy
    with EmbeddedCore(settings, db, clock, admin_token=ADMIN_TOKEN) as core:
        client = CoreClient(core.address)
        app = create_app(settings, client=client)
        rest = app.test_client()
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(core.address))

        def status() -> int:
            return health.Check(health_pb2.HealthCheckRequest(), timeout=5).status

        assert status() == SERVING and rest.get("/healthz").status_code == 200
        proxy.cut()
        wait_until(lambda: status() != SERVING, timeout=30, what="NOT_SERVING")
        resp = rest.get("/healthz")
        assert resp.status_code == 503
        assert resp.get_json()["message"] == "agentplane's database is unavailable."
        assert rest.get("/healthz/live").status_code == 200
        proxy.restore()
        wait_until(lambda: status() == SERVING, timeout=30, what="SERVING again")
        assert rest.get("/healthz").status_code == 200
        client.close()
