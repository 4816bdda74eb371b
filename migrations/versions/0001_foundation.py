"""Foundation schema: users, API keys, git SSH keys, workspaces, builds, resources,
agents, apps, scripts, metadata, log sources, external auth, DERP map.

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 04:04:16.429647
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('derp_map_config',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('derp_map', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_derp_map_config'))
    )
    op.create_table('external_auth_providers',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('regex', sa.Text(), nullable=False),
    sa.Column('display_order', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_auth_providers'))
    )
    op.create_table('users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_username'), ['username'], unique=True)

    op.create_table('api_keys',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('hashed_secret', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)

    op.create_table('external_auth_links',
    sa.Column('provider_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('access_token', sa.Text(), nullable=False),
    sa.Column('refresh_token', sa.Text(), nullable=False),
    sa.Column('token_extra', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['external_auth_providers.id'], name=op.f('fk_external_auth_links_provider_id_external_auth_providers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_external_auth_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('provider_id', 'user_id', name=op.f('pk_external_auth_links'))
    )
    op.create_table('gitsshkeys',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('private_key', sa.Text(), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_gitsshkeys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_gitsshkeys'))
    )
    op.create_table('workspaces',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_workspaces_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces')),
    sa.UniqueConstraint('owner_id', 'name', name=op.f('uq_workspaces_owner_id_name'))
    )
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspaces_owner_id'), ['owner_id'], unique=False)

    op.create_table('workspace_builds',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('build_number', sa.Integer(), nullable=False),
    sa.Column('transition', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('job_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('spec_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_builds_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_builds')),
    sa.UniqueConstraint('workspace_id', 'build_number', name=op.f('uq_workspace_builds_workspace_id_build_number'))
    )
    with op.batch_alter_table('workspace_builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_builds_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('workspace_resources',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('build_id', sa.Uuid(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['build_id'], ['workspace_builds.id'], name=op.f('fk_workspace_resources_build_id_workspace_builds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_resources'))
    )
    with op.batch_alter_table('workspace_resources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_resources_build_id'), ['build_id'], unique=False)

    op.create_table('workspace_agents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=False),
    sa.Column('parent_id', sa.Uuid(), nullable=True),
    sa.Column('auth_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('auth_token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('auth_instance_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('architecture', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('operating_system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('environment_variables', sa.JSON(), nullable=False),
    sa.Column('directory', sa.Text(), nullable=False),
    sa.Column('expanded_directory', sa.Text(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('api_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subsystems', sa.JSON(), nullable=False),
    sa.Column('first_connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disconnected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_connected_replica_id', sa.Uuid(), nullable=True),
    sa.Column('connection_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('troubleshooting_url', sa.Text(), nullable=False),
    sa.Column('motd_file', sa.Text(), nullable=False),
    sa.Column('display_apps', sa.JSON(), nullable=False),
    sa.Column('display_order', sa.Integer(), nullable=False),
    sa.Column('lifecycle_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('logs_length', sa.Integer(), nullable=False),
    sa.Column('logs_overflowed', sa.Boolean(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agents_parent_id_workspace_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resource_id'], ['workspace_resources.id'], name=op.f('fk_workspace_agents_resource_id_workspace_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_agents'))
    )
    with op.batch_alter_table('workspace_agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_agents_auth_instance_id'), ['auth_instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_workspace_agents_auth_token_hash'), ['auth_token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_workspace_agents_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_workspace_agents_resource_id'), ['resource_id'], unique=False)

    op.create_table('workspace_agent_log_sources',
    sa.Column('workspace_agent_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
    sa.Column('icon', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_log_sources_workspace_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_agent_id', 'id', name=op.f('pk_workspace_agent_log_sources'))
    )
    op.create_table('workspace_agent_metadata',
    sa.Column('workspace_agent_id', sa.Uuid(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
    sa.Column('script', sa.Text(), nullable=False),
    sa.Column('interval', sa.Integer(), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('display_order', sa.Integer(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_metadata_workspace_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_agent_id', 'key', name=op.f('pk_workspace_agent_metadata'))
    )
    op.create_table('workspace_agent_scripts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_agent_id', sa.Uuid(), nullable=False),
    sa.Column('log_source_id', sa.Uuid(), nullable=False),
    sa.Column('log_path', sa.Text(), nullable=False),
    sa.Column('script', sa.Text(), nullable=False),
    sa.Column('cron', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('start_blocks_login', sa.Boolean(), nullable=False),
    sa.Column('run_on_start', sa.Boolean(), nullable=False),
    sa.Column('run_on_stop', sa.Boolean(), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_agent_scripts_workspace_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_agent_scripts'))
    )
    with op.batch_alter_table('workspace_agent_scripts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_agent_scripts_workspace_agent_id'), ['workspace_agent_id'], unique=False)

    op.create_table('workspace_apps',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('icon', sa.Text(), nullable=False),
    sa.Column('command', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('external', sa.Boolean(), nullable=False),
    sa.Column('subdomain', sa.Boolean(), nullable=False),
    sa.Column('healthcheck_url', sa.Text(), nullable=False),
    sa.Column('healthcheck_interval', sa.Integer(), nullable=False),
    sa.Column('healthcheck_threshold', sa.Integer(), nullable=False),
    sa.Column('health', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sharing_level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('display_order', sa.Integer(), nullable=False),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('open_in', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('display_group', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('tooltip', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['workspace_agents.id'], name=op.f('fk_workspace_apps_agent_id_workspace_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_apps')),
    sa.UniqueConstraint('agent_id', 'slug', name=op.f('uq_workspace_apps_agent_id_slug'))
    )
    with op.batch_alter_table('workspace_apps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workspace_apps_agent_id'), ['agent_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('workspace_apps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_apps_agent_id'))

    op.drop_table('workspace_apps')
    with op.batch_alter_table('workspace_agent_scripts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_agent_scripts_workspace_agent_id'))

    op.drop_table('workspace_agent_scripts')
    op.drop_table('workspace_agent_metadata')
    op.drop_table('workspace_agent_log_sources')
    with op.batch_alter_table('workspace_agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_agents_resource_id'))
        batch_op.drop_index(batch_op.f('ix_workspace_agents_parent_id'))
        batch_op.drop_index(batch_op.f('ix_workspace_agents_auth_token_hash'))
        batch_op.drop_index(batch_op.f('ix_workspace_agents_auth_instance_id'))

    op.drop_table('workspace_agents')
    with op.batch_alter_table('workspace_resources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_resources_build_id'))

    op.drop_table('workspace_resources')
    with op.batch_alter_table('workspace_builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspace_builds_workspace_id'))

    op.drop_table('workspace_builds')
    with op.batch_alter_table('workspaces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workspaces_owner_id'))

    op.drop_table('workspaces')
    op.drop_table('gitsshkeys')
    op.drop_table('external_auth_links')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_user_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_username'))

    op.drop_table('users')
    op.drop_table('external_auth_providers')
    op.drop_table('derp_map_config')
