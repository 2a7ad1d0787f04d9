"""Stays after entry: what a ticket owes, paying it, lost tickets, overstays.

A paid stay may leave until `paid_until` (payment time + the tariff's exit
grace); after that, exiting asks for whatever the extra time cost. The
amount is always worked out from the entry log and the ledger's total for the
stay, never from what a screen showed earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind, ExitResult, Payment, PaymentPurpose, Size, normalize_plate
from core.errors import InvalidInput, NotFound, NothingToPay, PaymentRequired, TicketError
from core.payments.provider import PaymentStatus
from core.services.entry import (
    _STAY_FOR_EXIT,
    StayRow,
    amount_due,
    end_stay,
    match_stay,
    parse_ticket_code,
    record_rejection,
    source_name,
    stay_facts,
)
from core.services.events import record_event
from core.services.payments import (
    payment_of,
    record_cash_payment,
    start_payment,
    with_fresh_quote,
)
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import Payment as PaymentRow
from core.storage.models import Reservation as ReservationRow
from core.storage.models import spots_table, stays_table
from core.tariff import Quote, QuoteLine, format_money

S = spots_table.c
T = stays_table.c


@dataclass(frozen=True)
class StayStatus:
    """A ticket as the pay station shows it."""

    ticket_id: int
    spot_label: str
    level: str
    size: Size
    plate: str | None
    entered_at: datetime
    exited_at: datetime | None
    quote: Quote  # the fee as of now, with what was already paid
    paid_until: datetime | None  # may leave without paying more until then
    due: int  # what must be paid to leave now
    lost_ticket: bool = False
    # A reservation's stay: its window's end, from when time past it is
    # billed (`quote.parking`, plus `quote.overstay`). None for a walk-in.
    billed_from: datetime | None = None

    @property
    def can_exit(self) -> bool:
        return self.exited_at is None and self.due == 0


def _status(site: Site, stay: StayRow, now: datetime) -> StayStatus:
    quote = site.tariff.quote(stay_facts(site, stay), now, site.zone)
    return StayStatus(
        ticket_id=stay.id,
        spot_label=stay.label,
        level=stay.level,
        size=Size(stay.car_size),
        plate=stay.plate,
        entered_at=stay.entered_at,
        exited_at=stay.exited_at,
        quote=quote,
        paid_until=stay.paid_until,
        due=amount_due(site, stay, now),
        lost_ticket=stay.lost_ticket,
        billed_from=stay.billed_from,
    )


def _stay_by_code(site: Site, code: str, source: str) -> StayRow:
    parsed = parse_ticket_code(site, code, source)
    stay = site.db.read(lambda s: match_stay(s, site, parsed))
    if isinstance(stay, TicketError):
        record_rejection(site, code, stay, source)
        raise stay
    return stay


def ticket_status(site: Site, code: str, kiosk: str = "") -> StayStatus:
    """What the ticket owes now, with the breakdown a driver sees. Raises a
    `TicketError` for a bad code."""
    stay = _stay_by_code(site, code, source_name(kiosk))
    return _status(site, stay, site.clock.now())


def pay_ticket(site: Site, code: str, card: str | None = None, kiosk: str = "") -> Payment:
    """Start paying what the ticket owes now (see `payments.poll_payment` /
    `wait_for_payment` to follow it). Raises `NothingToPay` (with the exit-by
    time) when nothing is due, `PaymentInProgress` while another station is
    taking a payment for it, a `TicketError` for a bad or used code."""
    source = source_name(kiosk)

    def start() -> Payment:
        stay = _stay_by_code(site, code, source)
        status = _status(site, stay, site.clock.now())
        if stay.exited_at is not None:
            raise NothingToPay("This ticket has already been used to exit.")
        if status.due == 0:
            until = status.paid_until
            if until and until >= site.clock.now():
                raise NothingToPay(
                    "Nothing to pay: you may leave until {time}.", time=site.describe_time(until)
                )
            raise NothingToPay("Nothing to pay: you may leave now.")
        return start_payment(
            site,
            PaymentPurpose.STAY,
            status.due,
            stay_id=stay.id,
            account_id=stay.account_id,
            card=card,
            source=source,
            paid_seen=stay.paid_amount,
        )

    return with_fresh_quote(start)


_STAY_BY_ID = _STAY_FOR_EXIT

_OPEN_STAYS = (
    select(
        T.id,
        T.claim_id,
        T.spot_id,
        T.key_id,
        T.entered_at,
        T.exited_at,
        T.car_size,
        T.plate,
        T.max_stay_until,
        T.paid_amount,
        T.paid_until,
        T.billed_from,
        T.lost_ticket,
        T.account_id,
        T.reservation_id,
        S.label,
        S.level,
    )
    .join_from(stays_table, spots_table, S.id == T.spot_id)
    .where(T.exited_at.is_(None))
)


def find_stays(
    site: Site, plate: str | None = None, spot_label: str | None = None
) -> list[StayStatus]:
    """Cars inside, found by plate or by spot (for a lost ticket). A plate
    matches however it is spaced or hyphenated ("KLX481" finds "KLX 481")."""
    cleaned = normalize_plate(plate)
    label = (spot_label or "").strip().upper()
    if not cleaned and not label:
        raise InvalidInput("Give a plate or a spot to look for.")
    query = _OPEN_STAYS.where(T.site_id == site.id)
    if cleaned:
        bare = cleaned.replace(" ", "").replace("-", "")
        query = query.where(func.replace(func.replace(T.plate, " ", ""), "-", "") == bare)
    if label:
        query = query.where(S.label == label)
    now = site.clock.now()
    rows = site.db.read(lambda s: s.execute(query.order_by(T.entered_at)).all())
    return [_status(site, row, now) for row in rows]


def _open_stay(session: Session, site: Site, stay_id: int) -> StayRow:
    stay = session.execute(_OPEN_STAYS.where(T.site_id == site.id, T.id == stay_id)).one_or_none()
    if stay is None:
        raise NotFound("No car is parked on ticket {ticket}.", ticket=stay_id)
    return stay


def stay_status(site: Site, stay_id: int) -> StayStatus:
    """A car inside, by ticket id (for the account and attendant views)."""
    stay = site.db.read(lambda s: _open_stay(s, site, stay_id))
    return _status(site, stay, site.clock.now())


def lost_ticket_quote(site: Site, stay_id: int) -> Quote:
    """What a driver who lost the ticket pays, by the tariff's lost-ticket
    rule (flat fee, the real fee from the entry log, or the greater)."""
    return _lost_ticket_quote(site, stay_id)[0]


def _lost_ticket_quote(site: Site, stay_id: int) -> tuple[Quote, int]:
    """The lost-ticket quote and the paid amount it was worked out from."""
    stay = site.db.read(lambda s: _open_stay(s, site, stay_id))
    facts = stay_facts(site, stay)
    lost = replace(facts, lost_ticket=True)
    return site.tariff.quote(lost, site.clock.now(), site.zone), stay.paid_amount


def pay_lost_ticket(site: Site, stay_id: int, card: str | None = None, kiosk: str = "") -> Payment:
    """Start paying the lost-ticket charge for a stay found by plate or spot.
    Once paid, the stay is marked as a lost ticket and may leave through
    `exit_paid_stay` within the exit grace. One charge at a time per stay
    (`PaymentInProgress`), as for a ticket."""

    def start() -> Payment:
        quote, paid = _lost_ticket_quote(site, stay_id)
        if quote.due == 0:
            raise NothingToPay("Nothing is left to pay for this stay.")
        return start_payment(
            site,
            PaymentPurpose.LOST_TICKET,
            quote.due,
            stay_id=stay_id,
            card=card,
            source=source_name(kiosk),
            paid_seen=paid,
        )

    return with_fresh_quote(start)


def take_lost_ticket_cash(site: Site, stay_id: int, source: str) -> int:
    """The lost-ticket charge taken in cash (the booth); returns the amount."""

    def take() -> int:
        quote, paid = _lost_ticket_quote(site, stay_id)
        if quote.due == 0:
            raise NothingToPay("Nothing is left to pay for this stay.")
        record_cash_payment(
            site,
            PaymentPurpose.LOST_TICKET,
            quote.due,
            stay_id=stay_id,
            paid_seen=paid,
            source=source,
        )
        return quote.due

    return with_fresh_quote(take)


def exit_paid_stay(site: Site, stay_id: int, kiosk: str = "", reason: str = "") -> ExitResult:
    """Let out a car without its ticket (found by plate or spot) once its
    stay is paid. Raises `PaymentRequired` otherwise."""
    source = source_name(kiosk)

    def work(session: Session) -> ExitResult | TicketError | PaymentRequired:
        now = site.clock.now()
        stay = _open_stay(session, site, stay_id)
        facts = stay_facts(site, stay)
        if stay.lost_ticket and not (stay.paid_until and now <= stay.paid_until):
            due = site.tariff.quote(
                replace(facts, lost_ticket=True),
                now,
            ).due
        else:
            due = amount_due(site, stay, now)
        if due > 0:
            return PaymentRequired(stay.id, format_money(due, site.tariff.currency))
        how = f"Exit without ticket{f' ({reason})' if reason else ''}"
        return end_stay(session, site, stay, now, source, how=how)

    result = site.db.write(work)
    if isinstance(result, (PaymentRequired, TicketError)):
        raise result
    return result


def note_overstays(site: Site) -> list[int]:
    """Raise one `overstay` event per car still inside after its claim ended
    (walk-in max stay, or the end of its reservation). Each stay is noted
    once, by a conditional UPDATE, however often and wherever this runs."""

    def work(session: Session) -> list[int]:
        now = site.clock.now()
        rows = session.execute(
            _OPEN_STAYS.where(
                T.site_id == site.id, T.max_stay_until <= now, T.overstay_noted_at.is_(None)
            ).limit(500)
        ).all()
        noted = []
        for stay in rows:
            claimed = session.execute(
                update(stays_table)
                .where(T.id == stay.id, T.overstay_noted_at.is_(None), T.exited_at.is_(None))
                .values(overstay_noted_at=now)
            )
            if rows_touched(claimed) != 1:
                continue
            over = int((now - stay.max_stay_until).total_seconds() // 60)
            record_event(
                session,
                site.id,
                now,
                EventKind.OVERSTAY,
                f"Overstay: ticket {stay.id}{f' ({stay.plate})' if stay.plate else ''} "
                f"in {stay.label} is {over} min past its time",
                spot_id=stay.spot_id,
                spot_label=stay.label,
                stay_id=stay.id,
                data={"alert": True, "plate": stay.plate, "minutes_over": over},
            )
            noted.append(stay.id)
        return noted

    return site.db.write(work)


@dataclass(frozen=True)
class Receipt:
    """What a payment's receipt says: the fee lines as they were when it was
    taken, then "Already paid" for *earlier* payments only (never this one),
    and this payment's amount as the total paid now."""

    payment: Payment
    lines: tuple[QuoteLine, ...]  # billed lines, then "Already paid" (earlier payments)
    total: int  # what the billed lines add up to
    earlier_paid: int  # paid for the same stay before this payment (less refunds)
    amount: int  # this payment: total - earlier_paid
    currency: str
    ticket_id: int | None = None
    entered_at: datetime | None = None  # the real entry time
    exit_by: datetime | None = None  # may leave without paying more until then


