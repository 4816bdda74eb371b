"""Migrations: the schema comes only from Alembic, round-trips on both
backends, matches the models, and a newer schema is refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.storage.db import (
    SchemaTooNew,
    alembic_config,
    create_engine,
    current_revision,
    head_revision,
    migrate,
)
from server.storage.models import metadata_obj
from tests.conftest import BACKENDS


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_round_trip_upgrade_downgrade_upgrade(fresh_backend) -> None:
    engine = create_engine(fresh_backend.url)
    try:
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == set(metadata_obj.tables)
        command.downgrade(alembic_config(engine), "base")
        assert _tables(engine) == set()
        migrate(engine)
        assert _tables(engine) == set(metadata_obj.tables)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata_obj)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_schema_newer_than_code_is_refused(fresh_backend) -> None:
    engine = create_engine(fresh_backend.url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(SchemaTooNew, match="9999_future"):
            migrate(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("fresh_backend", BACKENDS, indirect=True)
def test_migrate_is_idempotent(fresh_backend) -> None:
    engine = create_engine(fresh_backend.url)
    try:
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
