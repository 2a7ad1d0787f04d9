"""Issue 14, money: a reservation's stay past its window pays the tariff from
the window's end plus the overstay fee, and shows its real entry time; a
receipt's "Already paid" counts earlier payments only."""

from __future__ import annotations

from test_reservations import reserve

from core import services as lk
from core.clock import FixedClock
from core.services import payments, stays
from core.site import Site


def test_a_stay_past_its_reservation_pays_from_the_end_plus_the_overstay_fee(
    site: Site, clock: FixedClock
) -> None:
    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(minutes=56)  # checks in 4 minutes early
    entered = clock.now()
    ticket = lk.check_in(site, booked.code)
    clock.advance(hours=3, minutes=4)  # one hour past the end
    status = stays.ticket_status(site, ticket.code)
    assert status.entered_at == entered
    assert status.billed_from == booked.ends_at
    assert status.quote.parking == 300  # 1 h of small-car parking after the window
    assert status.quote.overstay == site.tariff.overstay_fee
    assert status.due == 300 + site.tariff.overstay_fee
    parking, overstay = status.quote.lines
    assert parking.label.endswith(f"entered {site.local(entered):%a %d %b %H:%M}")
    assert "after the reservation ended" in parking.label
    assert "Overstay fee" in overstay.label and overstay.amount == site.tariff.overstay_fee


def test_leaving_within_the_exit_grace_after_a_reservation_is_free(
    site: Site, clock: FixedClock
) -> None:
    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(hours=1)
    ticket = lk.check_in(site, booked.code)
    clock.advance(hours=2, minutes=10)
    assert stays.ticket_status(site, ticket.code).due == 0
    assert lk.exit(site, ticket.code).ticket_id == ticket.id


def test_a_walk_in_quote_splits_parking_and_overstay(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=25)
    quote = stays.ticket_status(site, ticket.code).quote
    assert quote.overstay == site.tariff.overstay_fee
    assert quote.parking == quote.total - quote.overstay > 0


def _pay(site: Site, code: str) -> int:
    paying = lk.pay_ticket(site, code)
    assert payments.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    return paying.id


def test_a_receipt_counts_only_earlier_payments_as_already_paid(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(minutes=20)
    first = _pay(site, ticket.code)
    receipt = lk.payment_receipt(site, first)
    assert [(line.label.split(" ")[0], line.amount) for line in receipt.lines] == [("Parking", 150)]
    assert (receipt.total, receipt.earlier_paid, receipt.amount) == (150, 0, 150)
    assert (receipt.payment.card_brand, receipt.payment.card_last4) == ("visa", "4242")
    assert receipt.exit_by == clock.now() + site.tariff.exit_grace
    clock.advance(hours=1)
    second = _pay(site, ticket.code)
    receipt = lk.payment_receipt(site, second)
    assert [line.amount for line in receipt.lines] == [450, -150]
    assert receipt.lines[1].label == "Already paid"
    assert (receipt.amount, receipt.earlier_paid, receipt.total) == (300, 150, 450)
    # Printed again later, the first receipt still says what it said.
    assert lk.payment_receipt(site, first).lines == (lk.payment_receipt(site, first).lines[0],)
