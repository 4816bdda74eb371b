"""Hardening: build initiators and prebuild claims (reinit's durable check),
and workspace names taken only while their workspace lives.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspace_builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("initiator_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("prebuild_claim", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_workspace_builds_initiator_id_users"), "users", ["initiator_id"], ["id"]
        )
    with op.batch_alter_table("workspace_builds", schema=None) as batch_op:
        batch_op.alter_column("prebuild_claim", server_default=None)
    # Every build so far was started for its workspace's owner.
    op.execute(
        "UPDATE workspace_builds SET initiator_id = (SELECT owner_id FROM workspaces "
        "WHERE workspaces.id = workspace_builds.workspace_id)"
    )
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_constraint("uq_workspaces_owner_id_name", type_="unique")
        batch_op.create_index(
            "uq_workspaces_owner_id_name_live",
            ["owner_id", "name"],
            unique=True,
            postgresql_where=sa.text("NOT deleted"),
            sqlite_where=sa.text("NOT deleted"),
        )


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_index("uq_workspaces_owner_id_name_live")
        batch_op.create_unique_constraint("uq_workspaces_owner_id_name", ["owner_id", "name"])
    with op.batch_alter_table("workspace_builds", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_workspace_builds_initiator_id_users"), type_="foreignkey"
        )
        batch_op.drop_column("prebuild_claim")
        batch_op.drop_column("initiator_id")
