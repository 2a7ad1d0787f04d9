"""conditional writes: one live charge per stay or reservation, refunded
total on the charge, one open shift per person, sign-ins written, sign-in
throttle per client

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_payment', sa.String(length=80), nullable=True))
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_payment', sa.String(length=80), nullable=True))
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded', sa.Integer(), server_default='0', nullable=False))
    # What each charge's refunds already take back (pending or succeeded).
    op.execute(
        "UPDATE payments SET refunded = COALESCE((SELECT SUM(r.amount) FROM "
        "(SELECT refund_of, amount, status, kind FROM payments) r WHERE r.refund_of = payments.id "
        "AND r.kind = 'refund' AND r.status IN ('pending', 'succeeded')), 0) WHERE kind = 'charge'"
    )
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sign_in_at', Timestamp, nullable=True))
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('open_for', sa.BigInteger(), nullable=True))
    # Open shifts keep their owner; should a person have two open (the race
    # this closes), only the newest stays marked open for them.
    op.execute(
        "UPDATE shifts SET open_for = staff_id WHERE closed_at IS NULL AND id = "
        "(SELECT MAX(o.id) FROM (SELECT id, site_id, staff_id, closed_at FROM shifts) o "
        "WHERE o.site_id = shifts.site_id AND o.staff_id = shifts.staff_id AND o.closed_at IS NULL)"
    )
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_shifts_site_id_open_for'), ['site_id', 'open_for'])
    # Failed sign-ins are only a throttle's memory: the new key starts empty.
    op.drop_table('sign_in_throttle')
    op.create_table('sign_in_throttle',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', Timestamp, nullable=False),
    sa.Column('blocked_until', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('site_id', 'email', 'client', name=op.f('pk_sign_in_throttle'))
    )


def downgrade() -> None:
    op.drop_table('sign_in_throttle')
    op.create_table('sign_in_throttle',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', Timestamp, nullable=False),
    sa.Column('blocked_until', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('site_id', 'email', name=op.f('pk_sign_in_throttle'))
    )
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_shifts_site_id_open_for'), type_='unique')
        batch_op.drop_column('open_for')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('last_sign_in_at')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('refunded')
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_column('pending_payment')
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.drop_column('pending_payment')
