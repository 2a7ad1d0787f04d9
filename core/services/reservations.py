"""Advance reservations: quote, hold (5 minutes while paying), confirm on
payment, cancel with the tariff's refund rule, check in at the entry, and
release of no-shows.

A reservation owns one claim on its spot: a `hold` that expires
`HOLD_MINUTES` after it was made, turned into a `reservation` claim when the
payment succeeds. Both go through `take_spot` like every claim, so a walk-in
can never take a spot a confirmed reservation needs. Every state change is a
conditional UPDATE on the reservation row (`... WHERE state = 'held'`), so
two kiosks, the worker and the payment reconciler can race on one
reservation and exactly one of them wins.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from core.allocation import SpotRow
from core.domain import (
    ClaimKind,
    EventKind,
    Need,
    Page,
    Payment,
    PaymentPurpose,
    Size,
    Ticket,
    normalize_plate,
)
from core.errors import (
    InvalidInput,
    NotFound,
    RefundRefused,
    ReservationError,
    TicketError,
    TicketSignatureInvalid,
    TicketUnknown,
    WrongKindOfCode,
)
from core.payments.provider import PaymentStatus
from core.services.claims import claim_best_spot, take_spot
from core.services.entry import make_ticket, record_rejection, source_name, stay_steps
from core.services.events import record_event
from core.services.keys import key_in_use
from core.services.payments import (
    claim_payment_intent,
    on_settled,
    record_refund,
    send_refund,
    start_payment,
)
from core.services.stays import StayStatus, stay_status
from core.site import Site
from core.storage.batch import Step
from core.storage.database import Conflict, rows_touched
from core.storage.models import (
    Account,
    Claim,
    Spot,
    Stay,
    reservations_table,
)
from core.storage.models import Payment as PaymentRow
from core.storage.models import Reservation as ReservationRow
from core.tariff import Quote, format_money
from core.ticket_codes import RESERVATION, ShortCode, SignedCode, parse_code

HOLD_MINUTES = 5
R = reservations_table.c
MAX_ADVANCE = timedelta(days=90)


class ReservationState(enum.StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


@dataclass(frozen=True)
class Reservation:
    id: int
    account_id: int
    state: ReservationState
    size: Size
    spot_label: str
    level: str
    starts_at: datetime
    ends_at: datetime
    hold_expires_at: datetime
    price: int
    currency: str
    code: str  # the signed code for the QR
    short_code: str  # what a driver types
    plate: str | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    cancelled_at: datetime | None = None
    checked_in_at: datetime | None = None
    stay_id: int | None = None
    need: Need | None = None  # the spot feature the driver asked for


@dataclass(frozen=True)
class Cancellation:
    reservation: Reservation
    refund: Payment | None  # None when nothing was paid or nothing is refunded
    refund_amount: int


def shown_state(row: ReservationRow, now: datetime) -> ReservationState:
    """The state a reservation is in as of `now`: a hold whose 5 minutes ran
    out with no payment in flight is expired, whether or not the worker has
    written it yet (its claim is already free)."""
    state = ReservationState(row.state)
    if (
        state is ReservationState.HELD
        and row.hold_expires_at <= now
        and row.pending_payment is None
    ):
        return ReservationState.EXPIRED
    return state


def reservation_of(site: Site, row: ReservationRow, spot: Spot) -> Reservation:
    """The view of a reservation row, with its codes signed again."""
    keyring = site.keyring()
    if row.key_id not in keyring.keys:
        keyring = site.keyring(refresh=True)
    code = short = ""  # signed with a key retired since: it can no longer be used
    if row.key_id in keyring.keys:
        issued = int(row.created_at.timestamp())
        code = keyring.code_for(row.key_id, row.id, issued, RESERVATION).text
        short = keyring.short_code(row.key_id, row.id, RESERVATION).text
    return Reservation(
        id=row.id,
        account_id=row.account_id,
        state=shown_state(row, site.clock.now()),
        size=Size(row.car_size),
        spot_label=spot.label,
        level=spot.level,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        hold_expires_at=row.hold_expires_at,
        price=row.price,
        currency=row.currency,
        code=code,
        short_code=short,
        plate=row.plate,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        cancelled_at=row.cancelled_at,
        checked_in_at=row.checked_in_at,
        stay_id=row.stay_id,
        need=Need.parse(row.need),
    )


def _load(session: Session, site: Site, reservation_id: int) -> tuple[ReservationRow, Spot]:
    row = session.get(ReservationRow, reservation_id)
    if row is None or row.site_id != site.id:
        raise NotFound("That reservation does not exist.")
    spot = session.get(Spot, row.spot_id)
    assert spot is not None
    return row, spot


def get_reservation(site: Site, reservation_id: int, account_id: int | None = None) -> Reservation:
    """One reservation; with `account_id`, only if it is that account's."""
    row, spot = site.db.read(lambda s: _load(s, site, reservation_id))
    if account_id is not None and row.account_id != account_id:
        raise NotFound("That reservation does not exist.")
    return reservation_of(site, row, spot)