def payment_receipt(site: Site, payment_id: int) -> Receipt:
    """The receipt of a settled charge (a ticket, a lost ticket or a
    reservation), the same whenever it is printed. Raises `NotFound`."""
    tariff = site.tariff

    def work(session: Session) -> Receipt:
        row = session.get(PaymentRow, payment_id)
        if row is None or row.site_id != site.id or row.kind != "charge":
            raise NotFound("That payment does not exist.")
        payment = payment_of(row)
        if row.stay_id is None:
            reservation = session.get(ReservationRow, row.reservation_id)
            if reservation is None:
                raise NotFound("That payment does not exist.")
            quote = tariff.quote_reservation(
                Size(reservation.car_size), reservation.starts_at, reservation.ends_at
            )
            return Receipt(payment, quote.lines, row.amount, 0, row.amount, row.currency)
        stay = session.execute(_STAY_BY_ID, {"stay": row.stay_id, "site": site.id}).one_or_none()
        if stay is None:
            raise NotFound("That payment does not exist.")
        earlier = _paid_before(session, row)
        facts = replace(
            stay_facts(site, stay),
            paid=earlier,
            lost_ticket=row.purpose == PaymentPurpose.LOST_TICKET,
        )
        # The quote the amount was worked out from, a moment before the row
        # was written (a billing step may have begun in between).
        quote = tariff.quote(facts, row.created_at, site.zone)
        for seconds in (1, 5):
            if quote.due == row.amount:
                break
            quote = tariff.quote(facts, row.created_at - timedelta(seconds=seconds), site.zone)
        lines = quote.lines
        if quote.due != row.amount:  # a figure set by hand (a discount): say just that
            label = "Lost ticket" if facts.lost_ticket else "Parking"
            lines = (QuoteLine(label, row.amount + earlier),) + (
                (QuoteLine("Already paid", -earlier),) if earlier else ()
            )
        exit_by = None
        settled = row.status == PaymentStatus.SUCCEEDED.value and row.settled_at is not None
        if settled and row.settled_at is not None and row.method != "discount":
            exit_by = row.settled_at + tariff.exit_grace
        return Receipt(
            payment,
            lines,
            row.amount + earlier,
            earlier,
            row.amount,
            row.currency,
            ticket_id=stay.id,
            entered_at=stay.entered_at,
            exit_by=exit_by,
        )

    return site.db.read(work)


def _paid_before(session: Session, charge: PaymentRow) -> int:
    """What the stay's earlier succeeded charges brought in, less what
    their refunds (made before this charge) gave back."""
    earlier = session.execute(
        select(PaymentRow.id, PaymentRow.amount).where(
            PaymentRow.site_id == charge.site_id,
            PaymentRow.stay_id == charge.stay_id,
            PaymentRow.kind == "charge",
            PaymentRow.status == PaymentStatus.SUCCEEDED.value,
            PaymentRow.id < charge.id,
        )
    ).all()
    if not earlier:
        return 0
    refunded = session.scalar(
        select(func.coalesce(func.sum(PaymentRow.amount), 0)).where(
            PaymentRow.kind == "refund",
            PaymentRow.status == PaymentStatus.SUCCEEDED.value,
            PaymentRow.refund_of.in_([charge_id for charge_id, _ in earlier]),
            PaymentRow.id < charge.id,
        )
    )
    return sum(amount for _, amount in earlier) - int(refunded or 0)
