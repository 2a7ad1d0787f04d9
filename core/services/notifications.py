"""Notices to drivers and to the attendant, each recorded once.

`plan_notifications` finds what is due now and writes one `notifications`
row per (kind, subject): the unique key is what stops a second worker, or
the same one a minute later, from planning it again. `deliver_notifications`
takes due rows one at a time with a lease (a conditional UPDATE), sends
them through their channel, and marks them sent, or to be retried with a
doubling delay, or failed after the last try (then the attendant is told).

What is due (all times from the site's clock):
- `reservation_soon`: a confirmed reservation starts within
  `worker.reservation_reminder_minutes` (30);
- `max_stay_soon`: a car reaches its max stay (or its reservation's end)
  within `worker.max_stay_reminder_minutes` (15);
- `overstay`: a car is still inside after that;
- `reservation_cancelled`: a reservation was cancelled, or released as a
  no-show, in the last day;
- `reservation_moved`: a reservation checked in to another spot than the
  one it had (its spot was still taken);
- `kiosk_silent`: a kiosk sent no heartbeat for
  `worker.heartbeat_missing_seconds` (once per silence).

Channels: `email` when SMTP is configured and the driver's account has an
email and wants that kind of notice; `attendant` (an alert event in the
console) for kiosk silences; `log` (a line in the worker's log) for a
driver notice when no SMTP server is configured. A driver without an
account gets no notice (the attendant sees overstays anyway).
Delivery is at least once: a worker that dies between sending and marking
leaves the lease to expire, and the next worker sends again.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind
from core.errors import InvalidInput, LotkeeperError, NotFound
from core.services.events import record_event
from core.services.reservations import reservation_of
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import Account, Device, Notification, Spot, Stay
from core.storage.models import Payment as PaymentRow
from core.storage.models import Reservation as ReservationRow
from core.tariff import format_money

log = logging.getLogger("lotkeeper.worker")

LEASE = timedelta(minutes=2)
CHANGES_LOOKBACK = timedelta(days=1)


class NoticeKind(enum.StrEnum):
    RESERVATION_SOON = "reservation_soon"
    MAX_STAY_SOON = "max_stay_soon"
    OVERSTAY = "overstay"
    RESERVATION_CANCELLED = "reservation_cancelled"
    RESERVATION_MOVED = "reservation_moved"
    KIOSK_SILENT = "kiosk_silent"


# The account's choice that governs each driver notice.
CHOICE = {
    NoticeKind.RESERVATION_SOON: "remind_reservation",
    NoticeKind.MAX_STAY_SOON: "remind_max_stay",
    NoticeKind.OVERSTAY: "notify_overstay",
    NoticeKind.RESERVATION_CANCELLED: "notify_changes",
    NoticeKind.RESERVATION_MOVED: "notify_changes",
}


@dataclass(frozen=True)
class Notice:
    id: int
    kind: NoticeKind
    subject: str
    channel: str  # email, attendant, log
    recipient: str
    payload: dict[str, Any]
    state: str  # pending, sent, failed
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str


@dataclass(frozen=True)
class Preferences:
    """Which notices an account wants by email."""

    remind_reservation: bool = True
    remind_max_stay: bool = True
    notify_overstay: bool = True
    notify_changes: bool = True


class DeliveryFailed(LotkeeperError):
    """A channel could not take a notice now (SMTP down, refused...)."""

    code = "delivery_failed"


def _notice(row: Notification) -> Notice:
    return Notice(
        id=row.id,
        kind=NoticeKind(row.kind),
        subject=row.subject,
        channel=row.channel,
        recipient=row.recipient,
        payload=json.loads(row.payload or "{}"),
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )


# -- preferences ------------------------------------------------------------------


def notification_preferences(site: Site, account_id: int) -> Preferences:
    row = site.db.read(lambda s: s.get(Account, account_id))
    if row is None or row.site_id != site.id:
        raise NotFound("That account does not exist.")
    return Preferences(
        row.remind_reservation, row.remind_max_stay, row.notify_overstay, row.notify_changes
    )


def set_notification_preferences(site: Site, account_id: int, **choices: bool) -> Preferences:
    """Turn notices on or off (`remind_reservation=False`, ...); the others
    stay as they were."""
    unknown = set(choices) - set(Preferences.__dataclass_fields__)
    if unknown:
        raise InvalidInput("Unknown notice choice: {choices}.", choices=", ".join(sorted(unknown)))

    def work(session: Session) -> None:
        changed = session.execute(
            update(Account)
            .where(Account.id == account_id, Account.site_id == site.id)
            .values(**{name: bool(value) for name, value in choices.items()})
        )
        if rows_touched(changed) != 1:
            raise NotFound("That account does not exist.")

    if choices:
        site.db.write(work)
    return notification_preferences(site, account_id)


# -- planning ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Due:
    """A notice that is due; `details` (who to tell, and what) is worked
    out only for one not recorded yet: most are, pass after pass."""

    kind: NoticeKind
    subject: str
    details: Callable[[], tuple[Account | None, dict[str, Any]]]


def _reservation_payload(site: Site, row: ReservationRow, spot: Spot) -> dict[str, Any]:
    booked = reservation_of(site, row, spot)
    return {
        "reservation_id": row.id,
        "code": booked.code,
        "short_code": booked.short_code,
        "spot": spot.label,
        "level": spot.level,
        "starts": site.describe_time(row.starts_at),
        "ends": site.describe_time(row.ends_at),
    }


def _booking_details(
    site: Site, row: ReservationRow, spot: Spot, account: Account, extra: dict[str, Any]
) -> tuple[Account | None, dict[str, Any]]:
    return account, _reservation_payload(site, row, spot) | extra


def _cancelled_details(
    session: Session, site: Site, row: ReservationRow, spot: Spot, account: Account
) -> tuple[Account | None, dict[str, Any]]:
    """A cancelled or released reservation, with what its cancel refunds
    (the refund it wrote, pending or sent)."""
    refund = session.scalar(
        select(func.coalesce(func.sum(PaymentRow.amount), 0)).where(
            PaymentRow.site_id == site.id,
            PaymentRow.reservation_id == row.id,
            PaymentRow.kind == "refund",
            PaymentRow.status.in_(["pending", "succeeded"]),
            PaymentRow.idempotency_key.like("%:cancel-refund"),
        )
    )
    extra = {
        "released": row.state == "no_show",
        "refund": format_money(int(refund or 0), row.currency) if refund else "",
    }
    return account, _reservation_payload(site, row, spot) | extra


def _no_account(payload: dict[str, Any]) -> tuple[Account | None, dict[str, Any]]:
    return None, payload


def _stay_account(session: Session, site: Site, stay: Stay) -> Account | None:
    """The account a car inside belongs to: its reservation's, or the one
    that added its ticket by code. Never the account a plate is registered
    to: anyone can register a plate, and the notice says where the car is."""
    if stay.account_id is not None:
        return session.get(Account, stay.account_id)
    return None


def _booked(
    session: Session, site: Site, *where: Any
) -> list[tuple[ReservationRow, Spot, Account]]:
    """Reservations matching `where`, with their spot and account."""
    rows = session.execute(
        select(ReservationRow, Spot, Account)
        .join(Spot, Spot.id == ReservationRow.spot_id)
        .join(Account, Account.id == ReservationRow.account_id)
        .where(ReservationRow.site_id == site.id, *where)
        .order_by(ReservationRow.starts_at)
        .limit(500)
    )
    return [(row, spot, account) for row, spot, account in rows]


def _due(session: Session, site: Site, now: datetime) -> list[_Due]:
    settings = site.settings.worker
    found: list[_Due] = []
    soon = now + timedelta(minutes=settings.reservation_reminder_minutes)
    for row, spot, account in _booked(
        session,
        site,
        ReservationRow.state == "confirmed",
        ReservationRow.starts_at > now,
        ReservationRow.starts_at <= soon,
    ):
        found.append(
            _Due(
                NoticeKind.RESERVATION_SOON,
                f"reservation {row.id}",
                partial(_booking_details, site, row, spot, account, {}),
            )
        )

    # Cars due out within the reminder time, or out of time for less than a
    # day (older overstays were told then; the attendant has them anyway).
    ending = now + timedelta(minutes=settings.max_stay_reminder_minutes)
    since = now - CHANGES_LOOKBACK
    for stay, spot in session.execute(
        select(Stay, Spot)
        .join(Spot, Spot.id == Stay.spot_id)
        .where(
            Stay.site_id == site.id,
            Stay.exited_at.is_(None),
            Stay.max_stay_until <= ending,
            Stay.max_stay_until > since,
        )
        .order_by(Stay.max_stay_until)
        .limit(500)
    ):
        kind = NoticeKind.OVERSTAY if stay.max_stay_until <= now else NoticeKind.MAX_STAY_SOON

        def car(stay: Stay = stay, spot: Spot = spot) -> tuple[Account | None, dict[str, Any]]:
            # No account: nobody to tell (the attendant sees overstays anyway).
            return _stay_account(session, site, stay), {
                "ticket_id": stay.id,
                "spot": spot.label,
                "level": spot.level,
                "plate": stay.plate or "",
                "until": site.describe_time(stay.max_stay_until),
            }

        found.append(_Due(kind, f"stay {stay.id}", car))

    # Only reservations that were paid for: a hold cancelled or abandoned
    # before paying held nothing of the driver's, so there is nothing to say.
    for row, spot, account in _booked(
        session,
        site,
        ReservationRow.state.in_(["cancelled", "no_show"]),
        ReservationRow.confirmed_at.is_not(None),
        ReservationRow.starts_at > since,
        or_(ReservationRow.cancelled_at.is_(None), ReservationRow.cancelled_at > since),
    ):
        found.append(
            _Due(
                NoticeKind.RESERVATION_CANCELLED,
                f"reservation {row.id}",
                partial(_cancelled_details, session, site, row, spot, account),
            )
        )

    moved_to = Spot.__table__.alias("moved_to")
    for row, spot, account, label in session.execute(
        select(ReservationRow, Spot, Account, moved_to.c.label)
        .join(Spot, Spot.id == ReservationRow.spot_id)
        .join(Account, Account.id == ReservationRow.account_id)
        .join(Stay, Stay.id == ReservationRow.stay_id)
        .join(moved_to, moved_to.c.id == Stay.spot_id)
        .where(
            ReservationRow.site_id == site.id,
            ReservationRow.state == "checked_in",
            ReservationRow.checked_in_at > since,
            Stay.spot_id != ReservationRow.spot_id,
        )
        .limit(500)
    ):
        found.append(
            _Due(
                NoticeKind.RESERVATION_MOVED,
                f"reservation {row.id}",
                partial(_booking_details, site, row, spot, account, {"moved_to": label}),
            )
        )

    quiet_since = now - timedelta(seconds=settings.heartbeat_missing_seconds)
    for device in session.scalars(
        select(Device).where(Device.site_id == site.id, Device.last_seen_at < quiet_since)
    ):
        # Once per silence: a kiosk that comes back and goes quiet again is
        # a new subject (its last heartbeat differs).
        subject = f"{device.device_id} {int(device.last_seen_at.timestamp())}"[:64]
        payload = {"device": device.device_id, "since": site.describe_time(device.last_seen_at)}
        found.append(_Due(NoticeKind.KIOSK_SILENT, subject, partial(_no_account, payload)))
    return found


def plan_notifications(site: Site) -> list[Notice]:
    """Record every notice that is due now and not yet recorded; returns the
    new ones. Safe to run from any number of workers at once."""
    smtp = site.settings.smtp.configured

    def work(session: Session) -> list[Notification]:
        now = site.clock.now()
        due = _due(session, site, now)
        if not due:
            return []
        taken: set[tuple[str, str]] = set(
            (kind, subject)
            for kind, subject in session.execute(
                select(Notification.kind, Notification.subject).where(
                    Notification.site_id == site.id,
                    or_(
                        *(
                            and_(Notification.kind == d.kind, Notification.subject == d.subject)
                            for d in due
                        )
                    ),
                )
            )
        )
        rows = []
        for item in due:
            if (item.kind.value, item.subject) in taken:
                continue
            taken.add((item.kind.value, item.subject))
            account, payload = item.details()
            if item.kind is NoticeKind.KIOSK_SILENT:
                channel, recipient = "attendant", ""
            elif account is None or not getattr(account, CHOICE[item.kind]):
                continue  # no one to tell, or they said no
            else:
                channel, recipient = ("email" if smtp else "log"), account.email
            row = Notification(
                site_id=site.id,
                kind=item.kind.value,
                subject=item.subject,
                channel=channel,
                recipient=recipient,
                account_id=account.id if account is not None else None,
                payload=json.dumps(
                    payload | ({"name": account.name} if account is not None else {})
                ),
                state="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                last_error="",
            )
            session.add(row)
            rows.append(row)
        # A worker that raced us to one of these gets a duplicate key here;
        # the unit of work reruns and sees their rows.
        session.flush()
        return rows

    return [_notice(row) for row in site.db.write(work)]


# -- delivery ---------------------------------------------------------------------

Sender = Callable[[Notice], None]
"""Sends one notice by email, or raises `DeliveryFailed`."""


# The write that decides who sends a notice: a pending one whose lease is
# free or ran out; two workers reading the same due notice lease it once.
_LEASE = (
    update(Notification)
    .where(
        Notification.id == bindparam("b_id"),
        Notification.state == "pending",
        or_(Notification.lease_until.is_(None), Notification.lease_until < bindparam("now")),
    )
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
)


def _take(site: Site, owner: str, limit: int) -> list[Notification]:
    """Lease up to `limit` due notices to `owner`."""

    def work(session: Session) -> list[Notification]:
        now = site.clock.now()
        ids = session.scalars(
            select(Notification.id)
            .where(
                Notification.site_id == site.id,
                Notification.state == "pending",
                Notification.next_attempt_at <= now,
                or_(Notification.lease_until.is_(None), Notification.lease_until < now),
            )
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(limit)
        ).all()
        mine = []
        for notice_id in ids:
            leased = session.execute(
                _LEASE, {"b_id": notice_id, "now": now, "owner": owner, "until": now + LEASE}
            )
            if rows_touched(leased) == 1:
                mine.append(session.get_one(Notification, notice_id))
        return mine

    return site.db.write(work)


def _finish(site: Site, notice: Notice, owner: str, error: str | None) -> str:
    """Mark a leased notice sent, to retry, or failed; returns which."""
    settings = site.settings.worker

    def work(session: Session) -> str:
        now = site.clock.now()
        attempts = notice.attempts + 1
        mine = (Notification.id == notice.id, Notification.lease_owner == owner)
        if error is None:
            values: dict[str, Any] = {"state": "sent", "sent_at": now}
            outcome = "sent"
        elif attempts >= settings.delivery_attempts:
            values, outcome = {"state": "failed"}, "failed"
        else:
            delay = timedelta(seconds=settings.retry_seconds * 2 ** (attempts - 1))
            values, outcome = {"next_attempt_at": now + delay}, "retry"
        values |= {"attempts": attempts, "lease_owner": None, "lease_until": None}
        if error is not None:
            values["last_error"] = error[:255]
        if rows_touched(session.execute(update(Notification).where(*mine).values(**values))) != 1:
            return "lost"  # the lease ran out and another worker has it
        if outcome == "sent" and notice.channel == "attendant":
            record_event(
                session,
                site.id,
                now,
                EventKind.DEVICE_FAULT,
                describe(notice, site)[1][:255],
                source="worker",
                data={"alert": True, "notification": notice.id, **notice.payload},
            )
        if outcome == "failed":
            record_event(
                session,
                site.id,
                now,
                EventKind.DEVICE_FAULT,
                f"Could not send {notice.kind.value.replace('_', ' ')} to "
                f"{notice.recipient or 'the attendant'} after {attempts} tries: {error}"[:255],
                source="worker",
                data={"alert": True, "notification": notice.id, "component": "notifications"},
            )
        return outcome

    return site.db.write(work)


def _release(site: Site, notices: list[Notification], owner: str) -> None:
    ids = [n.id for n in notices]
    if ids:
        site.db.write(
            lambda s: s.execute(
                update(Notification)
                .where(Notification.id.in_(ids), Notification.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
        )


def describe(notice: Notice, site: Site) -> tuple[str, str]:
    """(subject line, plain text) of a notice, for an email or a log line."""
    p = notice.payload
    greeting = f"Hello {p['name']},\n\n" if p.get("name") else ""
    match notice.kind:
        case NoticeKind.RESERVATION_SOON:
            return (
                f"Your parking at {site.name} starts at {p['starts']}",
                f"{greeting}your reservation {p['short_code']} starts at {p['starts']}: "
                f"spot {p['spot']} ({p['level']}) is kept for you until {p['ends']}.\n"
                "Show the QR code (or type the code) at the entry kiosk.",
            )
        case NoticeKind.MAX_STAY_SOON:
            return (
                f"Your parking time ends at {p['until']}",
                f"{greeting}your car{' ' + p['plate'] if p.get('plate') else ''} in spot "
                f"{p['spot']} (ticket {p['ticket_id']}) may stay until {p['until']}. "
                "Please pay and leave by then; after that the stay counts as an overstay.",
            )
        case NoticeKind.OVERSTAY:
            return (
                "Your car is past its parking time",
                f"{greeting}your car{' ' + p['plate'] if p.get('plate') else ''} in spot "
                f"{p['spot']} (ticket {p['ticket_id']}) was due to leave by {p['until']}. "
                "Please collect it; the attendant has been told.",
            )
        case NoticeKind.RESERVATION_CANCELLED:
            why = (
                "was released because the car did not arrive in time"
                if p.get("released")
                else "was cancelled"
            )
            if p.get("released"):
                money = ""  # a no-show keeps its price (the tariff's rule)
            elif p.get("refund"):
                money = f" {p['refund']} is refunded to the card you paid with."
            else:
                money = " No refund is due for this cancellation."
            return (
                f"Reservation {p['short_code']} {why.split(' because')[0]}",
                f"{greeting}your reservation {p['short_code']} for {p['starts']} {why}.{money}",
            )
        case NoticeKind.RESERVATION_MOVED:
            return (
                f"Reservation {p['short_code']}: your spot is {p['moved_to']}",
                f"{greeting}your reserved spot {p['spot']} was still taken, so your "
                f"reservation {p['short_code']} was moved to spot {p['moved_to']}.",
            )
        case NoticeKind.KIOSK_SILENT:
            return (
                f"{p['device']} is silent",
                f"{p['device']}: no heartbeat since {p['since']}; check the kiosk.",
            )
    raise AssertionError(notice.kind)  # pragma: no cover


def deliver_notifications(
    site: Site,
    owner: str,
    send_email: Sender | None,
    *,
    limit: int = 50,
    stopping: Callable[[], bool] = lambda: False,
) -> list[tuple[Notice, str]]:
    """Send the due notices (up to `limit`), each through its channel;
    returns (notice, outcome) with outcome "sent", "retry", "failed" or
    "lost". A failure is retried later and never stops the others. When
    `stopping()` turns true, the notices not yet tried are handed back."""
    taken = _take(site, owner, limit)
    done: list[tuple[Notice, str]] = []
    email_down = False
    for index, row in enumerate(taken):
        if stopping():
            _release(site, taken[index:], owner)
            break
        notice = _notice(row)
        if email_down and notice.channel == "email":
            # The server just failed: the rest wait for the next pass
            # rather than each waiting out the SMTP timeout now.
            _release(site, [row], owner)
            continue
        error = None
        try:
            if notice.channel == "email":
                if send_email is None:
                    raise DeliveryFailed("no SMTP server is configured for this worker")
                send_email(notice)
            elif notice.channel == "log":
                headline = describe(notice, site)[0]
                log.info("notice for %s (no email configured): %s", notice.recipient, headline)
            # "attendant": the alert event is written as the notice is marked sent.
        except LotkeeperError as failure:
            error = str(failure)
            email_down = notice.channel == "email"
        done.append((notice, _finish(site, notice, owner, error)))
    return done


def list_notifications(site: Site, limit: int = 100) -> list[Notice]:
    """The newest notices first (for the CLI and tests)."""

    def work(session: Session) -> list[Notice]:
        rows = session.scalars(
            select(Notification)
            .where(Notification.site_id == site.id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
        return [_notice(row) for row in rows]

    return site.db.read(work)