def _window(
    site: Site, size: Size | str, start: datetime, end: datetime
) -> tuple[Size, datetime, datetime]:
    car = Size.parse(size)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput(
            "Reservation times need a time zone.", field="start" if start.tzinfo is None else "end"
        )
    now = site.clock.now()
    if end <= start:
        raise InvalidInput("A reservation must end after it starts.", field="end")
    if start < now - timedelta(minutes=1):
        raise InvalidInput("A reservation cannot start in the past.", field="start")
    if start > now + MAX_ADVANCE:
        raise InvalidInput(
            "Reservations can be made up to {days} days ahead.",
            field="start",
            days=MAX_ADVANCE.days,
        )
    if end - start > site.max_stay:
        hours = site.max_stay.total_seconds() / 3600
        raise InvalidInput(
            "A reservation can be at most {hours} hours long.", field="end", hours=f"{hours:g}"
        )
    return car, start, end


def quote_reservation(site: Site, size: Size | str, start: datetime, end: datetime) -> Quote:
    """The price of reserving a spot for `size` over [start, end). Raises
    `InvalidInput` for a window in the past, too far ahead or too long."""
    car, start, end = _window(site, size, start, end)
    return site.tariff.quote_reservation(car, start, end)


def hold(
    site: Site,
    account_id: int,
    size: Size | str,
    start: datetime,
    end: datetime,
    plate: str | None = None,
    kiosk: str = "",
    need: str | None = None,
) -> Reservation:
    """Claim the best-fitting spot for the window and hold it for
    `HOLD_MINUTES` while the driver pays. `need` ("accessible" or "ev") asks
    for a spot with that feature and gets only such a spot; without it,
    accessible and EV spots are held only when no ordinary fitting spot is
    free. Raises `ReservationError` ("no_spot", naming the need) when no
    suitable spot is free for the whole window, `InvalidInput` for a bad
    size, need, plate or window."""
    car, start, end = _window(site, size, start, end)
    wants = Need.parse(need)
    plate = normalize_plate(plate)
    price = site.tariff.quote_reservation(car, start, end).total
    source = source_name(kiosk)
    if site.db.read(lambda s: s.get(Account, account_id)) is None:
        raise NotFound("That account does not exist.")

    def work(session: Session) -> tuple[ReservationRow, Spot] | None:
        now = site.clock.now()
        expires = now + timedelta(minutes=HOLD_MINUTES)
        taken = claim_best_spot(
            session, site, car, ClaimKind.HOLD, start, end, now, expires, need=wants
        )
        if taken is None:
            return None
        spot, claimed = taken
        row = ReservationRow(
            site_id=site.id,
            account_id=account_id,
            claim_id=claimed.claim_id,
            spot_id=spot.id,
            car_size=int(car),
            plate=plate,
            starts_at=start,
            ends_at=end,
            state=ReservationState.HELD.value,
            hold_expires_at=expires,
            price=price,
            currency=site.tariff.currency,
            key_id=site.keyring().active_id,
            created_at=now,
            need=wants.value if wants else None,
        )
        session.add(row)
        session.flush()
        record_event(
            session,
            site.id,
            now,
            EventKind.HOLD,
            f"Hold: {spot.label} for a {car.label} car, "
            f"{site.describe_time(start)} to {site.describe_time(end)}",
            source=source,
            spot_id=spot.id,
            spot_label=spot.label,
            data={"reservation_id": row.id, "account_id": account_id, "size": car.label},
        )
        return row, session.get_one(Spot, spot.id)

    result = site.db.write(work)
    if result is None:
        raise _no_spot_for(car, wants)
    return reservation_of(site, *result)


