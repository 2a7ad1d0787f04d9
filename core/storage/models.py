"""Tables. Every table carries `site_id`, and every query the engine runs goes
by primary key or by an index that starts with `site_id`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds; always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SigningKey(Base):
    """Ticket signing keys. Only a salt is stored: the key itself is derived
    from the site's master secret, which lives in config, not in the database."""

    __tablename__ = "signing_keys"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Spot(Base):
    __tablename__ = "spots"
    __table_args__ = (UniqueConstraint("site_id", "label"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(32))
    level_order: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(SmallInteger)
    accessible: Mapped[bool] = mapped_column(Boolean, default=False)
    ev: Mapped[bool] = mapped_column(Boolean, default=False)
    out_of_service: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped whenever a claim is added (take_spot locks the row this way) or
    # the spot changes, so a layout load can tell that it raced with either.
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class Claim(Base):
    """One use of a spot over time: [starts_at, ends_at) of a kind.

    Live = not cancelled, and (for holds) not past `expires_at`. No two live
    claims on one spot overlap."""

    __tablename__ = "claims"
    __table_args__ = (
        Index(None, "site_id", "ends_at"),
        Index(None, "site_id", "spot_id", "ends_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    spot_id: Mapped[int] = mapped_column(ForeignKey("spots.id"))
    kind: Mapped[str] = mapped_column(String(12))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Stay(Base):
    """A car inside: the ticket. `exited_at` is set once, by a conditional
    UPDATE, which is what stops a ticket from opening the gate twice."""

    __tablename__ = "stays"
    __table_args__ = (
        Index(None, "site_id", "exited_at"),
        Index(None, "site_id", "plate"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), unique=True)
    spot_id: Mapped[int] = mapped_column(ForeignKey("spots.id"))
    car_size: Mapped[int] = mapped_column(SmallInteger)
    plate: Mapped[str | None] = mapped_column(String(16), nullable=True)
    key_id: Mapped[str] = mapped_column(String(8))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    max_stay_until: Mapped[datetime] = mapped_column(UTCDateTime())
    entry_kiosk: Mapped[str] = mapped_column(String(64), default="")
    exited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    exit_kiosk: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EventRow(Base):
    """Append-only log: entry/exit log, audit trail and feed for live views."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "site_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64), default="")
    spot_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    spot_label: Mapped[str | None] = mapped_column(String(32), nullable=True)
    stay_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(String(255), default="")
    data: Mapped[str] = mapped_column(Text, default="{}")


# Plain tables for the hot path: Core statements on these skip the ORM's
# bulk-DML machinery, which costs more than the round trip itself.
spots_table = cast(Table, Spot.__table__)
claims_table = cast(Table, Claim.__table__)
stays_table = cast(Table, Stay.__table__)
events_table = cast(Table, EventRow.__table__)
