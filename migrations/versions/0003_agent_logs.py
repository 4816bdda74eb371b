"""Agent logs: workspace_agent_logs, read by (agent_id, id).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspace_agent_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("output", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("log_source_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["workspace_agents.id"],
            name=op.f("fk_workspace_agent_logs_agent_id_workspace_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_agent_logs")),
    )
    with op.batch_alter_table("workspace_agent_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workspace_agent_logs_agent_id_id", ["agent_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace_agent_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_workspace_agent_logs_agent_id_id")
    op.drop_table("workspace_agent_logs")