def _no_spot_for(car: Size, need: Need | None) -> ReservationError:
    if need is Need.ACCESSIBLE:
        return ReservationError(
            "no_spot",
            "Sorry, no accessible spot for a {size} car is free for that whole time. "
            "Please try other times.",
            size=car.label,
        )
    if need is Need.EV:
        return ReservationError(
            "no_spot",
            "Sorry, no EV charging spot for a {size} car is free for that whole time. "
            "Please try other times.",
            size=car.label,
        )
    return ReservationError(
        "no_spot",
        "Sorry, no spot for a {size} car is free for that whole time. Please try other times.",
        size=car.label,
    )


def _payable(site: Site, reservation_id: int) -> ReservationRow:
    """A held reservation whose hold has not run out, or `ReservationError`."""
    row, _ = site.db.read(lambda s: _load(s, site, reservation_id))
    if row.state != ReservationState.HELD:
        state = row.state.replace("_", " ")
        raise ReservationError("not_held", "This reservation is {state}.", state=state)
    if row.hold_expires_at <= site.clock.now():
        raise ReservationError(
            "hold_expired",
            "The 5 minutes to pay for this reservation are up and the spot was "
            "released. Please start again.",
        )
    return row


def pay_reservation_with_intent(
    site: Site, reservation_id: int, intent_id: str, kiosk: str = ""
) -> Payment:
    """Pay a held reservation with a Stripe PaymentIntent the driver's phone
    or browser confirmed for its price (the remote API). Checked with Stripe
    and captured if it was only authorized; the reservation is confirmed as
    the payment settles. A pending intent (still processing) is settled by
    the reconciler; `confirm_reservation` then confirms."""
    row = _payable(site, reservation_id)
    return claim_payment_intent(
        site,
        PaymentPurpose.RESERVATION,
        row.price,
        intent_id.strip(),
        reservation_id=row.id,
        account_id=row.account_id,
        source=source_name(kiosk),
    )


def pay_reservation(
    site: Site, reservation_id: int, card: str | None = None, kiosk: str = ""
) -> Payment:
    """Start paying for a held reservation. When the payment succeeds the
    reservation is confirmed in the same transaction that settles it. Raises
    `ReservationError` ("hold_expired", "not_held") when it cannot be paid."""
    row = _payable(site, reservation_id)
    # One charge per reservation at a time: the charge marks the reservation
    # (`... WHERE state = 'held' AND pending_payment IS NULL`), so a second
    # kiosk or a double tap is refused while the first is in flight.
    return start_payment(
        site,
        PaymentPurpose.RESERVATION,
        row.price,
        reservation_id=row.id,
        account_id=row.account_id,
        card=card,
        source=source_name(kiosk),
    )


# Settling a reservation's payment confirms it only while it is still held:
# the conditional write decides against an expiry, a cancel, or another
# settlement.
_CONFIRM = (
    update(reservations_table)
    .where(R.id == bindparam("b_id"), R.state == ReservationState.HELD.value)
    .values(state=ReservationState.CONFIRMED.value, confirmed_at=bindparam("now"))
)
# A hold expires only with no payment in flight: the payment's mark on the
# row (`pending_payment`) keeps it for the settlement to decide.
_EXPIRE_HOLD = (
    update(reservations_table)
    .where(
        R.id == bindparam("b_id"),
        R.state == ReservationState.HELD.value,
        R.hold_expires_at <= bindparam("now"),
        R.pending_payment.is_(None),
    )
    .values(state=ReservationState.EXPIRED.value)
)


