"""Issue 14: a cancelled reservation's email says what is refunded, and an
unpaid hold that is cancelled or abandoned sends nothing."""

from __future__ import annotations

from test_reservations import account, reserve, window

from core import services as lk
from core.clock import FixedClock
from core.services.notifications import describe, plan_notifications
from core.site import Site


def cancellations(site: Site) -> list[tuple[str, str]]:
    return [
        describe(n, site) for n in plan_notifications(site) if n.kind == "reservation_cancelled"
    ]


def test_cancelling_an_unpaid_hold_sends_nothing(site: Site, clock: FixedClock) -> None:
    held = lk.hold(site, account(site), "small", *window(clock, 26, 2))
    lk.cancel_reservation(site, held.id)
    abandoned = lk.hold(site, account(site), "small", *window(clock, 30, 2))
    clock.advance(minutes=6)
    lk.expire_holds(site)
    assert lk.get_reservation(site, abandoned.id).state == "expired"
    assert cancellations(site) == []


def test_a_cancelled_paid_reservation_is_told_its_refund(site: Site, clock: FixedClock) -> None:
    booked = reserve(site, clock, start_hours=26, hours=2)
    lk.cancel_reservation(site, booked.id)
    [(subject, text)] = cancellations(site)
    assert subject == f"Reservation {booked.short_code} was cancelled"
    assert "$7.00 is refunded to the card you paid with" in text


def test_a_late_cancel_with_nothing_back_says_so(site: Site, clock: FixedClock) -> None:
    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(hours=1, minutes=5)  # started: no refund
    lk.cancel_reservation(site, booked.id)
    [(_, text)] = cancellations(site)
    assert "refund" not in text.lower().replace("no refund is due", "")
    assert "No refund is due" in text


def test_a_no_show_release_mentions_no_refund_going_back(site: Site, clock: FixedClock) -> None:
    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(hours=1, minutes=31)
    assert lk.release_no_shows(site) == [booked.id]
    [(subject, text)] = cancellations(site)
    assert "released" in subject and "goes back to the card" not in text
