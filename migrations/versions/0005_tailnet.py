"""Tailnet coordination and the replica registry: replicas (one row per
server process, heartbeated), tailnet_peers / tailnet_tunnels (each
replica's coordination state, for the others), crypto_keys (resume-token
signing keys) and tailnet_telemetry (each peer's newest network report).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04 16:03:40.216532
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('crypto_keys',
    sa.Column('feature', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deletes_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('feature', 'sequence', name=op.f('pk_crypto_keys'))
    )
    op.create_table('replicas',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('hostname', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replicas'))
    )
    op.create_table('tailnet_telemetry',
    sa.Column('peer_id', sa.Uuid(), nullable=False),
    sa.Column('event', sa.LargeBinary(), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('netcheck', sa.LargeBinary(), nullable=True),
    sa.Column('netcheck_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('peer_id', name=op.f('pk_tailnet_telemetry'))
    )
    op.create_table('tailnet_peers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('replica_id', sa.Uuid(), nullable=False),
    sa.Column('node', sa.LargeBinary(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['replica_id'], ['replicas.id'], name=op.f('fk_tailnet_peers_replica_id_replicas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', 'replica_id', name=op.f('pk_tailnet_peers'))
    )
    with op.batch_alter_table('tailnet_peers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tailnet_peers_replica_id'), ['replica_id'], unique=False)

    op.create_table('tailnet_tunnels',
    sa.Column('replica_id', sa.Uuid(), nullable=False),
    sa.Column('src_id', sa.Uuid(), nullable=False),
    sa.Column('dst_id', sa.Uuid(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['replica_id'], ['replicas.id'], name=op.f('fk_tailnet_tunnels_replica_id_replicas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('replica_id', 'src_id', 'dst_id', name=op.f('pk_tailnet_tunnels'))
    )
    with op.batch_alter_table('tailnet_tunnels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tailnet_tunnels_dst_id'), ['dst_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tailnet_tunnels_src_id'), ['src_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tailnet_tunnels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tailnet_tunnels_src_id'))
        batch_op.drop_index(batch_op.f('ix_tailnet_tunnels_dst_id'))

    op.drop_table('tailnet_tunnels')
    with op.batch_alter_table('tailnet_peers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tailnet_peers_replica_id'))

    op.drop_table('tailnet_peers')
    op.drop_table('tailnet_telemetry')
    op.drop_table('replicas')
    op.drop_table('crypto_keys')