def _confirm_on_payment(
    session: Session, site: Site, payment: PaymentRow, now: datetime
) -> str | None:
    """Settling a reservation's payment: confirm it. If the hold ran out
    before the card was approved, keep the spot if it is still free (or take
    another fitting one); only if none is left, refund."""
    confirmed = session.execute(_CONFIRM, {"b_id": payment.reservation_id, "now": now})
    if rows_touched(confirmed) != 1:
        return "the reservation was no longer waiting for payment"
    row = session.get_one(ReservationRow, payment.reservation_id, populate_existing=True)
    claim = session.get_one(Claim, row.claim_id)
    kept = session.execute(
        update(Claim)
        .where(
            Claim.id == row.claim_id,
            Claim.cancelled_at.is_(None),
            Claim.expires_at > now,
        )
        .values(kind=ClaimKind.RESERVATION.value, expires_at=None)
    )
    if rows_touched(kept) != 1:
        # The hold lapsed: its claim is dead. Take the spot again if free.
        session.execute(update(Claim).where(Claim.id == claim.id).values(cancelled_at=now))
        car = Size(row.car_size)
        claimed = take_spot(
            session,
            site.id,
            row.spot_id,
            car,
            ClaimKind.RESERVATION,
            row.starts_at,
            row.ends_at,
            now,
        )
        if claimed is None:
            taken = claim_best_spot(
                session,
                site,
                car,
                ClaimKind.RESERVATION,
                row.starts_at,
                row.ends_at,
                now,
                need=Need.parse(row.need),
            )
            if taken is None:
                row.state = ReservationState.EXPIRED.value
                return "the hold expired before the payment and no spot is left for that time"
            claimed = taken[1]
        row.claim_id, row.spot_id = claimed.claim_id, claimed.spot_id
    spot = session.get_one(Spot, row.spot_id)
    record_event(
        session,
        site.id,
        now,
        EventKind.RESERVATION_CONFIRMED,
        f"Reservation {row.id} confirmed: {spot.label}, "
        f"{site.describe_time(row.starts_at)} to {site.describe_time(row.ends_at)}",
        source=payment.source,
        spot_id=spot.id,
        spot_label=spot.label,
        data={"reservation_id": row.id, "account_id": row.account_id},
    )
    return None


on_settled(PaymentPurpose.RESERVATION, _confirm_on_payment)


def confirm_reservation(site: Site, reservation_id: int) -> Reservation:
    """The reservation once its payment has settled. Confirmation happens
    when the payment succeeds; this reports it, and raises
    `ReservationError` ("not_paid") if it has not."""
    reservation = get_reservation(site, reservation_id)
    if reservation.state in (ReservationState.CONFIRMED, ReservationState.CHECKED_IN):
        return reservation
    raise ReservationError(
        "not_paid",
        "This reservation is {state}, not paid.",
        state=reservation.state.replace("_", " "),
    )


# The write that decides a cancel: only a held or confirmed reservation, once
# (a check-in, the no-show release or another cancel a moment ago wins).
_CANCEL = (
    update(reservations_table)
    .where(
        R.id == bindparam("b_id"),
        or_(
            R.state == ReservationState.CONFIRMED.value,
            # A hold whose 5 minutes ran out with no payment in flight is
            # expired (`shown_state`), sweeper or not: nothing to cancel.
            and_(
                R.state == ReservationState.HELD.value,
                or_(R.hold_expires_at > bindparam("now"), R.pending_payment.is_not(None)),
            ),
        ),
    )
    .values(state=ReservationState.CANCELLED.value, cancelled_at=bindparam("now"))
)


