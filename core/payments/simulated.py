"""The simulated card reader: the demo's default, deterministic, and labelled
as simulated on every result and receipt. No money moves.

It keeps its own books in the `simulated_charges` table, written in its own
transactions, apart from the ledger, just as a real provider keeps its own:
a crash between the two leaves the same puzzle for the reconciler as with
Stripe, so the reconciler is exercised by the demo and the tests.

Which card the "driver presents" is chosen by a test token (the kiosk's
simulated reader offers them on screen; tests pass them in):

| token                   | outcome                                               |
| ----------------------- | ----------------------------------------------------- |
| (none), `tok_visa`      | approved, Visa ending 4242                            |
| `tok_mastercard`        | approved, Mastercard ending 4444                      |
| `tok_amex`              | approved, American Express ending 8431                |
| `tok_declined`          | declined: `card_declined`                             |
| `tok_insufficient_funds`| declined: `insufficient_funds`                        |
| `tok_expired`           | declined: `expired_card`                              |
| `tok_timeout`           | the driver never taps: pending until cancelled        |
| `tok_offline`           | the reader is offline: `start` raises ProviderUnavailable |

The reader answers on the first `poll` after `start` (except `tok_timeout`).
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import Clock
from core.payments.provider import (
    ChargeRequest,
    IntentNotSupported,
    PaymentStatus,
    ProviderState,
    ProviderUnavailable,
    ReaderHealth,
    RefundState,
)
from core.storage.database import Database, rows_touched
from core.storage.models import SimulatedCharge

APPROVED = {
    "tok_visa": ("visa", "4242"),
    "tok_mastercard": ("mastercard", "4444"),
    "tok_amex": ("amex", "8431"),
}
DECLINED = {
    "tok_declined": ("card_declined", "The card was declined. Please try another card."),
    "tok_insufficient_funds": (
        "insufficient_funds",
        "The card was declined (insufficient funds). Please try another card.",
    ),
    "tok_expired": ("expired_card", "This card has expired. Please try another card."),
}
TIMEOUT = "tok_timeout"
OFFLINE = "tok_offline"
KNOWN = {*APPROVED, *DECLINED, TIMEOUT, OFFLINE}
PRESENT_CARD = "Simulated reader: tap, insert or swipe a card"


class SimulatedProvider:
    name = "simulated"
    simulated = True
    client_payments = False

    def __init__(self, db: Database, site_id: str, clock: Clock) -> None:
        self._db = db
        self._site_id = site_id
        self._clock = clock

    def reader_health(self) -> ReaderHealth:
        """Always ready: the simulated reader lives on the kiosk's screen."""
        return ReaderHealth(True, "simulated reader (demo)")

    def _row(self, session: Session, key: str) -> SimulatedCharge | None:
        return session.get(SimulatedCharge, key)

    def _state(self, row: SimulatedCharge) -> ProviderState:
        status = PaymentStatus(row.status)
        if status is PaymentStatus.SUCCEEDED:
            brand, last4 = APPROVED.get(row.card, APPROVED["tok_visa"])
            return ProviderState(status, row.ref, card_brand=brand, card_last4=last4)
        if status is PaymentStatus.FAILED:
            code, message = DECLINED.get(row.card, DECLINED["tok_declined"])
            return ProviderState(status, row.ref, failure_code=code, failure_message=message)
        if status is PaymentStatus.CANCELLED:
            return ProviderState(
                status,
                row.ref,
                failure_code="cancelled",
                failure_message="The payment was cancelled.",
            )
        return ProviderState(status, row.ref, reader_message=PRESENT_CARD)

    def claim_intent(self, intent_id: str, request: ChargeRequest) -> ProviderState:
        raise IntentNotSupported(
            "This garage takes simulated payments: pay with a test card, not a PaymentIntent."
        )

    def start(self, request: ChargeRequest) -> ProviderState:
        """Record the charge (once per key) and wait for the card."""
        card = request.card or "tok_visa"
        if card not in KNOWN:
            card = "tok_declined"
        if card == OFFLINE:
            raise ProviderUnavailable("The simulated card reader is offline.")

        def work(session: Session) -> ProviderState:
            row = self._row(session, request.idempotency_key)
            if row is None:
                row = SimulatedCharge(
                    idempotency_key=request.idempotency_key,
                    site_id=self._site_id,
                    ref=f"sim_{secrets.token_hex(12)}",
                    amount=request.amount,
                    currency=request.currency,
                    card=card,
                    status=PaymentStatus.PENDING.value,
                    refunded=0,
                    created_at=self._clock.now(),
                )
                session.add(row)
            return self._state(row)

        return self._db.write(work)

    def poll(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """The reader's answer: decided on the first poll, from the token."""

        def work(session: Session) -> ProviderState:
            row = self._row(session, request.idempotency_key)
            if row is None:
                return ProviderState(
                    PaymentStatus.FAILED,
                    failure_code="not_found",
                    failure_message="The card reader lost this payment. Please try again.",
                )
            if row.status == PaymentStatus.PENDING and row.card != TIMEOUT:
                outcome = PaymentStatus.SUCCEEDED if row.card in APPROVED else PaymentStatus.FAILED
                session.execute(
                    update(SimulatedCharge)
                    .where(
                        SimulatedCharge.idempotency_key == row.idempotency_key,
                        SimulatedCharge.status == PaymentStatus.PENDING.value,
                    )
                    .values(status=outcome.value)
                )
                session.refresh(row)
            return self._state(row)

        return self._db.write(work)

    def cancel(self, request: ChargeRequest, provider_ref: str) -> ProviderState:
        """Cancel unless the card was already taken."""

        def work(session: Session) -> ProviderState:
            session.execute(
                update(SimulatedCharge)
                .where(
                    SimulatedCharge.idempotency_key == request.idempotency_key,
                    SimulatedCharge.status == PaymentStatus.PENDING.value,
                )
                .values(status=PaymentStatus.CANCELLED.value)
            )
            row = self._row(session, request.idempotency_key)
            if row is None:
                return ProviderState(PaymentStatus.CANCELLED, failure_code="cancelled")
            session.refresh(row)
            return self._state(row)

        return self._db.write(work)

    def lookup(self, request: ChargeRequest, provider_ref: str | None) -> ProviderState:
        """After a crash: a charge still waiting for a card is abandoned (the
        driver has long gone) and cancelled; one never recorded never
        happened."""
        row = self._db.read(lambda s: self._row(s, request.idempotency_key))
        if row is None:
            return ProviderState(PaymentStatus.CANCELLED, failure_code="never_started")
        if row.status == PaymentStatus.PENDING:
            return self.cancel(request, row.ref)
        return self._state(row)

    def refund(
        self, idempotency_key: str, provider_ref: str, amount: int, currency: str
    ) -> RefundState:
        """Give back part or all of an approved charge (once per key)."""

        def work(session: Session) -> RefundState:
            refund_ref = f"simre_{idempotency_key[-24:]}"
            done = session.get(SimulatedCharge, idempotency_key)
            if done is not None:  # this refund was made already: same answer
                return RefundState(PaymentStatus.SUCCEEDED, done.ref)
            charge = session.scalars(
                select(SimulatedCharge).where(SimulatedCharge.ref == provider_ref)
            ).one_or_none()
            if charge is None or charge.status != PaymentStatus.SUCCEEDED:
                return RefundState(
                    PaymentStatus.FAILED, failure_message="There is no approved charge to refund."
                )
            taken = session.execute(
                update(SimulatedCharge)
                .where(
                    SimulatedCharge.ref == provider_ref,
                    SimulatedCharge.refunded + amount <= SimulatedCharge.amount,
                )
                .values(refunded=SimulatedCharge.refunded + amount)
            )
            if rows_touched(taken) != 1:
                return RefundState(
                    PaymentStatus.FAILED,
                    failure_message="That is more than is left to refund on this payment.",
                )
            # The refund is booked as its own row, keyed like every other call.
            session.add(
                SimulatedCharge(
                    idempotency_key=idempotency_key,
                    site_id=self._site_id,
                    ref=refund_ref,
                    amount=amount,
                    currency=currency,
                    card="refund",
                    status=PaymentStatus.SUCCEEDED.value,
                    refunded=0,
                    created_at=self._clock.now(),
                )
            )
            return RefundState(PaymentStatus.SUCCEEDED, refund_ref)

        return self._db.write(work)
