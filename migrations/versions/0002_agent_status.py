"""Agent status: app statuses, stats reports, script timings, connection logs,
resource monitors and usage, reinitialization requests, refused agent tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 04:16:49.794202
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('workspace_reinit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('build_number', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_workspace_reinit_events_owner_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_reinit_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_reinit_events'))
    )
    with op.batch_alter_table('workspace_reinit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_reinit_events_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('connection_logs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('connect_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disconnect_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('workspace_owner_id', sa.Uuid(), nullable=False),
    sa.Column('workspace_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('agent_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('app_name', sa.Text(), nullable=False),
    sa.Column('ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('code', sa.Integer(), nullable=True),
    sa.Column('disconnect_reason', sa.Text(), nullable=True),
    sa.Column('connection_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_connection_logs_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_connection_logs_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_owner_id'], ['users.id'], name=op.f('fk_connection_logs_workspace_owner_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connection_logs')),
    sa.UniqueConstraint('connection_id', 'workspace_id', 'agent_name', name=op.f('uq_connection_logs_connection_id_workspace_id_agent_name'))
    )
    with op.batch_alter_table('connection_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connection_logs_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('workspace_agent_memory_resource_monitors',
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_memory_resource_monitors_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_workspace_agent_memory_resource_monitors'))
    )
    op.create_table('workspace_agent_resource_usage',
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('memory_used', sa.BigInteger(), nullable=True),
    sa.Column('memory_total', sa.BigInteger(), nullable=True),
    sa.Column('volumes', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_resource_usage_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'collected_at', name=op.f('pk_workspace_agent_resource_usage'))
    )
    op.create_table('workspace_agent_stats',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('connections_by_proto', sa.JSON(), nullable=False),
    sa.Column('connection_count', sa.BigInteger(), nullable=False),
    sa.Column('connection_median_latency_ms', sa.Float(), nullable=False),
    sa.Column('rx_packets', sa.BigInteger(), nullable=False),
    sa.Column('rx_bytes', sa.BigInteger(), nullable=False),
    sa.Column('tx_packets', sa.BigInteger(), nullable=False),
    sa.Column('tx_bytes', sa.BigInteger(), nullable=False),
    sa.Column('session_count_vscode', sa.BigInteger(), nullable=False),
    sa.Column('session_count_jetbrains', sa.BigInteger(), nullable=False),
    sa.Column('session_count_reconnecting_pty', sa.BigInteger(), nullable=False),
    sa.Column('session_count_ssh', sa.BigInteger(), nullable=False),
    sa.Column('session_counts', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_stats_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_workspace_agent_stats_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_agent_stats_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_agent_stats'))
    )
    with op.batch_alter_table('workspace_agent_stats', schema=None) as batch_op:
        batch_op.create_index('ix_workspace_agent_stats_agent_id_created_at', ['agent_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_workspace_agent_stats_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('workspace_agent_token_rejections',
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('agent_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('build_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('rejected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_token_rejections_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_agent_token_rejections_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_workspace_agent_token_rejections'))
    )
    with op.batch_alter_table('workspace_agent_token_rejections', schema=None) as batch_op:
        batch_op.create_index('ix_workspace_agent_token_rejections_workspace_id_agent_name', ['workspace_id', 'agent_name'], unique=False)

    op.create_table('workspace_agent_volume_resource_monitors',
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_volume_resource_monitors_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'path', name=op.f('pk_workspace_agent_volume_resource_monitors'))
    )
    op.create_table('workspace_agent_script_timings',
    sa.Column('script_id', sa.Uuid(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=False),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['script_id'], ['workspace_agent_scripts.id'], name=op.f('fk_workspace_agent_script_timings_script_id_workspace_agent_scripts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('script_id', 'started_at', name=op.f('pk_workspace_agent_script_timings'))
    )
    op.create_table('workspace_app_statuses',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('app_id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_app_statuses_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['app_id'], ['workspace_apps.id'], name=op.f('fk_workspace_app_statuses_app_id_workspace_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_app_statuses_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_app_statuses'))
    )
    with op.batch_alter_table('workspace_app_statuses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_app_statuses_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index('ix_workspace_app_statuses_app_id_created_at', ['app_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('workspace_app_statuses', schema=None) as batch_op:
        batch_op.drop_index('ix_workspace_app_statuses_app_id_created_at')
        batch_op.drop_index(batch_op.f('ix_workspace_app_statuses_agent_id'))

    op.drop_table('workspace_app_statuses')
    op.drop_table('workspace_agent_script_timings')
    op.drop_table('workspace_agent_volume_resource_monitors')
    with op.batch_alter_table('workspace_agent_token_rejections', schema=None) as batch_op:
        batch_op.drop_index('ix_workspace_agent_token_rejections_workspace_id_agent_name')

    op.drop_table('workspace_agent_token_rejections')
    with op.batch_alter_table('workspace_agent_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_agent_stats_workspace_id'))
        batch_op.drop_index('ix_workspace_agent_stats_agent_id_created_at')

    op.drop_table('workspace_agent_stats')
    op.drop_table('workspace_agent_resource_usage')
    op.drop_table('workspace_agent_memory_resource_monitors')
    with op.batch_alter_table('connection_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connection_logs_workspace_id'))

    op.drop_table('connection_logs')
    with op.batch_alter_table('workspace_reinit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_reinit_events_workspace_id'))

    op.drop_table('workspace_reinit_events')
