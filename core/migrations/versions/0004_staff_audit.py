"""staff and the hash-chained audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('pin_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('disabled_at', Timestamp, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('site_id', 'name', name=op.f('uq_staff_site_id_name'))
    )
    op.create_table('audit_log',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', Timestamp, nullable=False),
    sa.Column('staff_id', sa.BigInteger(), nullable=True),
    sa.Column('staff_name', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('site_id', 'seq', name=op.f('pk_audit_log'))
    )
    op.create_table('audit_heads',
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('site_id', name=op.f('pk_audit_heads'))
    )


def downgrade() -> None:
    op.drop_table('audit_heads')
    op.drop_table('audit_log')
    op.drop_table('staff')
