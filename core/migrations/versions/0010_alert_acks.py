"""alerts acknowledged at the console, kept in the database (shared by every
console, kept across restarts), one row per alert and state

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-12

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# Naive UTC with microseconds (core.storage.models.UTCDateTime).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('alert_acks',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=32), nullable=False),
    sa.Column('alert_key', sa.String(length=191), nullable=False),
    sa.Column('acknowledged_at', Timestamp, nullable=False),
    sa.Column('staff_id', sa.BigInteger(), nullable=True),
    sa.Column('staff_name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_acks'))
    )
    # An index, not a table constraint: the same on both engines, and the
    # race test can drop it to show what it decides.
    op.create_index('uq_alert_acks_site_id_alert_key', 'alert_acks', ['site_id', 'alert_key'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_alert_acks_site_id_alert_key', table_name='alert_acks')
    op.drop_table('alert_acks')
