"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('at', Timestamp, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('spot_id', sa.BigInteger(), nullable=True),
    sa.Column('spot_label', sa.String(length=32), nullable=True),
    sa.Column('stay_id', sa.BigInteger(), nullable=True),
    sa.Column('message', sa.String(length=255), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_site_id_id'), ['site_id', 'id'], unique=False)

    op.create_table('signing_keys',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('key_id', sa.String(length=8), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('retired_at', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('site_id', 'key_id', name=op.f('pk_signing_keys'))
    )
    op.create_table('spots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=32), nullable=False),
    sa.Column('level_order', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('size', sa.SmallInteger(), nullable=False),
    sa.Column('accessible', sa.Boolean(), nullable=False),
    sa.Column('ev', sa.Boolean(), nullable=False),
    sa.Column('out_of_service', sa.Boolean(), nullable=False),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spots')),
    sa.UniqueConstraint('site_id', 'label', name=op.f('uq_spots_site_id_label'))
    )
    op.create_table('claims',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('spot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('starts_at', Timestamp, nullable=False),
    sa.Column('ends_at', Timestamp, nullable=False),
    sa.Column('expires_at', Timestamp, nullable=True),
    sa.Column('cancelled_at', Timestamp, nullable=True),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.ForeignKeyConstraint(['spot_id'], ['spots.id'], name=op.f('fk_claims_spot_id_spots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claims'))
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claims_site_id_ends_at'), ['site_id', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_claims_site_id_spot_id_ends_at'), ['site_id', 'spot_id', 'ends_at'], unique=False)

    op.create_table('stays',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('claim_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('spot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('car_size', sa.SmallInteger(), nullable=False),
    sa.Column('plate', sa.String(length=16), nullable=True),
    sa.Column('key_id', sa.String(length=8), nullable=False),
    sa.Column('entered_at', Timestamp, nullable=False),
    sa.Column('max_stay_until', Timestamp, nullable=False),
    sa.Column('entry_kiosk', sa.String(length=64), nullable=False),
    sa.Column('exited_at', Timestamp, nullable=True),
    sa.Column('exit_kiosk', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], name=op.f('fk_stays_claim_id_claims')),
    sa.ForeignKeyConstraint(['spot_id'], ['spots.id'], name=op.f('fk_stays_spot_id_spots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stays')),
    sa.UniqueConstraint('claim_id', name=op.f('uq_stays_claim_id'))
    )
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stays_site_id_exited_at'), ['site_id', 'exited_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stays_site_id_plate'), ['site_id', 'plate'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('stays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stays_site_id_plate'))
        batch_op.drop_index(batch_op.f('ix_stays_site_id_exited_at'))

    op.drop_table('stays')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claims_site_id_spot_id_ends_at'))
        batch_op.drop_index(batch_op.f('ix_claims_site_id_ends_at'))

    op.drop_table('claims')
    op.drop_table('spots')
    op.drop_table('signing_keys')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_site_id_id'))

    op.drop_table('events')
