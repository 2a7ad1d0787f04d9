"""shifts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('shifts',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('staff_id', sa.BigInteger(), nullable=False),
    sa.Column('staff_name', sa.String(length=64), nullable=False),
    sa.Column('opened_at', Timestamp, nullable=False),
    sa.Column('float_amount', sa.Integer(), nullable=False),
    sa.Column('closed_at', Timestamp, nullable=True),
    sa.Column('counted_amount', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shifts'))
    )
    op.create_index(op.f('ix_shifts_site_id_closed_at'), 'shifts', ['site_id', 'closed_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_shifts_site_id_closed_at'), table_name='shifts')
    op.drop_table('shifts')
