"""Imports every table so that SQLModel.metadata is complete (Alembic reads it)."""

from sqlmodel import SQLModel

from server.storage import (  # noqa: F401 - imported for their tables
    agents,
    apps,
    derp,
    externalauth,
    logs,
    metadata,
    scripts,
    users,
    workspaces,
)

metadata_obj = SQLModel.metadata
