"""Paying a stay with the simulated reader: the ledger, exit grace after
paying, declines, reader timeouts, cancels, refunds, idempotency, the
reconciler, lost tickets and overstays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import SiteFactory, make_layout
from sqlalchemy import func, select

from core import services as lk
from core.clock import FixedClock
from core.domain import PaymentPurpose, SpotStatus
from core.errors import (
    InvalidInput,
    NothingToPay,
    PaymentRequired,
    PaymentUnavailable,
    RefundRefused,
    TicketAlreadyUsed,
    WrongKindOfCode,
)
from core.payments.provider import PaymentStatus
from core.services import payments, stays
from core.site import Site
from core.storage.models import Payment as PaymentRow
from core.storage.models import SimulatedCharge, Stay


def ledger(site: Site) -> list[tuple[str, str, int]]:
    rows = site.db.read(
        lambda s: s.execute(
            select(PaymentRow.kind, PaymentRow.status, PaymentRow.amount).order_by(PaymentRow.id)
        ).all()
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def paid_amount(site: Site, ticket_id: int) -> int:
    return site.db.read(lambda s: s.scalar(select(Stay.paid_amount).where(Stay.id == ticket_id)))


def pay(site: Site, code: str, card: str | None = None) -> lk.Payment:
    payment = stays.pay_ticket(site, code, card=card, kiosk="pay-1")
    return payments.wait_for_payment(site, payment.id, sleep=lambda _: None)


def test_leaving_within_the_grace_minutes_is_free(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(minutes=15)
    assert lk.exit(site, ticket.code).ticket_id == ticket.id
    assert ledger(site) == []


def test_exit_asks_for_payment_and_a_paid_ticket_leaves_within_the_exit_grace(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(minutes=95)
    with pytest.raises(PaymentRequired, match=r"Please pay \$5\.25"):
        lk.exit(site, ticket.code)
    status = stays.ticket_status(site, ticket.code)
    assert (status.due, status.quote.total) == (525, 525)
    assert status.quote.lines[0].label.startswith("Parking 1 h 35 min (small car)")

    payment = pay(site, ticket.code)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.amount, payment.card_brand, payment.card_last4) == (525, "visa", "4242")
    assert payment.simulated and payment.stay_id == ticket.id
    assert paid_amount(site, ticket.id) == 525
    # Paid: the pay station shows the exit-by time instead of a fee.
    with pytest.raises(NothingToPay, match="you may leave until 10:50"):
        stays.pay_ticket(site, ticket.code)
    clock.advance(minutes=15)
    assert lk.exit(site, ticket.code).duration_minutes == 110


def test_a_paid_ticket_leaving_after_the_exit_grace_pays_only_the_extra_time(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(minutes=95)
    pay(site, ticket.code)
    clock.advance(minutes=40)
    with pytest.raises(PaymentRequired, match=r"\$1\.50"):
        lk.exit(site, ticket.code)
    status = stays.ticket_status(site, ticket.code)
    assert (status.quote.total, status.quote.paid, status.due) == (675, 525, 150)
    assert pay(site, ticket.code).amount == 150
    lk.exit(site, ticket.code)
    assert ledger(site) == [("charge", "succeeded", 525), ("charge", "succeeded", 150)]


def test_declined_card_leaves_the_ticket_unpaid_and_another_card_can_pay(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "medium")
    clock.advance(hours=2)
    declined = pay(site, ticket.code, card="tok_insufficient_funds")
    assert declined.status is PaymentStatus.FAILED
    assert declined.failure_code == "insufficient_funds"
    assert "declined" in (declined.message or "")
    assert paid_amount(site, ticket.id) == 0
    with pytest.raises(PaymentRequired):
        lk.exit(site, ticket.code)
    assert pay(site, ticket.code, card="tok_mastercard").card_last4 == "4444"
    lk.exit(site, ticket.code)
    kinds = [e.kind for e in lk.recent_events(site).events]
    assert "payment_failed" in kinds and "payment" in kinds


def test_reader_timeout_cancels_the_payment_and_charges_nothing(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    started = stays.pay_ticket(site, ticket.code, card="tok_timeout")
    seen: list[str | None] = []
    result = payments.wait_for_payment(
        site,
        started.id,
        on_update=lambda p: seen.append(p.reader_message),
        sleep=lambda seconds: clock.advance(seconds=30),
    )
    assert result.status is PaymentStatus.CANCELLED
    assert result.failure_code == "reader_timeout"
    assert "timed out" in (result.message or "")
    assert seen[0] and "card" in seen[0]
    charge = site.db.read(lambda s: s.scalars(select(SimulatedCharge)).one())
    assert charge.status == "cancelled"
    assert paid_amount(site, ticket.id) == 0


def test_driver_cancels_while_the_reader_waits(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    started = stays.pay_ticket(site, ticket.code, card="tok_timeout")
    assert started.status is PaymentStatus.PENDING
    cancelled = payments.cancel_payment(site, started.id)
    assert cancelled.status is PaymentStatus.CANCELLED
    assert "not been charged" in (cancelled.message or "")
    # Cancelling again or polling changes nothing.
    assert payments.cancel_payment(site, started.id).status is PaymentStatus.CANCELLED
    assert payments.poll_payment(site, started.id).status is PaymentStatus.CANCELLED


def test_same_idempotency_key_starts_one_payment(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    first = payments.start_payment(
        site, PaymentPurpose.STAY, 300, stay_id=ticket.id, idempotency_key="k-1"
    )
    again = payments.start_payment(
        site, PaymentPurpose.STAY, 300, stay_id=ticket.id, idempotency_key="k-1"
    )
    assert first.id == again.id
    assert site.db.read(lambda s: s.scalar(select(func.count()).select_from(SimulatedCharge))) == 1


def test_a_payment_settles_once_however_often_it_is_polled(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    started = stays.pay_ticket(site, ticket.code)
    results = [payments.poll_payment(site, started.id) for _ in range(3)]
    assert all(r.succeeded for r in results)
    assert paid_amount(site, ticket.id) == results[0].amount
    assert sum(e.kind == "payment" for e in lk.recent_events(site).events) == 1


def test_unreachable_reader_says_so_and_the_reconciler_closes_the_attempt(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    with pytest.raises(PaymentUnavailable, match="not been charged"):
        stays.pay_ticket(site, ticket.code, card="tok_offline")
    assert ledger(site) == [("charge", "pending", 300)]
    # Too recent: a payment still in progress is never touched.
    assert payments.reconcile(site).checked == 0
    clock.advance(minutes=10)
    report = payments.reconcile(site)
    assert [p.status for p in report.settled] == [PaymentStatus.CANCELLED]
    assert ledger(site) == [("charge", "cancelled", 300)]


def test_reconciler_completes_a_payment_whose_process_died_after_the_reader_approved(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    started = stays.pay_ticket(site, ticket.code)
    # The reader approves, then the kiosk dies before settling the ledger.
    row = site.db.read(lambda s: s.get(PaymentRow, started.id))
    assert row is not None and row.provider_ref is not None
    site.payments.poll(payments._request(site, row), row.provider_ref)
    assert ledger(site) == [("charge", "pending", 300)]
    clock.advance(minutes=10)
    report = payments.reconcile(site)
    assert [p.status for p in report.settled] == [PaymentStatus.SUCCEEDED]
    assert paid_amount(site, ticket.id) == 300
    assert payments.reconcile(site).checked == 0  # nothing left: no second charge
    lk.exit(site, ticket.code)


def test_refunds_are_their_own_rows_and_cannot_exceed_the_charge(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    charge = pay(site, ticket.code)
    assert charge.amount == 600
    with pytest.raises(InvalidInput):
        payments.refund_payment(site, charge.id, 100, reason=" ")
    partial = payments.refund_payment(site, charge.id, 200, reason="barrier was stuck")
    assert (partial.kind, partial.status, partial.refund_of) == (
        "refund",
        PaymentStatus.SUCCEEDED,
        charge.id,
    )
    assert paid_amount(site, ticket.id) == 400
    with pytest.raises(RefundRefused, match=r"Only \$4\.00 is left"):
        payments.refund_payment(site, charge.id, 500, reason="too much")
    rest = payments.refund_payment(site, charge.id, reason="goodwill")
    assert rest.amount == 400 and payments.refundable(site, charge.id) == 0
    assert ledger(site) == [
        ("charge", "succeeded", 600),
        ("refund", "succeeded", 200),
        ("refund", "succeeded", 400),
    ]


def test_reservation_code_at_the_pay_station_is_refused(site: Site) -> None:
    with pytest.raises(WrongKindOfCode):
        stays.pay_ticket(site, "R12-ABCDEF")


def test_used_ticket_cannot_be_paid_again(site: Site) -> None:
    ticket = lk.enter(site, "small")
    lk.exit(site, ticket.code)
    with pytest.raises(NothingToPay, match="already been used"):
        stays.pay_ticket(site, ticket.code)
    with pytest.raises(TicketAlreadyUsed):
        lk.exit(site, ticket.code)


def test_lost_ticket_is_found_by_plate_or_spot_and_charged_by_the_tariff_rule(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small", plate="LOST 1")
    clock.advance(hours=1)
    (found,) = stays.find_stays(site, plate="lost 1")
    assert found.ticket_id == ticket.id
    assert [s.ticket_id for s in stays.find_stays(site, spot_label=ticket.spot_label)] == [
        ticket.id
    ]
    quote = stays.lost_ticket_quote(site, ticket.id)
    assert quote.due == 2500  # "greater" of the $25 fee and $3.00 of parking
    assert "Lost ticket fee" in quote.lines[0].label
    with pytest.raises(PaymentRequired):
        stays.exit_paid_stay(site, ticket.id)
    payment = stays.pay_lost_ticket(site, ticket.id)
    assert payments.wait_for_payment(site, payment.id, sleep=lambda _: None).succeeded
    result = stays.exit_paid_stay(site, ticket.id, kiosk="booth", reason="lost ticket")
    assert result.ticket_id == ticket.id
    assert lk.recent_events(site).events[-1].message.startswith("Exit without ticket")


def test_overstay_is_noted_once_and_its_spot_is_not_given_to_a_walk_in(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=2), max_stay_minutes=60)
    ticket = lk.enter(site, "small")
    clock.advance(minutes=61)
    assert stays.note_overstays(site) == [ticket.id]
    assert stays.note_overstays(site) == []
    spot = next(s for s in lk.snapshot(site).spots if s.label == ticket.spot_label)
    assert spot.status is SpotStatus.OVERSTAY
    assert lk.availability(site).for_size("small").occupied == 1
    # The overstayer's claim has ended, but its spot is not free.
    other = lk.enter(site, "small")
    assert other.spot_label != ticket.spot_label
    with pytest.raises(lk.LotFull):
        lk.enter(site, "small")
    status = stays.ticket_status(site, ticket.code)
    assert any("Overstay fee" in line.label for line in status.quote.lines)
    assert [e.kind for e in lk.recent_events(site).events].count("overstay") == 1


def test_payment_history_is_newest_first_and_paginated(site: Site, clock: FixedClock) -> None:
    account = lk.create_account(site, "Ada", "ada@example.com", "correct horse battery")
    for hours in (1, 2, 3):
        ticket = lk.enter(site, "small")
        clock.advance(hours=hours)
        stays_payment = payments.start_payment(
            site, PaymentPurpose.STAY, 100 * hours, stay_id=ticket.id, account_id=account.id
        )
        payments.wait_for_payment(site, stays_payment.id, sleep=lambda _: None)
    first = payments.payment_history(site, account.id, page=1, per_page=2)
    assert [p.amount for p in first.items] == [300, 200]
    assert (first.total, first.pages) == (3, 2)
    assert [p.amount for p in payments.payment_history(site, account.id, 2, 2).items] == [100]
    assert payments.payment_history(site, account.id + 1).items == ()
    assert timedelta(0) < first.items[0].created_at - first.items[1].created_at
