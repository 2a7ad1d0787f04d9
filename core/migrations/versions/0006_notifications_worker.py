"""notifications, worker jobs, reminder choices

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHOICES = ('remind_reservation', 'remind_max_stay', 'notify_overstay', 'notify_changes')


def upgrade() -> None:
    for name in CHOICES:
        op.add_column('accounts', sa.Column(name, sa.Boolean(), server_default='1', nullable=False))
    op.create_table('notifications',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('next_attempt_at', Timestamp, nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', Timestamp, nullable=True),
    sa.Column('sent_at', Timestamp, nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('site_id', 'kind', 'subject', name=op.f('uq_notifications_site_id_kind_subject'))
    )
    op.create_index(op.f('ix_notifications_site_id_state_next_attempt_at'), 'notifications', ['site_id', 'state', 'next_attempt_at'], unique=False)
    op.create_table('worker_jobs',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', Timestamp, nullable=True),
    sa.Column('last_run_at', Timestamp, nullable=True),
    sa.Column('last_result', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('site_id', 'name', name=op.f('pk_worker_jobs'))
    )


def downgrade() -> None:
    op.drop_table('worker_jobs')
    op.drop_index(op.f('ix_notifications_site_id_state_next_attempt_at'), table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('accounts') as batch:
        for name in CHOICES:
            batch.drop_column(name)