def cancel_reservation(
    site: Site,
    reservation_id: int,
    account_id: int | None = None,
    reason: str = "cancelled by the driver",
    kiosk: str = "",
    *,
    also: Callable[[Session, int], None] | None = None,
) -> Cancellation:
    """Cancel a held or confirmed reservation: its claim is cut, so the spot
    is free again, and what the tariff's cancellation rule gives back is
    refunded. Raises `ReservationError` ("not_cancellable") once checked
    in, released or already cancelled. `also(session, refund)` runs in the
    cancelling transaction (the console's audit row)."""
    source = source_name(kiosk)

    def work(session: Session) -> tuple[int, PaymentRow | None] | ReservationError:
        now = site.clock.now()
        row, spot = _load(session, site, reservation_id)
        if account_id is not None and row.account_id != account_id:
            raise NotFound("That reservation does not exist.")
        changed = session.execute(_CANCEL, {"b_id": row.id, "now": now})
        if rows_touched(changed) != 1:
            now_row = session.get_one(ReservationRow, row.id, populate_existing=True)
            was = shown_state(now_row, now).value.replace("_", " ")
            return ReservationError(
                "not_cancellable",
                "This reservation is {state} and can no longer be cancelled.",
                state=was,
            )
        session.execute(update(Claim).where(Claim.id == row.claim_id).values(cancelled_at=now))
        paid = session.scalars(
            select(PaymentRow).where(
                PaymentRow.reservation_id == row.id,
                PaymentRow.kind == "charge",
                PaymentRow.status == PaymentStatus.SUCCEEDED.value,
            )
        ).first()
        refund, refund_row = 0, None
        if paid is not None:
            # The tariff's share, less what a supervisor already gave back.
            rule = site.tariff.cancel_refund(row.price, row.starts_at, now)
            session.refresh(paid)
            refund = max(0, min(rule, paid.amount - paid.refunded))
        if refund > 0 and paid is not None:
            # The refund row commits with the cancel: a crash before it is
            # sent leaves it pending for the reconciler.
            recorded = record_refund(
                session,
                site,
                paid.id,
                refund,
                reason=f"reservation {reservation_id} cancelled",
                source=source,
                idempotency_key=f"{site.id}:reservation:{reservation_id}:cancel-refund",
            )
            if isinstance(recorded, RefundRefused):
                raise Conflict("the charge was refunded meanwhile")  # rerun: less is left
            refund_row = recorded
        record_event(
            session,
            site.id,
            now,
            EventKind.RESERVATION_CANCELLED,
            f"Reservation {row.id} cancelled ({reason}); {spot.label} is free again",
            source=source,
            spot_id=spot.id,
            spot_label=spot.label,
            data={"reservation_id": row.id, "refund": refund, "reason": reason},
        )
        if also is not None:
            also(session, refund)
        return refund, refund_row

    result = site.db.write(work)
    if isinstance(result, ReservationError):
        raise result
    refund_amount, refund_row = result
    refund = send_refund(site, refund_row) if refund_row is not None else None
    return Cancellation(get_reservation(site, reservation_id), refund, refund_amount)


def _parse_reservation_code(site: Site, code: str, source: str) -> SignedCode | ShortCode:
    try:
        parsed = parse_code(code)
        if parsed.version != RESERVATION:
            raise WrongKindOfCode(
                "This is a parking ticket, not a reservation. To leave, use the exit or "
                "pay station; to check in, scan the reservation code."
            )
        if isinstance(parsed, SignedCode):
            site.keyring(refresh=parsed.key_id not in site.keyring().keys).verify(parsed)
    except TicketError as error:
        record_rejection(site, code, error, source)
        raise
    return parsed


def _matches(site: Site, parsed: SignedCode | ShortCode, row: ReservationRow) -> bool:
    if isinstance(parsed, SignedCode):
        return parsed.key_id == row.key_id and parsed.issued_at == int(row.created_at.timestamp())
    try:
        site.keyring().verify_short(row.key_id, parsed)
    except TicketError:
        return False
    return True


def reservations_on_spot(site: Site, spot_id: int, limit: int = 3) -> list[Reservation]:
    """The held or confirmed reservations of a spot that have not ended,
    soonest first (the console's spot detail)."""

    def work(session: Session) -> list[tuple[ReservationRow, Spot]]:
        rows = session.scalars(
            select(ReservationRow)
            .where(
                ReservationRow.site_id == site.id,
                ReservationRow.spot_id == spot_id,
                ReservationRow.state.in_([ReservationState.HELD, ReservationState.CONFIRMED]),
                ReservationRow.ends_at > site.clock.now(),
            )
            .order_by(ReservationRow.starts_at)
            .limit(limit)
        ).all()
        return [(row, session.get_one(Spot, row.spot_id)) for row in rows]

    return [reservation_of(site, row, spot) for row, spot in site.db.read(work)]


def find_reservation(site: Site, code: str, source: str = "") -> Reservation:
    """The reservation a code (full or short) names, checked like at
    check-in: a code whose check characters do not match is refused (and
    recorded), so a typo never finds someone else's reservation."""
    parsed = _parse_reservation_code(site, code, source_name(source))

    def work(session: Session) -> tuple[ReservationRow, Spot] | TicketError:
        row = session.get(ReservationRow, parsed.ticket_id)
        if row is None or row.site_id != site.id:
            return TicketUnknown("reservation")
        if not _matches(site, parsed, row):
            return TicketSignatureInvalid()
        return row, session.get_one(Spot, row.spot_id)

    found = site.db.read(work)
    if isinstance(found, TicketError):
        record_rejection(site, code, found, source_name(source))
        raise found
    return reservation_of(site, *found)


