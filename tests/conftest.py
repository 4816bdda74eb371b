"""Shared fixtures: a real database on each backend, a real core on port 0,
the Flask facade against it, and provisioning through the real AdminService.

Every test that asks for ``db`` runs twice: on a SQLite file and on
PostgreSQL. Without a reachable PostgreSQL the PG half is skipped with a loud
reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import sqlalchemy as sa
from agentplane.admin.v1 import admin_pb2, admin_pb2_grpc

from rest_facade import create_app
from rest_facade.core import CoreClient
from server.clock import ManualClock
from server.config import Settings
from server.embedded import EmbeddedCore
from server.storage.db import Database, create_engine, migrate
from server.storage.models import metadata_obj

PG_URL = os.environ.get("AGENTPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_TOKEN = "test-admin-token"
BACKENDS = ("sqlite", "postgresql")


def pg_unavailable_reason() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return f"PostgreSQL at {PG_URL} is not reachable ({err.__class__.__name__})"


def require_pg() -> None:
    reason = pg_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL: {reason}")
    pytest.skip(f"!!! PostgreSQL half SKIPPED: {reason}")


@dataclass
class Backend:
    name: str
    url: str
    cleanup: Any = None


def new_backend_url(name: str, tmp: Path) -> Backend:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL schema."""
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp / f'agentplane-{secrets.token_hex(4)}.db'}")
    require_pg()
    schema = f"t_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return Backend(name, f"{PG_URL}?options=-csearch_path%3D{schema}", drop)


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    backend = new_backend_url(request.param, tmp_path_factory.mktemp(request.param))
    engine = create_engine(backend.url)
    migrate(engine)
    yield backend, engine
    engine.dispose()
    if backend.cleanup:
        backend.cleanup()


