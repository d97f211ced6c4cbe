"""per-workflow success counters and an index for runs per minute

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runs_succeeded', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('runs_failed', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_org_finished', ['organization_id', 'finished_at'], unique=False,
                              sqlite_where=sa.text('finished_at IS NOT NULL'),
                              postgresql_where=sa.text('finished_at IS NOT NULL'))
    # Backfill from the run history. Correlated subqueries (not UPDATE … FROM) work on every SQLite the
    # daemon may meet; matching the organization too lets them use ix_runs_org_workflow_created.
    op.execute(
        "UPDATE workflows SET "
        "runs_succeeded = (SELECT count(*) FROM runs WHERE runs.organization_id = workflows.organization_id "
        "AND runs.workflow_id = workflows.id AND runs.status = 'succeeded'), "
        "runs_failed = (SELECT count(*) FROM runs WHERE runs.organization_id = workflows.organization_id "
        "AND runs.workflow_id = workflows.id AND runs.status IN ('failed', 'dead'))"
    )


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_org_finished')
    with op.batch_alter_table('workflows', schema=None) as batch_op:
        batch_op.drop_column('runs_failed')
        batch_op.drop_column('runs_succeeded')