class _Refused(Exception):
    def __init__(self, error: ReservationError, alert: bool = False) -> None:
        self.error = error
        self.alert = alert


# The write that decides a check-in: the reservation moves from confirmed to
# checked in once, however many lanes scan its code at the same moment.
_CHECK_IN = (
    update(reservations_table)
    .where(
        R.id == bindparam("b_id"),
        R.site_id == bindparam("b_site"),
        R.state == ReservationState.CONFIRMED.value,
        key_in_use(R.site_id, R.key_id),
    )
    .values(state=ReservationState.CHECKED_IN.value, checked_in_at=bindparam("now"))
)


def _not_admitted(site: Site, row: ReservationRow, now: datetime) -> _Refused:
    """Why a reservation that is not (or no longer) confirmed cannot check in."""
    when = site.describe_time
    state = ReservationState(row.state)
    if state is ReservationState.CANCELLED:
        return _Refused(
            ReservationError(
                "cancelled",
                "This reservation was cancelled at {time}.",
                time=when(row.cancelled_at or now),
            )
        )
    if state in (ReservationState.HELD, ReservationState.EXPIRED):
        return _Refused(
            ReservationError("not_paid", "This reservation was never paid, so it holds no spot.")
        )
    if state is ReservationState.CHECKED_IN:
        return _Refused(
            ReservationError(
                "already_used",
                "This reservation was already used to enter at {time}.",
                time=when(row.checked_in_at or now),
            )
        )
    if state is ReservationState.NO_SHOW:
        return _Refused(
            ReservationError(
                "no_show",
                "This reservation was released because the car did not arrive in time.",
            )
        )
    # Confirmed, yet the write did not take it: its signing key was retired.
    return _Refused(
        ReservationError(
            "key_retired", "This reservation code is no longer valid. Please see the attendant."
        )
    )


