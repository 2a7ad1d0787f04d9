"""The payment ledger: every attempt to take or give back money is a row.

The order of work is what makes payments safe:
1. the row is written and *committed* as `pending`, with a unique
   idempotency key, before the provider hears of it;
2. the provider gets the same key, so repeating a call (a retry, a second
   kiosk, the reconciler) never charges twice;
3. the outcome is settled by one conditional UPDATE (`... WHERE status =
   'pending'`), in the same transaction as its effect (a stay paid, a
   reservation confirmed) and its event, so the effect happens exactly once
   however many processes settle the same row.

A process that dies anywhere leaves a pending row; `reconcile` asks the
provider what became of it and settles it the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind, Page, Payment, PaymentPurpose
from core.errors import (
    InvalidInput,
    NotFound,
    NothingToPay,
    PaymentInProgress,
    PaymentUnavailable,
    RefundRefused,
    ReservationError,
)
from core.payments.provider import (
    ChargeRequest,
    IntentNotSupported,
    PaymentStatus,
    ProviderState,
    ProviderUnavailable,
)
from core.services.events import record_event
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import Payment as PaymentRow
from core.storage.models import payments_table, reservations_table, stays_table
from core.tariff import format_money

P = payments_table.c
T = stays_table.c
R = reservations_table.c
Result = TypeVar("Result")

# Effects of a settled payment beyond the ledger (a reservation confirmed...)
# are registered by the modules that own them, to keep this one free of them.
Effect = Callable[[Session, Site, PaymentRow, datetime], str | None]
_EFFECTS: dict[str, Effect] = {}


def on_settled(purpose: PaymentPurpose, effect: Effect) -> None:
    """Run `effect` in the settling transaction when a charge for `purpose`
    succeeds. It may return a reason to refund the charge at once (e.g. the
    hold expired and its spot was taken before the card was approved)."""
    _EFFECTS[purpose.value] = effect


def payment_of(row: PaymentRow, reader_message: str | None = None) -> Payment:
    """The view of a ledger row."""
    return Payment(
        id=row.id,
        kind=row.kind,
        purpose=row.purpose,
        amount=row.amount,
        currency=row.currency,
        status=PaymentStatus(row.status),
        method=row.method,
        provider=row.provider,
        simulated=row.simulated,
        created_at=row.created_at,
        settled_at=row.settled_at,
        card_brand=row.card_brand,
        card_last4=row.card_last4,
        failure_code=row.failure_code,
        message=row.failure_message,
        reader_message=reader_message,
        stay_id=row.stay_id,
        reservation_id=row.reservation_id,
        account_id=row.account_id,
        refund_of=row.refund_of,
    )


def _request(site: Site, row: PaymentRow, card: str | None = None) -> ChargeRequest:
    """The provider's view of a ledger row. Rebuilt the same way every time
    (the reconciler replays it: Stripe compares a replayed body)."""
    about = f"ticket {row.stay_id}" if row.stay_id else f"reservation {row.reservation_id}"
    return ChargeRequest(
        idempotency_key=row.idempotency_key,
        amount=row.amount,
        currency=row.currency,
        description=f"{site.name}: {row.purpose.replace('_', ' ')} for {about}",
        card=card,
        metadata={"site": site.id, "payment": str(row.id), "purpose": row.purpose},
    )


def _load(session: Session, site: Site, payment_id: int) -> PaymentRow:
    row = session.get(PaymentRow, payment_id)
    if row is None or row.site_id != site.id:
        raise NotFound("That payment does not exist.")
    return row


def get_payment(site: Site, payment_id: int) -> Payment:
    return site.db.read(lambda s: payment_of(_load(s, site, payment_id)))


def start_payment(
    site: Site,
    purpose: PaymentPurpose,
    amount: int,
    *,
    stay_id: int | None = None,
    reservation_id: int | None = None,
    account_id: int | None = None,
    card: str | None = None,
    source: str = "",
    idempotency_key: str | None = None,
    paid_seen: int | None = None,
) -> Payment:
    """Write a pending charge to the ledger, then hand it to the card reader.
    Returns the payment: usually pending (poll it with `poll_payment`), or
    failed at once (reader busy). Raises `PaymentUnavailable` when the
    provider cannot be reached; the pending row is then settled by the
    reconciler. Passing the same `idempotency_key` again returns the same
    payment instead of starting another.

    One live charge per stay or reservation: the charge starts only if a
    conditional write marks its stay (`... AND pending_payment IS NULL AND
    paid_amount = :paid_seen`, the figure `amount` was worked out from) or
    its reservation (`... AND state = 'held' AND pending_payment IS NULL`).
    Otherwise `PaymentInProgress` (another station is taking it),
    `QuoteChanged` (it was paid meanwhile: work out the amount again),
    `NothingToPay` or `ReservationError`."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("A payment needs a positive amount in minor units.")
    provider = site.payments
    key = idempotency_key or f"{site.id}:{purpose.value}:{uuid.uuid4().hex}"
    row = _pending_charge(
        site,
        key,
        purpose,
        amount,
        stay_id=stay_id,
        reservation_id=reservation_id,
        account_id=account_id,
        source=source,
        paid_seen=paid_seen,
    )
    if row.status != PaymentStatus.PENDING or row.provider_ref is not None:
        return payment_of(row)  # a replay of a call that already got this far
    try:
        state = provider.start(_request(site, row, card))
    except ProviderUnavailable as exc:
        raise PaymentUnavailable(
            "The card reader cannot be reached right now ({reason}). "
            "You have not been charged; please try again or see the attendant.",
            reason=exc,
        ) from exc
    return _answered(site, row.id, state)


