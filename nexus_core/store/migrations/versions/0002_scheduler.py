"""scheduler state and policies on workflows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401
import nexus_core.store.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_fire_at', nexus_core.store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('misfire', sqlmodel.sql.sqltypes.AutoString(length=8), server_default='skip',
                                      nullable=False))
        batch_op.add_column(sa.Column('max_catchup', sa.Integer(), server_default='10', nullable=False))
        batch_op.add_column(sa.Column('grace', sa.Float(), server_default='60.0', nullable=False))
        batch_op.add_column(sa.Column('overlap', sqlmodel.sql.sqltypes.AutoString(length=8), server_default='skip',
                                      nullable=False))
        batch_op.create_index(batch_op.f('ix_workflows_next_fire_at'), ['next_fire_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflows_updated_at'), ['updated_at'], unique=False)
    # The scheduler fills next_fire_at for workflows that have a schedule when it starts.


def downgrade() -> None:
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workflows_updated_at'))
        batch_op.drop_index(batch_op.f('ix_workflows_next_fire_at'))
        batch_op.drop_column('overlap')
        batch_op.drop_column('grace')
        batch_op.drop_column('max_catchup')
        batch_op.drop_column('misfire')
        batch_op.drop_column('next_fire_at')