def check_in(site: Site, code: str, plate: str | None = None, kiosk: str = "") -> Ticket:
    """Admit the car of a confirmed reservation: from the tariff's
    `check_in_early_minutes` before its start until `no_show_grace_minutes`
    after it. It gets a ticket for the reserved spot or, if a car that
    overstayed is still in it, another fitting spot; if none is free, the
    check-in is refused and the attendant alerted. One car per reservation:
    the conditional write `confirmed -> checked_in` decides, so the same code
    at N lanes at once admits one car. Raises `ReservationError` (codes:
    too_early, too_late, cancelled, not_paid, already_used, no_show,
    no_spot, key_retired) or a `TicketError` for an unknown or forged code."""
    source = source_name(kiosk)
    parsed = _parse_reservation_code(site, code, source)
    tariff = site.tariff

    def work(session: Session) -> Ticket:
        now = site.clock.now()
        row = session.get(ReservationRow, parsed.ticket_id)
        if row is None or row.site_id != site.id or not _matches(site, parsed, row):
            raise TicketUnknown("reservation") if row is None else TicketSignatureInvalid()
        if row.state != ReservationState.CONFIRMED:
            raise _not_admitted(site, row, now)
        when = site.describe_time
        opens = row.starts_at - tariff.check_in_early
        closes = min(row.starts_at + tariff.no_show_grace, row.ends_at)
        if now < opens:
            raise _Refused(
                ReservationError(
                    "too_early",
                    "You are early: check-in for this reservation opens at {time}.",
                    time=when(opens),
                )
            )
        if now > closes:
            raise _Refused(
                ReservationError(
                    "too_late",
                    "Sorry, this reservation could be used until {time} and has been released.",
                    time=when(closes),
                )
            )
        taken = session.execute(_CHECK_IN, {"b_id": row.id, "b_site": site.id, "now": now})
        if rows_touched(taken) != 1:
            # Another lane, a cancel or the no-show release got there first.
            raise _not_admitted(
                site, session.get_one(ReservationRow, row.id, populate_existing=True), now
            )
        car = Size(row.car_size)
        # The reservation's own claim gives way to the stay's, which starts now.
        session.execute(update(Claim).where(Claim.id == row.claim_id).values(cancelled_at=now))
        occupied = session.scalar(
            select(func.count()).where(
                Stay.site_id == site.id, Stay.spot_id == row.spot_id, Stay.exited_at.is_(None)
            )
        )
        keyring = site.keyring()
        plate_seen = normalize_plate(plate) or row.plate

        def stay(spot: SpotRow) -> list[Step]:
            return stay_steps(
                site,
                keyring,
                spot,
                car,
                plate_seen,
                now,
                row.ends_at,
                source,
                reservation_id=row.id,
                account_id=row.account_id,
                billed_from=row.ends_at,
            )

        spot = session.get_one(Spot, row.spot_id)
        chosen = SpotRow(spot.id, spot.label, spot.level, spot.size, spot.accessible, spot.ev)
        claimed = None
        if not occupied:
            claimed = take_spot(
                session,
                site.id,
                row.spot_id,
                car,
                ClaimKind.STAY,
                now,
                row.ends_at,
                now,
                then=stay(chosen),
            )
        if claimed is None:
            found = claim_best_spot(
                session,
                site,
                car,
                ClaimKind.STAY,
                now,
                row.ends_at,
                now,
                then=stay,
                need=Need.parse(row.need),
            )
            if found is None:
                # Rolled back with the check-in: the reservation stays confirmed.
                raise _Refused(
                    ReservationError(
                        "no_spot",
                        "Sorry, your reserved spot is still taken and no other spot is free. "
                        "The attendant has been called and will help you.",
                    ),
                    alert=True,
                )
            chosen, claimed = found
        ticket = make_ticket(keyring, claimed, chosen, car, plate_seen, now, row.ends_at)
        session.execute(update(reservations_table).where(R.id == row.id).values(stay_id=ticket.id))
        return ticket

    try:
        return site.db.write(work)
    except _Refused as refused:
        _record_refusal(site, parsed.ticket_id, refused, source)
        raise refused.error from None
    except TicketError as error:
        record_rejection(site, code, error, source)
        raise


def _record_refusal(site: Site, reservation_id: int, refused: _Refused, source: str) -> None:
    site.db.write(
        lambda s: record_event(
            s,
            site.id,
            site.clock.now(),
            EventKind.CHECK_IN_REFUSED,
            f"Check-in refused for reservation {reservation_id} ({refused.error.code})"
            + (": no fitting spot free, driver waiting at the entry" if refused.alert else ""),
            source=source,
            data={
                "reservation_id": reservation_id,
                "reason": refused.error.code,
                "alert": refused.alert,
            },
        )
    )


# A no-show is released once, and only while still confirmed (a check-in or
# a cancel a moment ago wins).
_RELEASE = (
    update(reservations_table)
    .where(R.id == bindparam("b_id"), R.state == ReservationState.CONFIRMED.value)
    .values(state=ReservationState.NO_SHOW.value)
)


def release_no_shows(site: Site) -> list[int]:
    """Release confirmed reservations whose car did not arrive by the end of
    the check-in grace: the claim is cut so the spot is free again, and an
    event says so. No refund (the tariff's cancellation rule covers that)."""

    def work(session: Session) -> list[int]:
        now = site.clock.now()
        due = session.scalars(
            select(ReservationRow)
            .where(
                ReservationRow.site_id == site.id,
                ReservationRow.state == ReservationState.CONFIRMED.value,
                ReservationRow.starts_at < now - site.tariff.no_show_grace,
            )
            .limit(500)
        ).all()
        released = []
        for row in due:
            changed = session.execute(_RELEASE, {"b_id": row.id})
            if rows_touched(changed) != 1:
                continue
            session.execute(
                update(Claim)
                .where(Claim.id == row.claim_id, Claim.ends_at > now)
                .values(ends_at=now)
            )
            spot = session.get_one(Spot, row.spot_id)
            record_event(
                session,
                site.id,
                now,
                EventKind.NO_SHOW,
                f"No-show: reservation {row.id} released, {spot.label} is free again",
                spot_id=spot.id,
                spot_label=spot.label,
                data={"reservation_id": row.id, "account_id": row.account_id},
            )
            released.append(row.id)
        return released

    return site.db.write(work)