class QuoteChanged(Exception):
    """The stay was paid (or refunded) between working out what it owes and
    starting the charge: work the amount out again."""


# The writes that decide a charge may start: they mark the stay or the
# reservation with the charge's key, and only an unmarked one whose figures
# are what the amount was worked out from. Settling clears the mark.
_MARK_STAY = (
    update(stays_table)
    .where(
        T.id == bindparam("b_stay"),
        T.site_id == bindparam("b_site"),
        T.exited_at.is_(None),
        T.pending_payment.is_(None),
        T.paid_amount == bindparam("b_paid"),
    )
    .values(pending_payment=bindparam("b_key"))
)
_MARK_RESERVATION = (
    update(reservations_table)
    .where(
        R.id == bindparam("b_reservation"),
        R.site_id == bindparam("b_site"),
        R.state == "held",
        R.hold_expires_at > bindparam("b_now"),
        R.pending_payment.is_(None),
    )
    .values(pending_payment=bindparam("b_key"))
)
_UNMARK_STAY = (
    update(stays_table)
    .where(T.id == bindparam("b_stay"), T.pending_payment == bindparam("b_key"))
    .values(pending_payment=None)
)
_UNMARK_RESERVATION = (
    update(reservations_table)
    .where(R.id == bindparam("b_reservation"), R.pending_payment == bindparam("b_key"))
    .values(pending_payment=None)
)


def _by_key(session: Session, key: str) -> PaymentRow | None:
    return session.scalars(
        select(PaymentRow).where(PaymentRow.idempotency_key == key)
    ).one_or_none()


def _not_marked(
    session: Session,
    site: Site,
    key: str,
    source: str,
    method: str,
    stay_id: int | None,
    reservation_id: int | None,
) -> PaymentRow | Exception:
    """Why the mark did not take: a replay (this very charge, or the one the
    same station started a moment ago: "pay" pressed twice), or the reason
    to refuse. Read only to explain: the write decided."""
    stay = booked = None
    if stay_id is not None:
        stay = session.execute(
            select(T.exited_at, T.pending_payment).where(T.id == stay_id, T.site_id == site.id)
        ).one_or_none()
        if stay is None:
            return NotFound("No car is parked on ticket {ticket}.", ticket=stay_id)
        pending, what = stay.pending_payment, "ticket"
    else:
        booked = session.execute(
            select(R.state, R.hold_expires_at, R.pending_payment).where(
                R.id == reservation_id, R.site_id == site.id
            )
        ).one_or_none()
        if booked is None:
            return NotFound("That reservation does not exist.")
        pending, what = booked.pending_payment, "reservation"
    if pending is not None:
        started = _by_key(session, pending)
        # "Pay" pressed twice at one station shows the charge it started;
        # cash and waivers are never merged (each is money in someone's hand).
        same_station = method == started.method == "card" if started else False
        if started is not None and (
            pending == key or (same_station and started.source == source[:64])
        ):
            return started
        return PaymentInProgress(what)
    if stay_id is not None:
        if stay is not None and stay.exited_at is not None:
            return NothingToPay("This ticket has already been used to exit.")
        return QuoteChanged()
    if booked is not None and booked.state != "held":
        state = booked.state.replace("_", " ")
        return ReservationError("not_held", "This reservation is {state}.", state=state)
    return ReservationError(
        "hold_expired",
        "The 5 minutes to pay for this reservation are up and the spot was "
        "released. Please start again.",
    )


