"""Imports every table so that SQLModel.metadata is complete (Alembic reads it)."""

from sqlmodel import SQLModel

from server.storage import (  # noqa: F401 - imported for their tables
    agentdiagnostics,
    agents,
    apps,
    appstatus,
    connectionlogs,
    cryptokeys,
    derp,
    derpkey,
    externalauth,
    logs,
    metadata,
    reinit,
    replicas,
    resourcemonitors,
    scripts,
    scripttimings,
    stats,
    tailnet,
    tailnettelemetry,
    users,
    workspaces,
)

metadata_obj = SQLModel.metadata
