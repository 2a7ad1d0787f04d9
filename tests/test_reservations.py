"""Advance reservations: quote, 5-minute hold, pay and confirm, cancel with
refund, check-in window, overstayer in the reserved spot, no-shows, and the
promise that a walk-in never takes a spot a reservation needs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import SiteFactory, make_layout
from helpers import overlapping_claims
from sqlalchemy import update

from core import services as lk
from core.clock import FixedClock
from core.domain import SpotStatus
from core.errors import (
    EmailTaken,
    InvalidInput,
    LotFull,
    NotFound,
    ReservationError,
    TicketSignatureInvalid,
    TicketUnknown,
    WrongKindOfCode,
)
from core.payments.provider import PaymentStatus
from core.services import payments, reservations, stays
from core.services.reservations import ReservationState
from core.site import Site
from core.storage.models import SimulatedCharge

PASSWORD = "correct horse battery"


def account(site: Site, email: str = "ada@example.com") -> int:
    """The account for `email`, opened on first use."""
    try:
        return lk.create_account(site, "Ada", email, PASSWORD).id
    except EmailTaken:
        return lk.sign_in(site, email, PASSWORD).id


def window(clock: FixedClock, start_hours: float, hours: float) -> tuple[datetime, datetime]:
    start = clock.now() + timedelta(hours=start_hours)
    return start, start + timedelta(hours=hours)


def reserve(
    site: Site,
    clock: FixedClock,
    start_hours: float = 26,
    hours: float = 2,
    card: str | None = None,
) -> reservations.Reservation:
    held = lk.hold(site, account(site), "small", *window(clock, start_hours, hours))
    payment = lk.pay_reservation(site, held.id)
    payments.wait_for_payment(site, payment.id, sleep=lambda _: None)
    return lk.get_reservation(site, held.id)


def test_quote_is_per_started_hour_and_windows_are_checked(site: Site, clock: FixedClock) -> None:
    quote = lk.quote_reservation(site, "small", *window(clock, 2, 2.5))
    assert quote.total == 3 * 350
    with pytest.raises(InvalidInput, match="at most 24 hours"):
        lk.quote_reservation(site, "small", *window(clock, 2, 25))
    with pytest.raises(InvalidInput, match="past"):
        lk.quote_reservation(site, "small", *window(clock, -2, 1))
    with pytest.raises(InvalidInput, match="end after"):
        lk.quote_reservation(site, "small", *window(clock, 2, 0))


def test_hold_claims_a_spot_for_five_minutes_then_it_is_free_again(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    held = lk.hold(site, account(site), "small", *window(clock, 1, 2))
    assert held.state is ReservationState.HELD
    assert held.hold_expires_at == clock.now() + timedelta(minutes=5)
    assert lk.availability(site).for_size("small").held == 1
    with pytest.raises(LotFull):  # the walk-in window overlaps the hold
        lk.enter(site, "small")
    clock.advance(minutes=5)
    # Expired: free in the same query that looks for free spots.
    assert lk.availability(site).for_size("small").free == 1
    with pytest.raises(ReservationError, match="5 minutes") as late:
        lk.pay_reservation(site, held.id)
    assert late.value.code == "hold_expired"
    assert lk.expire_holds(site) == [held.id]
    assert lk.get_reservation(site, held.id).state is ReservationState.EXPIRED
    assert lk.enter(site, "small").spot_label == held.spot_label


def test_no_spot_for_the_window_is_a_clear_refusal(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    lk.hold(site, account(site), "small", *window(clock, 1, 2))
    with pytest.raises(ReservationError, match="no spot for a small car") as refused:
        lk.hold(site, account(site, "bob@example.com"), "small", *window(clock, 2, 2))
    assert refused.value.code == "no_spot"


def test_paying_confirms_the_reservation_and_its_code_checks_in(
    site: Site, clock: FixedClock
) -> None:
    booked = reserve(site, clock, start_hours=26)
    assert booked.state is ReservationState.CONFIRMED
    assert booked.code.startswith("LR1.") and booked.short_code.startswith("R")
    assert lk.confirm_reservation(site, booked.id).state is ReservationState.CONFIRMED
    clock.advance(hours=26, minutes=-10)
    ticket = lk.check_in(site, booked.code, plate="AB 123", kiosk="entry-1")
    assert ticket.spot_label == booked.spot_label
    assert ticket.max_stay_until == booked.ends_at
    checked = lk.get_reservation(site, booked.id)
    assert (checked.state, checked.stay_id) == (ReservationState.CHECKED_IN, ticket.id)
    with pytest.raises(ReservationError, match="already used") as again:
        lk.check_in(site, booked.short_code)
    assert again.value.code == "already_used"
    # Prepaid until the reservation ends (plus the exit grace): leaves free.
    clock.advance(hours=2)
    assert lk.exit(site, ticket.code).ticket_id == ticket.id


def test_staying_past_the_reservation_is_billed_from_its_end(site: Site, clock: FixedClock) -> None:
    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(hours=1)
    ticket = lk.check_in(site, booked.code)
    clock.advance(hours=3)  # one hour past the end
    status = stays.ticket_status(site, ticket.code)
    # 1 h of small-car parking after the reservation, and the overstay fee.
    assert status.due == 300 + site.tariff.overstay_fee
    assert any("Overstay fee" in line.label for line in status.quote.lines)


def test_check_in_window_and_bad_codes_each_get_their_own_answer(
    site: Site, clock: FixedClock
) -> None:
    booked = reserve(site, clock, start_hours=5)
    clock.advance(hours=4)
    with pytest.raises(ReservationError, match="opens at 13:30") as early:
        lk.check_in(site, booked.code)
    assert early.value.code == "too_early"
    forged = booked.code[:-4] + ("AAAA" if not booked.code.endswith("AAAA") else "BBBB")
    with pytest.raises(TicketSignatureInvalid):
        lk.check_in(site, forged)
    with pytest.raises(TicketUnknown):
        lk.check_in(site, site.keyring().short_code("K1", 999, "LR1").text)
    ticket = lk.enter(site, "medium")
    with pytest.raises(WrongKindOfCode, match="parking ticket"):
        lk.check_in(site, ticket.code)
    with pytest.raises(WrongKindOfCode, match="reservation code"):
        lk.exit(site, booked.code)
    clock.advance(hours=1, minutes=31)
    with pytest.raises(ReservationError, match="until 14:30") as late:
        lk.check_in(site, booked.code)
    assert late.value.code == "too_late"
    reasons = [e.data.get("reason") for e in lk.recent_events(site).events]
    assert {"bad_signature", "unknown_ticket", "wrong_kind", "too_early", "too_late"} <= set(
        reasons
    )


def test_cancel_refunds_by_the_tariff_rule_and_frees_the_spot(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    early = reserve(site, clock, start_hours=48, hours=2)
    result = lk.cancel_reservation(site, early.id, account_id=early.account_id)
    assert result.reservation.state is ReservationState.CANCELLED
    assert result.refund_amount == early.price == 700
    assert result.refund is not None and result.refund.status is PaymentStatus.SUCCEEDED
    with pytest.raises(ReservationError) as twice:
        lk.cancel_reservation(site, early.id)
    assert twice.value.code == "not_cancellable"
    late = reserve(site, clock, start_hours=3, hours=2)
    assert lk.cancel_reservation(site, late.id).refund_amount == 350  # 50% within 24 h
    assert lk.enter(site, "small").spot_label == early.spot_label
    with pytest.raises(ReservationError, match="cancelled"):
        lk.check_in(site, late.code)


def test_a_hold_that_ran_out_unpaid_cannot_be_cancelled_before_the_worker_sweeps_it(
    site: Site, clock: FixedClock
) -> None:
    """It already reads as expired (and its spot is free): cancelling it is
    refused as for an expired one, and changes nothing."""
    ada = account(site)
    start = clock.now() + timedelta(days=1)
    held = lk.hold(site, ada, "small", start, start + timedelta(hours=1))
    clock.advance(minutes=6)
    assert lk.get_reservation(site, held.id).state is ReservationState.EXPIRED
    with pytest.raises(ReservationError, match="expired") as refused:
        lk.cancel_reservation(site, held.id, account_id=ada)
    assert refused.value.code == "not_cancellable"
    assert lk.get_reservation(site, held.id).state is ReservationState.EXPIRED


def test_another_accounts_reservation_is_not_found(site: Site, clock: FixedClock) -> None:
    booked = reserve(site, clock)
    other = account(site, "eve@example.com")
    with pytest.raises(NotFound):
        lk.get_reservation(site, booked.id, account_id=other)
    with pytest.raises(NotFound):
        lk.cancel_reservation(site, booked.id, account_id=other)


def test_walk_ins_never_take_a_spot_a_reservation_needs(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=2))
    reserve(site, clock, start_hours=3, hours=2)
    lk.enter(site, "small")
    with pytest.raises(LotFull):
        lk.enter(site, "small")
    assert overlapping_claims(site) == []
    assert lk.availability(site).for_size("small").reserved == 1


def test_overstayer_in_the_reserved_spot_gets_the_driver_another_spot(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1, medium=1), max_stay_minutes=120)
    walk_in = lk.enter(site, "small")  # 1S01 until 11:00
    booked = reserve(site, clock, start_hours=2, hours=2)  # 1S01 from 11:00
    assert booked.spot_label == walk_in.spot_label
    clock.advance(hours=2)
    ticket = lk.check_in(site, booked.code)
    assert ticket.spot_label != walk_in.spot_label  # the medium spot
    assert overlapping_claims(site) == []


def test_no_spot_at_check_in_is_refused_and_the_attendant_alerted(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1), max_stay_minutes=120)
    lk.enter(site, "small")
    booked = reserve(site, clock, start_hours=2, hours=2)
    clock.advance(hours=2)
    with pytest.raises(ReservationError, match="attendant has been called") as refused:
        lk.check_in(site, booked.code)
    assert refused.value.code == "no_spot"
    alert = lk.recent_events(site).events[-1]
    assert alert.kind == "check_in_refused" and alert.data["alert"] is True
    # Nothing changed: still confirmed, can check in once the car leaves.
    assert lk.get_reservation(site, booked.id).state is ReservationState.CONFIRMED


def test_no_show_is_released_after_the_grace(make_site: SiteFactory, clock: FixedClock) -> None:
    site = make_site(make_layout(small=1))
    booked = reserve(site, clock, start_hours=1, hours=3)
    clock.advance(hours=1, minutes=30)
    assert lk.release_no_shows(site) == []
    clock.advance(minutes=1)
    assert lk.release_no_shows(site) == [booked.id]
    assert lk.release_no_shows(site) == []
    assert lk.get_reservation(site, booked.id).state is ReservationState.NO_SHOW
    snapshot = {s.label: s.status for s in lk.snapshot(site).spots}
    assert snapshot[booked.spot_label] is SpotStatus.FREE


def test_payment_approved_after_the_hold_lapsed_keeps_a_free_spot_or_refunds(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    held = lk.hold(site, account(site), "small", *window(clock, 3, 2))
    paying = lk.pay_reservation(site, held.id, card="tok_timeout")
    clock.advance(minutes=6)  # the hold lapses while the reader waits
    # Someone else holds the spot now; then the first card is approved.
    lk.hold(site, account(site, "bob@example.com"), "small", *window(clock, 3, 2))
    # The driver finally taps a good card on the waiting reader.
    site.db.write(lambda s: s.execute(update(SimulatedCharge).values(card="tok_visa")))
    result = payments.poll_payment(site, paying.id)
    assert result.status is PaymentStatus.SUCCEEDED
    assert lk.get_reservation(site, held.id).state is ReservationState.EXPIRED
    refunds = [p for p in lk.payment_history(site, held.account_id).items if p.kind == "refund"]
    assert [r.amount for r in refunds] == [held.price]


def test_account_reservations_are_newest_first(site: Site, clock: FixedClock) -> None:
    ada = account(site)
    first = lk.hold(site, ada, "small", *window(clock, 30, 1))
    second = lk.hold(site, ada, "small", *window(clock, 50, 1))
    page = lk.account_reservations(site, ada)
    assert [r.id for r in page.items] == [second.id, first.id]
    assert page.total == 2


def test_account_spots_lists_upcoming_reservations_and_cars_inside(
    site: Site, clock: FixedClock
) -> None:
    ada = account(site)
    lk.add_vehicle(site, ada, "ADA 1", "small")
    upcoming = reserve(site, clock, start_hours=30)
    lapsed = lk.hold(site, ada, "small", *window(clock, 40, 1))
    inside = lk.enter(site, "small", plate="ada 1")
    lk.enter(site, "small", plate="OTHER")
    clock.advance(minutes=6)
    # A registered plate alone shows nothing: anyone can drive in with it.
    assert lk.account_spots(site, ada).stays == ()
    from core.services.accounts import add_ticket_to_account

    add_ticket_to_account(site, ada, inside.code)
    spots = lk.account_spots(site, ada)
    assert [r.id for r in spots.reservations] == [upcoming.id]
    assert lapsed.id not in [r.id for r in spots.reservations]
    assert [s.ticket_id for s in spots.stays] == [inside.id]


def test_a_declined_card_can_be_followed_by_another_and_only_one_charge_counts(
    site: Site, clock: FixedClock
) -> None:
    held = lk.hold(site, account(site), "small", *window(clock, 26, 2))
    first = lk.pay_reservation(site, held.id, card="tok_declined")
    assert not payments.wait_for_payment(site, first.id, sleep=lambda _: None).succeeded
    second = lk.pay_reservation(site, held.id, card="tok_visa")
    assert second.id != first.id
    again = lk.pay_reservation(site, held.id, card="tok_visa")  # pressed twice
    assert again.id == second.id
    assert payments.wait_for_payment(site, second.id, sleep=lambda _: None).succeeded
    assert lk.get_reservation(site, held.id).state is ReservationState.CONFIRMED
    with pytest.raises(ReservationError, match="confirmed"):
        lk.pay_reservation(site, held.id, card="tok_visa")
    history = lk.payment_history(site, held.account_id).items
    assert sorted(p.status.value for p in history) == ["failed", "succeeded"]


def test_a_reservation_code_that_does_not_fit_is_refused_and_logged_when_looked_up(
    site: Site, clock: FixedClock
) -> None:
    booked = lk.hold(site, account(site), "small", *window(clock, 26, 2))
    number, check = booked.short_code.split("-")
    forged = f"{number}-{'A' if check[0] != 'A' else 'B'}{check[1:]}"
    unknown = f"R{int(number.removeprefix('R')) + 50}-{check}"
    with pytest.raises(TicketSignatureInvalid):
        reservations.find_reservation(site, forged, source="booth")
    with pytest.raises((TicketUnknown, TicketSignatureInvalid)):
        reservations.find_reservation(site, unknown, source="booth")
    refused = [e for e in lk.recent_events(site).events if e.kind == "invalid_ticket"]
    assert len(refused) == 2
    assert {e.source for e in refused} == {"booth"}