def _pending_charge(
    site: Site,
    key: str,
    purpose: PaymentPurpose,
    amount: int,
    *,
    stay_id: int | None = None,
    reservation_id: int | None = None,
    account_id: int | None = None,
    source: str = "",
    paid_seen: int | None = None,
    method: str = "card",
) -> PaymentRow:
    """The ledger row under `key`: written pending (and committed) before
    the provider hears of it, with the mark on its stay or reservation, or
    the one an earlier call wrote."""
    result = site.db.write(
        lambda session: _write_pending(
            session,
            site,
            key,
            purpose,
            amount,
            stay_id=stay_id,
            reservation_id=reservation_id,
            account_id=account_id,
            source=source,
            paid_seen=paid_seen,
            method=method,
        )
    )
    if isinstance(result, Exception):
        raise result
    return result


def _write_pending(
    session: Session,
    site: Site,
    key: str,
    purpose: PaymentPurpose,
    amount: int,
    *,
    stay_id: int | None,
    reservation_id: int | None,
    account_id: int | None,
    source: str,
    paid_seen: int | None,
    method: str,
) -> PaymentRow | Exception:
    """In the caller's transaction: the pending row, if the conditional
    write marking its stay or reservation took (see `start_payment`)."""
    provider = site.payments
    cash = method != "card"
    existing = _by_key(session, key)
    if existing is not None:
        return existing
    now = site.clock.now()
    if stay_id is not None:
        # The services pass the paid amount their quote was worked out
        # from; a caller naming its own amount takes the stay as it is.
        paid = paid_seen
        if paid is None:
            paid = session.scalar(select(T.paid_amount).where(T.id == stay_id)) or 0
        marked = session.execute(
            _MARK_STAY,
            {"b_stay": stay_id, "b_site": site.id, "b_paid": paid, "b_key": key},
        )
    elif reservation_id is not None:
        marked = session.execute(
            _MARK_RESERVATION,
            {"b_reservation": reservation_id, "b_site": site.id, "b_now": now, "b_key": key},
        )
    else:
        raise ValueError("a charge is for a stay or a reservation")
    if rows_touched(marked) != 1:
        return _not_marked(session, site, key, source, method, stay_id, reservation_id)
    row = PaymentRow(
        site_id=site.id,
        idempotency_key=key,
        kind="charge",
        purpose=purpose.value,
        stay_id=stay_id,
        reservation_id=reservation_id,
        account_id=account_id,
        amount=amount,
        currency=site.tariff.currency,
        method=method,
        provider=method if cash else provider.name,
        simulated=False if cash else provider.simulated,
        status=PaymentStatus.PENDING.value,
        source=source[:64],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def claim_payment_intent(
    site: Site,
    purpose: PaymentPurpose,
    amount: int,
    intent_id: str,
    *,
    reservation_id: int | None = None,
    account_id: int | None = None,
    source: str = "",
) -> Payment:
    """Record a payment the client made itself with the provider (a Stripe
    PaymentIntent it confirmed), once checked with the provider to be for
    `amount`. One intent pays for one thing: its id is the ledger key, so
    a second claim returns the first payment, and a claim for something
    else is refused. Raises `InvalidInput` when this site's provider takes
    no such payments, `PaymentUnavailable` when it cannot be asked."""
    if not site.payments.client_payments:
        raise InvalidInput(
            "This garage takes simulated payments: pay with a test card, not a PaymentIntent."
        )
    row = _pending_charge(
        site,
        f"{site.id}:intent:{intent_id}",
        purpose,
        amount,
        reservation_id=reservation_id,
        account_id=account_id,
        source=source,
    )
    if row.purpose != purpose.value or row.reservation_id != reservation_id:
        raise InvalidInput("That PaymentIntent already paid for something else.")
    if row.status != PaymentStatus.PENDING:
        return payment_of(row)
    try:
        state = site.payments.claim_intent(intent_id, _request(site, row))
    except IntentNotSupported as exc:
        _settle(
            site,
            row.id,
            ProviderState(
                PaymentStatus.FAILED, failure_code="intent_not_supported", failure_message=str(exc)
            ),
        )
        raise InvalidInput(str(exc)) from None
    except ProviderUnavailable as exc:
        raise PaymentUnavailable(
            "The payment provider cannot be reached right now ({reason}); "
            "nothing was charged again. Try again shortly.",
            reason=exc,
        ) from exc
    return _answered(site, row.id, state)


def _answered(site: Site, payment_id: int, state: ProviderState) -> Payment:
    """What the provider said of a payment just handed to it: its reference
    kept, and the payment settled when the answer is final."""
    if state.provider_ref is not None:
        _remember_ref(site, payment_id, state.provider_ref)
    if state.status.final:
        return _settle(site, payment_id, state)
    return payment_of(_reload(site, payment_id), state.reader_message)


def _reload(site: Site, payment_id: int) -> PaymentRow:
    return site.db.read(lambda s: _load(s, site, payment_id))


def _remember_ref(site: Site, payment_id: int, ref: str) -> None:
    site.db.write(
        lambda s: s.execute(
            update(payments_table)
            .where(P.id == payment_id, P.provider_ref.is_(None))
            .values(provider_ref=ref)
        )
    )


def poll_payment(site: Site, payment_id: int) -> Payment:
    """Ask the reader how the payment is going; settles it once final."""
    row = _reload(site, payment_id)
    if row.status != PaymentStatus.PENDING or row.kind != "charge":
        return payment_of(row)
    if row.provider_ref is None:
        return payment_of(row, "Starting the card reader...")
    try:
        state = site.payments.poll(_request(site, row), row.provider_ref)
    except ProviderUnavailable as exc:
        raise PaymentUnavailable(
            "Lost contact with the card reader ({reason}). Please wait or see the attendant.",
            reason=exc,
        ) from exc
    if state.status.final:
        return _settle(site, payment_id, state)
    return payment_of(row, state.reader_message)


def cancel_payment(site: Site, payment_id: int, code: str = "cancelled") -> Payment:
    """Stop a pending payment (the driver pressed cancel, or the reader timed
    out). If the card was approved just before, the payment is settled as
    succeeded instead: the driver paid and must get what they paid for."""
    row = _reload(site, payment_id)
    if row.status != PaymentStatus.PENDING:
        return payment_of(row)
    if row.provider_ref is None:
        state = ProviderState(PaymentStatus.CANCELLED)
    else:
        try:
            state = site.payments.cancel(_request(site, row), row.provider_ref)
        except ProviderUnavailable as exc:
            raise PaymentUnavailable(
                "Could not reach the card reader to cancel ({reason}). "
                "The attendant will check this payment.",
                reason=exc,
            ) from exc
    if state.status is PaymentStatus.CANCELLED:
        message = (
            "The card reader timed out: no card was presented. You have not been charged."
            if code == "reader_timeout"
            else "Payment cancelled. You have not been charged."
        )
        state = ProviderState(
            PaymentStatus.CANCELLED, state.provider_ref, failure_code=code, failure_message=message
        )
    return _settle(site, payment_id, state)


def wait_for_payment(
    site: Site,
    payment_id: int,
    *,
    on_update: Callable[[Payment], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Payment:
    """Poll until the payment is final; cancel it when the driver has not
    presented a card within `payments.reader_timeout_seconds` (site clock).
    `on_update` sees every state (for a live status line)."""
    settings = site.settings.payments
    while True:
        payment = poll_payment(site, payment_id)
        if on_update is not None:
            on_update(payment)
        if payment.final:
            return payment
        waited = site.clock.now() - payment.created_at
        if waited >= timedelta(seconds=settings.reader_timeout_seconds):
            return cancel_payment(site, payment_id, code="reader_timeout")
        sleep(settings.poll_interval_seconds)


def _settle(
    site: Site,
    payment_id: int,
    state: ProviderState,
    also: Callable[[Session], None] | None = None,
) -> Payment:
    """Make the provider's final answer the ledger's, with its effect, once.
    `also` runs in that transaction, when this call is the one settling."""
    refunds: list[PaymentRow] = []
    row = site.db.write(lambda s: _settle_in(s, site, payment_id, state, also, refunds))
    if refunds:
        send_refund(site, refunds[0])
        row = _reload(site, payment_id)
    return payment_of(row)


def _settle_in(
    session: Session,
    site: Site,
    payment_id: int,
    state: ProviderState,
    also: Callable[[Session], None] | None,
    refunds: list[PaymentRow],
) -> PaymentRow:
    """`_settle`'s work in the caller's transaction; refunds it records (an
    effect that can no longer be delivered) are appended to `refunds`."""
    refunds.clear()  # a rerun of the unit of work starts afresh
    now = site.clock.now()
    changed = session.execute(
        update(payments_table)
        .where(P.id == payment_id, P.status == PaymentStatus.PENDING.value)
        .values(
            status=state.status.value,
            provider_ref=func.coalesce(P.provider_ref, state.provider_ref),
            card_brand=state.card_brand,
            card_last4=state.card_last4,
            failure_code=state.failure_code,
            failure_message=(state.failure_message or "")[:255] or None,
            settled_at=now,
        )
    )
    row = _load(session, site, payment_id)
    if rows_touched(changed) != 1:
        return row  # settled already, by us or another process
    session.refresh(row)
    if row.kind == "charge":
        # The stay or reservation may take its next charge (none twice).
        if row.stay_id is not None:
            session.execute(_UNMARK_STAY, {"b_stay": row.stay_id, "b_key": row.idempotency_key})
        if row.reservation_id is not None:
            session.execute(
                _UNMARK_RESERVATION,
                {"b_reservation": row.reservation_id, "b_key": row.idempotency_key},
            )
    if also is not None:
        also(session)
    if row.kind == "refund":
        _settle_refund(session, site, row, now)
    elif row.status == PaymentStatus.SUCCEEDED:
        reason = _apply_charge(session, site, row, now)
        if reason:
            # Recorded with the settlement: a crash now leaves a pending
            # refund for the reconciler, never a charge kept for nothing.
            refund = record_refund(session, site, row.id, None, reason=reason)
            if isinstance(refund, PaymentRow):
                refunds.append(refund)
    else:
        record_event(
            session,
            site.id,
            now,
            EventKind.PAYMENT_FAILED,
            f"Payment {row.status} ({row.failure_code or 'no reason'}): "
            f"{format_money(row.amount, row.currency)} for {row.purpose.replace('_', ' ')}",
            source=row.source,
            stay_id=row.stay_id,
            data=_event_data(row),
        )
    return row


def _event_data(row: PaymentRow) -> dict[str, object]:
    return {
        "payment_id": row.id,
        "amount": row.amount,
        "currency": row.currency,
        "purpose": row.purpose,
        "method": row.method,
        "simulated": row.simulated,
        "reservation_id": row.reservation_id,
        "failure_code": row.failure_code,
    }


def _apply_charge(session: Session, site: Site, row: PaymentRow, now: datetime) -> str | None:
    """A succeeded charge: its effect and its event. Returns a refund reason
    when the effect can no longer be delivered."""
    reason: str | None = None
    if row.purpose in (PaymentPurpose.STAY, PaymentPurpose.LOST_TICKET) and row.stay_id:
        values: dict[str, object] = {"paid_amount": stays_table.c.paid_amount + row.amount}
        if row.method != "discount":  # a discount lowers the fee, it does not settle it
            values["paid_until"] = now + site.tariff.exit_grace
        if row.purpose == PaymentPurpose.LOST_TICKET:
            values["lost_ticket"] = True
        session.execute(update(stays_table).where(stays_table.c.id == row.stay_id).values(**values))
    effect = _EFFECTS.get(row.purpose)
    if effect is not None:
        reason = effect(session, site, row, now)
    card = f" ({row.card_brand} {row.card_last4})" if row.card_last4 else ""
    record_event(
        session,
        site.id,
        now,
        EventKind.PAYMENT,
        f"Paid {format_money(row.amount, row.currency)} for "
        f"{row.purpose.replace('_', ' ')}{card}{' [simulated]' if row.simulated else ''}",
        source=row.source,
        stay_id=row.stay_id,
        data=_event_data(row),
    )
    return reason


def _settle_refund(session: Session, site: Site, row: PaymentRow, now: datetime) -> None:
    if row.status != PaymentStatus.SUCCEEDED:
        # What this refund had reserved of its charge may be refunded again.
        session.execute(
            update(payments_table)
            .where(P.id == row.refund_of, P.refunded >= row.amount)
            .values(refunded=P.refunded - row.amount)
        )
        record_event(
            session,
            site.id,
            now,
            EventKind.PAYMENT_FAILED,
            f"Refund of {format_money(row.amount, row.currency)} failed: "
            f"{row.failure_message or row.failure_code or 'no reason given'}",
            source=row.source,
            stay_id=row.stay_id,
            data=_event_data(row),
        )
        return
    if row.stay_id:
        session.execute(
            update(stays_table)
            .where(stays_table.c.id == row.stay_id)
            .values(paid_amount=stays_table.c.paid_amount - row.amount)
        )
    record_event(
        session,
        site.id,
        now,
        EventKind.REFUND,
        f"Refunded {format_money(row.amount, row.currency)} of payment {row.refund_of}: "
        f"{row.failure_message or ''}".rstrip(": "),
        source=row.source,
        stay_id=row.stay_id,
        data=_event_data(row),
    )


def refundable(site: Site, payment_id: int) -> int:
    """What is left to refund on a succeeded charge."""

    def work(session: Session) -> int:
        charge = _load(session, site, payment_id)
        if charge.kind != "charge" or charge.status != PaymentStatus.SUCCEEDED:
            return 0
        return charge.amount - charge.refunded

    return site.db.read(work)


# The write that decides a refund: the charge's refunded total grows by the
# refund only while it stays within what was charged, so two consoles
# refunding one charge at once can never give back more than it.
_TAKE_REFUND = (
    update(payments_table)
    .where(
        P.id == bindparam("b_charge"),
        P.site_id == bindparam("b_site"),
        P.kind == "charge",
        P.status == PaymentStatus.SUCCEEDED.value,
        P.refunded + bindparam("b_amount") <= P.amount,
    )
    .values(refunded=P.refunded + bindparam("b_amount"))
)


def record_refund(
    session: Session,
    site: Site,
    payment_id: int,
    amount: int | None,
    *,
    reason: str,
    source: str = "",
    idempotency_key: str | None = None,
) -> PaymentRow | RefundRefused:
    """Write a pending refund of `amount` (default: all that is left) of a
    succeeded charge in the caller's transaction, so that whatever the
    refund is for (a cancel) and the refund commit together: a crash after
    it leaves a pending refund that the reconciler sends. Returns the row
    (an earlier one on a replay of `idempotency_key`) or why not."""
    if idempotency_key is not None:
        existing = _by_key(session, idempotency_key)
        if existing is not None:
            return existing
    charge = session.get(PaymentRow, payment_id)
    if charge is None or charge.site_id != site.id or charge.kind != "charge":
        return RefundRefused("That payment does not exist.")
    if charge.status != PaymentStatus.SUCCEEDED:
        return RefundRefused("Only a completed payment can be refunded.")
    if charge.method in ("waiver", "discount"):
        return RefundRefused("A waiver or a discount took no money: there is nothing to refund.")
    wanted = charge.amount - charge.refunded if amount is None else amount
    taken = session.execute(
        _TAKE_REFUND, {"b_charge": charge.id, "b_site": site.id, "b_amount": wanted}
    )
    if wanted <= 0 or rows_touched(taken) != 1:
        session.refresh(charge)
        left = charge.amount - charge.refunded
        return RefundRefused(
            "Only {amount} is left to refund on this payment.",
            amount=format_money(left, charge.currency),
        )
    row = PaymentRow(
        site_id=site.id,
        idempotency_key=idempotency_key or f"{site.id}:refund:{uuid.uuid4().hex}",
        kind="refund",
        purpose=charge.purpose,
        refund_of=charge.id,
        stay_id=charge.stay_id,
        reservation_id=charge.reservation_id,
        account_id=charge.account_id,
        amount=wanted,
        currency=charge.currency,
        method=charge.method,
        provider=charge.provider,
        simulated=charge.simulated,
        status=PaymentStatus.PENDING.value,
        failure_message=reason.strip()[:255],
        source=source[:64],
        created_at=site.clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def refund_payment(
    site: Site,
    payment_id: int,
    amount: int | None = None,
    *,
    reason: str,
    source: str = "",
    idempotency_key: str | None = None,
    also: Callable[[Session, int], None] | None = None,
) -> Payment:
    """Give back `amount` (default: all that is left) of a succeeded charge,
    as its own ledger row. Raises `RefundRefused` when there is nothing (or
    not that much) left to refund. `also(session, amount)` runs in the
    transaction that records the refund (the console's audit row); not on
    a replay of the same idempotency key."""
    if not reason.strip():
        raise InvalidInput("A refund needs a reason.")

    def write(session: Session) -> PaymentRow | RefundRefused:
        replay = _by_key(session, idempotency_key) if idempotency_key is not None else None
        row = record_refund(
            session,
            site,
            payment_id,
            amount,
            reason=reason,
            source=source,
            idempotency_key=idempotency_key,
        )
        if also is not None and replay is None and not isinstance(row, RefundRefused):
            also(session, row.amount)
        return row

    row = site.db.write(write)
    if isinstance(row, RefundRefused):
        raise row
    return send_refund(site, row)


def send_refund(site: Site, row: PaymentRow) -> Payment:
    """Hand a pending refund row to its provider and settle it (cash and
    refunds of charges the provider never saw settle at once); a row no
    longer pending is only reported."""
    if row.status != PaymentStatus.PENDING:
        return payment_of(row)
    charge = _reload(site, row.refund_of or 0)
    if charge.method == "cash" or charge.provider_ref is None:
        state = ProviderState(PaymentStatus.SUCCEEDED, failure_message=row.failure_message)
    else:
        try:
            refund = site.payments.refund(
                row.idempotency_key, charge.provider_ref, row.amount, row.currency
            )
        except ProviderUnavailable as exc:
            raise PaymentUnavailable(
                "The refund is recorded but the provider cannot be reached ({reason}); "
                "it will be completed by the reconciler.",
                reason=exc,
            ) from exc
        if refund.status is PaymentStatus.PENDING:
            return payment_of(_reload(site, row.id))
        state = ProviderState(
            refund.status,
            refund.provider_ref,
            failure_message=(
                row.failure_message
                if refund.status is PaymentStatus.SUCCEEDED
                else refund.failure_message
            ),
            failure_code=None if refund.status is PaymentStatus.SUCCEEDED else "refund_failed",
        )
    return _settle(site, row.id, state)


@dataclass(frozen=True)
class ReconcileReport:
    checked: int
    settled: tuple[Payment, ...]
    still_pending: tuple[int, ...]
    errors: tuple[str, ...]


def reconcile(site: Site, older_than: timedelta | None = None) -> ReconcileReport:
    """Settle every attempt left pending for longer than `older_than`
    (default: twice the reader timeout, so a payment a driver is still
    making is never touched) from what the provider says became of it. Never
    creates a charge: a payment the provider never took is cancelled."""
    if older_than is None:
        older_than = timedelta(seconds=2 * site.settings.payments.reader_timeout_seconds)
    cutoff = site.clock.now() - older_than
    rows = site.db.read(
        lambda s: list(
            s.scalars(
                select(PaymentRow)
                .where(
                    PaymentRow.site_id == site.id,
                    PaymentRow.status == PaymentStatus.PENDING.value,
                    PaymentRow.created_at <= cutoff,
                )
                .order_by(PaymentRow.id)
            )
        )
    )
    settled: list[Payment] = []
    pending: list[int] = []
    errors: list[str] = []
    for row in rows:
        try:
            if row.kind == "refund":
                result = send_refund(site, row)
            elif row.method == "cash":
                result = _settle(site, row.id, ProviderState(PaymentStatus.SUCCEEDED))
            else:
                state = site.payments.lookup(_request(site, row), row.provider_ref)
                result = _settle(site, row.id, state) if state.status.final else payment_of(row)
        except (ProviderUnavailable, PaymentUnavailable) as exc:
            errors.append(f"payment {row.id}: {exc}")
            continue
        (settled if result.final else pending).append(result)  # type: ignore[arg-type]
    return ReconcileReport(
        checked=len(rows),
        settled=tuple(settled),
        still_pending=tuple(p.id for p in pending),  # type: ignore[attr-defined]
        errors=tuple(errors),
    )


def payment_history(
    site: Site, account_id: int, page: int = 1, per_page: int = 20
) -> Page[Payment]:
    """The account's charges and refunds, newest first."""
    if page < 1 or not 1 <= per_page <= 100:
        raise InvalidInput("Pages start at 1 and hold 1 to 100 payments.")

    def work(session: Session) -> Page[Payment]:
        where = (PaymentRow.site_id == site.id, PaymentRow.account_id == account_id)
        total = session.scalar(select(func.count()).select_from(PaymentRow).where(*where)) or 0
        rows = session.scalars(
            select(PaymentRow)
            .where(*where)
            .order_by(PaymentRow.created_at.desc(), PaymentRow.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        return Page(tuple(payment_of(r) for r in rows), page, per_page, int(total))

    return site.db.read(work)


def payments_for(
    site: Site, *, stay_id: int | None = None, reservation_id: int | None = None
) -> list[Payment]:
    """The ledger rows (charges and refunds) of one stay or reservation,
    oldest first: what the booth looks at before a refund."""
    if (stay_id is None) == (reservation_id is None):
        raise InvalidInput("Name a stay or a reservation.")
    column = PaymentRow.stay_id if stay_id is not None else PaymentRow.reservation_id
    wanted = stay_id if stay_id is not None else reservation_id

    def work(session: Session) -> list[Payment]:
        rows = session.scalars(
            select(PaymentRow)
            .where(PaymentRow.site_id == site.id, column == wanted)
            .order_by(PaymentRow.id)
        )
        return [payment_of(row) for row in rows]

    return site.db.read(work)


def record_cash_payment(
    site: Site,
    purpose: PaymentPurpose,
    amount: int,
    *,
    stay_id: int,
    paid_seen: int | None = None,
    source: str = "",
    method: str = "cash",
    also: Callable[[Session], None] | None = None,
) -> Payment:
    """Cash taken by an attendant (or, with `method` "waiver" or "discount",
    what a supervisor waived: all that was due, or part of it): written
    pending (marking the stay, like a card charge: one at a time), then
    settled like a card payment (same effect, same event), so the paths
    cannot differ. Reports count waivers and discounts as paid for the
    stay, never as revenue. `also(session)` runs in the transaction that
    settles it (an override's audit row). Raises like `start_payment`."""
    if method not in ("cash", "waiver", "discount"):
        raise InvalidInput("An attendant records cash, a waiver or a discount.")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidInput("A payment needs a positive amount in minor units.")
    key = f"{site.id}:{method}:{uuid.uuid4().hex}"
    refunds: list[PaymentRow] = []

    # No provider to hear of it: the row and its settlement are one
    # transaction, so a failure (its audit row) leaves nothing behind.
    def work(session: Session) -> PaymentRow | Exception:
        row = _write_pending(
            session,
            site,
            key,
            purpose,
            amount,
            stay_id=stay_id,
            reservation_id=None,
            account_id=None,
            source=source,
            paid_seen=paid_seen,
            method=method,
        )
        if isinstance(row, Exception):
            return row
        succeeded = ProviderState(PaymentStatus.SUCCEEDED)
        return _settle_in(session, site, row.id, succeeded, also, refunds)

    result = site.db.write(work)
    if isinstance(result, Exception):
        raise result
    return payment_of(result)


def with_fresh_quote(start: Callable[[], Result], attempts: int = 3) -> Result:
    """Run `start` (work out what is due, then start its charge) again while
    the stay was paid meanwhile (`QuoteChanged`): the new figure decides,
    often that nothing is left to pay."""
    for _ in range(attempts - 1):
        try:
            return start()
        except QuoteChanged:
            continue
    try:
        return start()
    except QuoteChanged:
        raise PaymentInProgress("ticket") from None
