"""a partial index of the fires held back (status waiting), probed by every final outcome

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401
import nexus_core.store.types  # noqa: F401


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_waiting', ['workflow_id'], unique=False,
                              sqlite_where=sa.text("status = 'waiting'"),
                              postgresql_where=sa.text("status = 'waiting'"))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_waiting')
