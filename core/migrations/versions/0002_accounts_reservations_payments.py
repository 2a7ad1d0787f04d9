"""accounts reservations payments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('password_changed_at', Timestamp, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('site_id', 'email', name=op.f('uq_accounts_site_id_email'))
    )
    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('refund_of', sa.BigInteger(), nullable=True),
    sa.Column('stay_id', sa.BigInteger(), nullable=True),
    sa.Column('reservation_id', sa.BigInteger(), nullable=True),
    sa.Column('account_id', sa.BigInteger(), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('provider', sa.String(length=24), nullable=False),
    sa.Column('simulated', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('provider_ref', sa.String(length=64), nullable=True),
    sa.Column('card_brand', sa.String(length=24), nullable=True),
    sa.Column('card_last4', sa.String(length=4), nullable=True),
    sa.Column('failure_code', sa.String(length=48), nullable=True),
    sa.Column('failure_message', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('settled_at', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_payments_idempotency_key'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_site_id_account_id_created_at'), ['site_id', 'account_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_site_id_reservation_id'), ['site_id', 'reservation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_site_id_status_created_at'), ['site_id', 'status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_site_id_stay_id'), ['site_id', 'stay_id'], unique=False)

    op.create_table('sign_in_throttle',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', Timestamp, nullable=False),
    sa.Column('blocked_until', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('site_id', 'email', name=op.f('pk_sign_in_throttle'))
    )
    op.create_table('simulated_charges',
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('ref', sa.String(length=40), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('refunded', sa.Integer(), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.PrimaryKeyConstraint('idempotency_key', name=op.f('pk_simulated_charges')),
    sa.UniqueConstraint('ref', name=op.f('uq_simulated_charges_ref'))
    )
    op.create_table('vehicles',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plate', sa.String(length=16), nullable=False),
    sa.Column('size', sa.SmallInteger(), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_vehicles_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vehicles')),
    sa.UniqueConstraint('site_id', 'plate', name=op.f('uq_vehicles_site_id_plate'))
    )
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vehicles_site_id_account_id'), ['site_id', 'account_id'], unique=False)

    op.create_table('reservations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('claim_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('spot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('car_size', sa.SmallInteger(), nullable=False),
    sa.Column('plate', sa.String(length=16), nullable=True),
    sa.Column('starts_at', Timestamp, nullable=False),
    sa.Column('ends_at', Timestamp, nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('hold_expires_at', Timestamp, nullable=False),
    sa.Column('price', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('key_id', sa.String(length=8), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('confirmed_at', Timestamp, nullable=True),
    sa.Column('cancelled_at', Timestamp, nullable=True),
    sa.Column('checked_in_at', Timestamp, nullable=True),
    sa.Column('stay_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_reservations_account_id_accounts')),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], name=op.f('fk_reservations_claim_id_claims')),
    sa.ForeignKeyConstraint(['spot_id'], ['spots.id'], name=op.f('fk_reservations_spot_id_spots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservations')),
    sa.UniqueConstraint('claim_id', name=op.f('uq_reservations_claim_id'))
    )
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reservations_site_id_account_id_starts_at'), ['site_id', 'account_id', 'starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_reservations_site_id_state_starts_at'), ['site_id', 'state', 'starts_at'], unique=False)

    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reservation_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('account_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('paid_amount', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('paid_until', Timestamp, nullable=True))
        batch_op.add_column(sa.Column('billed_from', Timestamp, nullable=True))
        batch_op.add_column(sa.Column('lost_ticket', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('overstay_noted_at', Timestamp, nullable=True))
        batch_op.drop_index(batch_op.f('ix_stays_site_id_exited_at'))
        batch_op.create_index(batch_op.f('ix_stays_site_id_exited_at_max_stay_until'), ['site_id', 'exited_at', 'max_stay_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_stays_site_id_spot_id_exited_at'), ['site_id', 'spot_id', 'exited_at'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stays_site_id_spot_id_exited_at'))
        batch_op.drop_index(batch_op.f('ix_stays_site_id_exited_at_max_stay_until'))
        batch_op.create_index(batch_op.f('ix_stays_site_id_exited_at'), ['site_id', 'exited_at'], unique=False)
        batch_op.drop_column('billed_from')
        batch_op.drop_column('overstay_noted_at')
        batch_op.drop_column('lost_ticket')
        batch_op.drop_column('paid_until')
        batch_op.drop_column('paid_amount')
        batch_op.drop_column('account_id')
        batch_op.drop_column('reservation_id')

    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reservations_site_id_state_starts_at'))
        batch_op.drop_index(batch_op.f('ix_reservations_site_id_account_id_starts_at'))

    op.drop_table('reservations')
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vehicles_site_id_account_id'))

    op.drop_table('vehicles')
    op.drop_table('simulated_charges')
    op.drop_table('sign_in_throttle')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_site_id_stay_id'))
        batch_op.drop_index(batch_op.f('ix_payments_site_id_status_created_at'))
        batch_op.drop_index(batch_op.f('ix_payments_site_id_reservation_id'))
        batch_op.drop_index(batch_op.f('ix_payments_site_id_account_id_created_at'))

    op.drop_table('payments')
    op.drop_table('accounts')