@pytest.fixture
def fresh_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty, unmigrated database per test, on the backend of the
    parametrised ``backend_name`` (for migration tests)."""
    backend = new_backend_url(request.param, tmp_path)
    yield backend
    if backend.cleanup:
        backend.cleanup()


@pytest.fixture
def db(migrated_backend) -> Iterator[Database]:
    """A migrated database emptied before the test."""
    _backend, engine = migrated_backend
    tables = [t.name for t in reversed(metadata_obj.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))
    database = Database(engine)
    yield database
    database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A short re-poll keeps the lost-notification tests quick.
    return Settings(
        data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, log_follow_repoll_seconds=1.0
    )


@pytest.fixture
def core(settings: Settings, db: Database, clock: ManualClock) -> Iterator[EmbeddedCore]:
    with EmbeddedCore(settings, db, clock, admin_token=ADMIN_TOKEN) as running:
        yield running


@pytest.fixture
def channel(core: EmbeddedCore) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(core.address) as ch:
        yield ch


@pytest.fixture
def rest(settings: Settings, core: EmbeddedCore):
    client = CoreClient(core.address)
    app = create_app(settings, client=client)
    app.testing = True
    yield app.test_client()
    client.close()


ADMIN_METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

DEFAULT_SPEC: dict[str, Any] = {
    "resources": [
        {
            "name": "dev",
            "type": "docker_container",
            "agents": [
                {
                    "name": "main",
                    "directory": "/home/coder",
                    "env": {"EDITOR": "vim"},
                    "apps": [
                        {
                            "slug": "code-server",
                            "url": "http://localhost:13337",
                            "healthcheck": {
                                "url": "http://localhost:13337/healthz",
                                "interval": 5,
                                "threshold": 6,
                            },
                        },
                        {"slug": "docs", "url": "https://example.com", "external": True},
                    ],
                    "scripts": [
                        {
                            "display_name": "Startup",
                            "script": "echo hi",
                            "run_on_start": True,
                            "start_blocks_login": True,
                            "timeout_seconds": 300,
                        },
                    ],
                    "metadata": [
                        {
                            "key": "load",
                            "script": "cat /proc/loadavg",
                            "interval": 10,
                            "timeout": 1,
                        },
                    ],
                    "children": [{"name": "child"}],
                }
            ],
        }
    ]
}


@dataclass
class Provisioned:
    user_id: str
    username: str
    api_key: str
    workspace_id: str
    build: admin_pb2.Build

    def agent(self, name: str) -> admin_pb2.ProvisionedAgent:
        return next(a for a in self.build.agents if a.name == name)


class Provisioner:
    """Creates users and workspaces through the real AdminService."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = admin_pb2_grpc.AdminServiceStub(channel)

    def user(
        self, username: str | None = None, role: str = "member"
    ) -> admin_pb2.CreateUserResponse:
        return self.stub.CreateUser(
            admin_pb2.CreateUserRequest(
                username=username or f"u{uuid.uuid4().hex[:8]}", email="u@example.com", role=role
            ),
            metadata=ADMIN_METADATA,
        )

    def workspace(
        self,
        spec: dict[str, Any] | None = None,
        *,
        owner: admin_pb2.CreateUserResponse | None = None,
        name: str = "ws",
    ) -> Provisioned:
        owner = owner or self.user()
        resp = self.stub.CreateWorkspace(
            admin_pb2.CreateWorkspaceRequest(
                owner=owner.username, name=name, spec_json=json.dumps(spec or DEFAULT_SPEC)
            ),
            metadata=ADMIN_METADATA,
        )
        return Provisioned(
            owner.id, owner.username, owner.api_key, resp.build.workspace_id, resp.build
        )

    def prebuild(self, spec: dict[str, Any] | None = None, *, name: str = "pb") -> admin_pb2.Build:
        """A prebuilt workspace (owned by the prebuilds user until claimed)."""
        return self.stub.CreatePrebuild(
            admin_pb2.CreatePrebuildRequest(name=name, spec_json=json.dumps(spec or DEFAULT_SPEC)),
            metadata=ADMIN_METADATA,
        ).build

    def claim(
        self, name: str, owner: admin_pb2.CreateUserResponse, new_name: str = ""
    ) -> admin_pb2.ClaimPrebuildResponse:
        return self.stub.ClaimPrebuild(
            admin_pb2.ClaimPrebuildRequest(name=name, owner=owner.username, new_name=new_name),
            metadata=ADMIN_METADATA,
        )

    def rebuild(
        self, ws: Provisioned, *, name: str = "ws", transition: str = "start"
    ) -> admin_pb2.Build:
        resp = self.stub.BuildWorkspace(
            admin_pb2.BuildWorkspaceRequest(owner=ws.username, name=name, transition=transition),
            metadata=ADMIN_METADATA,
        )
        return resp.build


@pytest.fixture
def provision(channel: grpc.Channel) -> Provisioner:
    return Provisioner(channel)


def token_md(token: str) -> tuple[tuple[str, str], ...]:
    return (("coder-session-token", token),)


@contextlib.contextmanager
def write_locked(db: Database, agent_id: str) -> Iterator[None]:
    """Another transaction holds what a write of the agent's row needs (the
    row itself on PostgreSQL, the database's write lock on SQLite) for the
    block."""
    from server.storage.agents import WorkspaceAgent

    agents = WorkspaceAgent.__table__
    with db.engine.connect() as locker:
        if db.is_postgres:
            locker.begin()
            locker.execute(
                sa.select(agents.c.id).where(agents.c.id == uuid.UUID(agent_id)).with_for_update()
            )
        else:
            locker.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            if db.is_postgres:
                locker.rollback()
            else:
                locker.exec_driver_sql("ROLLBACK")


@pytest.fixture
def facade_url(settings: Settings, core: EmbeddedCore) -> Iterator[str]:
    """The facade on a real threaded HTTP server (werkzeug) against the live
    core, for real WebSocket / SSE / long-poll clients."""
    from tests.rest_facade._live import live_facade

    with live_facade(settings, core.address) as url:
        yield url
