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
        # Cars still inside, and among them those past their claim (overstays).
        Index(None, "site_id", "exited_at", "max_stay_until"),
        Index(None, "site_id", "plate"),
        Index(None, "site_id", "spot_id", "exited_at"),
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
    reservation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # What the ledger says was paid for this stay, and until when the driver
    # may exit without paying more (paid_at + the tariff's exit grace).
    paid_amount: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    paid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A reservation's stay is prepaid until the reservation ends: parking is
    # billed from then on.
    billed_from: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lost_ticket: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Set once, by a conditional UPDATE, when the overstay event is raised.
    overstay_noted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The idempotency key of the one charge being taken for this stay now:
    # set by the conditional UPDATE that decides a charge may start (`...
    # AND pending_payment IS NULL AND paid_amount = :seen`), cleared when it
    # settles. At most one live charge per stay, decided by this row.
    pending_payment: Mapped[str | None] = mapped_column(String(80), nullable=True)


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


class Account(Base):
    """A driver's account. `email` is stored lower-cased; the password only
    as an Argon2id hash."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("site_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Which notices the driver wants by email (all, unless they say no).
    remind_reservation: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    remind_max_stay: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    notify_overstay: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    notify_changes: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class SignInThrottle(Base):
    """Failed sign-ins per email (known or not, so both answer alike) and
    client (an address, or a kiosk), so that a stranger's failures from
    elsewhere never lock the owner out."""

    __tablename__ = "sign_in_throttle"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Vehicle(Base):
    """A car registered to an account. A plate belongs to one account at a
    time (the unique key decides)."""

    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("site_id", "plate"), Index(None, "site_id", "account_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    plate: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Reservation(Base):
    """An advance booking. Its claim is a `hold` until paid, then a
    `reservation`; `state` moves held -> confirmed -> checked_in, or to
    expired, cancelled or no_show, each by a conditional UPDATE."""

    __tablename__ = "reservations"
    __table_args__ = (
        Index(None, "site_id", "account_id", "starts_at"),
        Index(None, "site_id", "state", "starts_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), unique=True)
    spot_id: Mapped[int] = mapped_column(ForeignKey("spots.id"))
    car_size: Mapped[int] = mapped_column(SmallInteger)
    plate: Mapped[str | None] = mapped_column(String(16), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(12))
    hold_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    price: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    key_id: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stay_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The one charge being taken for this reservation now (see Stay): a hold
    # with a payment in flight is never expired under it.
    pending_payment: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The spot feature the driver asked for ("accessible", "ev"), if any: a
    # spot found again for this reservation must have it too.
    need: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Payment(Base):
    """The ledger: one row per attempt to take or give back money, written
    and committed before the provider is called, with the key the provider
    gets. Only a `pending` row changes, once, to its final status."""

    __tablename__ = "payments"
    __table_args__ = (
        Index(None, "site_id", "status", "created_at"),
        Index(None, "site_id", "account_id", "created_at"),
        Index(None, "site_id", "stay_id"),
        Index(None, "site_id", "reservation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # charge | refund
    purpose: Mapped[str] = mapped_column(String(16))  # stay | lost_ticket | reservation
    refund_of: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stay_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reservation_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(8))  # card | cash | waiver | discount
    provider: Mapped[str] = mapped_column(String(24))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12))
    provider_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    card_brand: Mapped[str | None] = mapped_column(String(24), nullable=True)
    card_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(48), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # On a charge: what its refunds (pending or succeeded) take back. Raised
    # by `UPDATE ... WHERE refunded + :amount <= amount`, so two consoles can
    # never refund more than was charged.
    refunded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SimulatedCharge(Base):
    """The simulated provider's own books, kept apart from the ledger (its
    own transactions) so that a crash between the two looks like one with a
    real provider, and the reconciler can be shown to work."""

    __tablename__ = "simulated_charges"

    idempotency_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    card: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(12))
    refunded: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Plain tables for the hot path: Core statements on these skip the ORM's
# bulk-DML machinery, which costs more than the round trip itself.
spots_table = cast(Table, Spot.__table__)
claims_table = cast(Table, Claim.__table__)
stays_table = cast(Table, Stay.__table__)
events_table = cast(Table, EventRow.__table__)
accounts_table = cast(Table, Account.__table__)
reservations_table = cast(Table, Reservation.__table__)
payments_table = cast(Table, Payment.__table__)
signing_keys_table = cast(Table, SigningKey.__table__)


class Device(Base):
    """Each kiosk's last heartbeat: what its printer and card reader said.
    One row per device, updated in place; changes of health are events."""

    __tablename__ = "devices"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    ok: Mapped[bool] = mapped_column(Boolean)
    # {"printer": "paper low", "reader": "online", ...}, as JSON.
    components: Mapped[str] = mapped_column(Text)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StaffMember(Base):
    """An attendant or supervisor. Only a hash of the PIN is stored (Argon2id,
    as for driver passwords)."""

    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    pin_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Written by every sign-in (`... WHERE disabled_at IS NULL`): a sign-in
    # and a disable decide on the same row, so one wins.
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRow(Base):
    """What staff did, append-only: each row's hash covers its content and
    the previous row's hash, so an edited or deleted row breaks the chain."""

    __tablename__ = "audit_log"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    staff_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    staff_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(255), default="")
    data: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest row of each site's audit chain. Moved by a conditional
    UPDATE in the same transaction as the row it points at: two writers can
    never both extend the chain from the same row, and a deleted tail row
    no longer matches the head."""

    __tablename__ = "audit_heads"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Shift(Base):
    """An attendant's shift at the booth: the cash float it opened with and
    the cash counted at its close."""

    __tablename__ = "shifts"
    __table_args__ = (
        Index(None, "site_id", "closed_at"),
        UniqueConstraint("site_id", "open_for"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    staff_id: Mapped[int] = mapped_column(BigInteger)
    staff_name: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    float_amount: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    counted_amount: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The staff id while the shift is open, NULL once closed: the unique key
    # allows one open shift per person however many consoles open one.
    open_for: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Notification(Base):
    """One notice, recorded once: the unique key (site, kind, subject) is
    what stops two workers, or one worker twice, from sending it again.
    `state` goes pending -> sent, or -> failed after the last try; a worker
    takes a row by moving `lease_until` forward with a conditional UPDATE."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("site_id", "kind", "subject"),
        Index(None, "site_id", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))  # "reservation 7", "stay 42"
    channel: Mapped[str] = mapped_column(String(16))  # email, attendant, log
    recipient: Mapped[str] = mapped_column(String(254), default="")
    account_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(String(255), default="")


