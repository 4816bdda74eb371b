"""Alembic environment: the schema is SQLModel.metadata (server.storage.models).

The server passes its engine in ``config.attributes["engine"]``; the alembic
CLI uses ``AGENTPLANE_DATABASE_URL`` (or the default SQLite file).
"""

from __future__ import annotations

from alembic import context

from server.config import load_settings
from server.storage import db as storage_db
from server.storage.models import metadata_obj

config = context.config


def _engine():  # type: ignore[no-untyped-def]
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine, False
    url = load_settings().effective_database_url
    return storage_db.create_engine(url, pool_size=1), True


def run_migrations_online() -> None:
    engine, owned = _engine()
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata_obj,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