def expire_holds(site: Site) -> list[int]:
    """Mark holds whose 5 minutes ran out without payment as expired. Their
    spots are already free (an expired hold is not a live claim); this tidies
    the reservation rows and tells the attendant."""

    def work(session: Session) -> list[int]:
        now = site.clock.now()
        rows = session.scalars(
            select(ReservationRow)
            .where(
                ReservationRow.site_id == site.id,
                ReservationRow.state == ReservationState.HELD.value,
                ReservationRow.hold_expires_at <= now,
            )
            .limit(500)
        ).all()
        expired = []
        for row in rows:
            # A payment still in flight (its mark on the row) settles it.
            changed = session.execute(_EXPIRE_HOLD, {"b_id": row.id, "now": now})
            if rows_touched(changed) != 1:
                continue
            record_event(
                session,
                site.id,
                now,
                EventKind.HOLD_EXPIRED,
                f"Hold expired unpaid: reservation {row.id}",
                spot_id=row.spot_id,
                data={"reservation_id": row.id},
            )
            expired.append(row.id)
        return expired

    return site.db.write(work)


def account_reservations(
    site: Site, account_id: int, page: int = 1, per_page: int = 20
) -> Page[Reservation]:
    """The account's reservations, newest first (by when they start)."""
    if page < 1 or not 1 <= per_page <= 100:
        raise InvalidInput("Pages start at 1 and hold 1 to 100 reservations.")

    def work(session: Session) -> tuple[int, list[tuple[ReservationRow, Spot]]]:
        where = (ReservationRow.site_id == site.id, ReservationRow.account_id == account_id)
        total = session.scalar(select(func.count()).select_from(ReservationRow).where(*where))
        rows = session.execute(
            select(ReservationRow, Spot)
            .join(Spot, Spot.id == ReservationRow.spot_id)
            .where(*where)
            .order_by(ReservationRow.starts_at.desc(), ReservationRow.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        ).all()
        return int(total or 0), [(r, s) for r, s in rows]

    total, rows = site.db.read(work)
    return Page(tuple(reservation_of(site, r, s) for r, s in rows), page, per_page, total)


def describe_price(reservation: Reservation) -> str:
    return format_money(reservation.price, reservation.currency)


@dataclass(frozen=True)
class AccountSpots:
    """What an account holds now: reservations still to come or in use, and
    cars inside (checked in with a reservation, or whose ticket the account
    added by its code)."""

    reservations: tuple[Reservation, ...]
    stays: tuple[StayStatus, ...]


def account_spots(site: Site, account_id: int) -> AccountSpots:
    """The account's current and upcoming reservations (soonest first) and
    the stays of its cars still inside."""
    now = site.clock.now()

    def work(session: Session) -> tuple[list[tuple[ReservationRow, Spot]], list[int]]:
        rows = session.execute(
            select(ReservationRow, Spot)
            .join(Spot, Spot.id == ReservationRow.spot_id)
            .where(
                ReservationRow.site_id == site.id,
                ReservationRow.account_id == account_id,
                ReservationRow.ends_at > now,
                ReservationRow.state.in_(
                    [ReservationState.HELD, ReservationState.CONFIRMED, ReservationState.CHECKED_IN]
                ),
            )
            .order_by(ReservationRow.starts_at, ReservationRow.id)
        ).all()
        # Only stays the account proved it holds (a reservation's, or a
        # ticket it scanned or typed in): never by a registered plate alone,
        # which would show it someone else's car, ticket and fee.
        stay_ids = session.scalars(
            select(Stay.id)
            .where(
                Stay.site_id == site.id,
                Stay.exited_at.is_(None),
                Stay.account_id == account_id,
            )
            .order_by(Stay.entered_at)
        ).all()
        return [(r, s) for r, s in rows], list(stay_ids)

    rows, stay_ids = site.db.read(work)
    # A lapsed hold is gone for the driver even before the worker tidies it.
    live = [(r, s) for r, s in rows if r.state != ReservationState.HELD or r.hold_expires_at > now]
    return AccountSpots(
        tuple(reservation_of(site, r, s) for r, s in live),
        tuple(stay_status(site, stay_id) for stay_id in stay_ids),
    )