class WorkerJob(Base):
    """A scheduled job of the site's worker: who runs it now (a lease taken
    by a conditional UPDATE, so two workers never run the same job at
    once) and when it last finished."""

    __tablename__ = "worker_jobs"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_result: Mapped[str] = mapped_column(String(255), default="")


class ApiToken(Base):
    """A signed-in API client: only the SHA-256 of its bearer token is
    kept. It stops working when it expires or is revoked (sign-out)."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index(None, "site_id", "account_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class IdempotentRequest(Base):
    """A write sent with an Idempotency-Key: the first request's answer,
    returned again for a replay. `status` is 0 while the first one runs."""

    __tablename__ = "idempotent_requests"

    site_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "account 7", "anonymous"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # method, path and body
    status: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


ALERT_KEY_CHARS = 191
"""A key fits the unique index on every engine (191 utf8mb4 characters)."""


class AlertAck(Base):
    """An alert an attendant has seen, in the state it was in: a standing
    alert (a kiosk silent since one heartbeat, a part faulty since one
    moment, an overstay) or an alert event. One row per alert key, kept by
    the UNIQUE index (site_id, alert_key): a second console acknowledging it
    at the same moment inserts nothing. A changed state is a new key, so the
    alert raises again. A unique index, not a table constraint, so the race
    test's plant can drop it on SQLite too."""

    __tablename__ = "alert_acks"
    __table_args__ = (
        Index("uq_alert_acks_site_id_alert_key", "site_id", "alert_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(32))
    alert_key: Mapped[str] = mapped_column(String(ALERT_KEY_CHARS))
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    staff_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    staff_name: Mapped[str] = mapped_column(String(64))


class MigrationLock(Base):
    """The guard that lets one `lotkeeper db upgrade` run at a time, on any
    node of a cluster. No `site_id`: the schema it guards is shared by every
    site in the database (like Alembic's own `alembic_version`). Not made by
    a migration: `core.storage.migrate` creates it (CREATE TABLE IF NOT
    EXISTS) before it migrates, so it is there on an empty database too."""

    __tablename__ = "migration_lock"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(191), nullable=True)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
