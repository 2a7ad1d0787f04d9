"""Attendant overrides: each needs a reason and a signed-in staff member,
writes an audit row and an `override` event, and the supervisor-only ones
refuse an attendant."""

from __future__ import annotations

import helpers
import pytest
from conftest import SiteFactory, make_layout
from sqlalchemy import select

from core import services as lk
from core.clock import FixedClock
from core.errors import InvalidInput, NotFound, NothingToPay, PaymentRequired
from core.services.audit import audit_entries, verify_audit
from core.services.overrides import (
    NotAllowed,
    manual_exit,
    open_gate,
    set_out_of_service,
    waive_fee,
)
from core.services.staff import Staff, add_staff
from core.site import Site
from core.storage.models import Payment


@pytest.fixture
def ana(site: Site) -> Staff:
    return add_staff(site, "Ana", "attendant", "1357")


@pytest.fixture
def sam(site: Site) -> Staff:
    return add_staff(site, "Sam", "supervisor", "2468")


def overrides(site: Site) -> list[str]:
    return [e.message for e in lk.recent_events(site).events if e.kind == "override"]


def test_opening_the_gate_needs_a_reason_and_is_audited(site: Site, ana: Staff) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        open_gate(site, ana, "exit-1", " ")
    open_gate(site, ana, "exit-1", "barrier stuck on a van")
    assert overrides(site) == ["Gate exit-1 opened by Ana: barrier stuck on a van"]
    latest = audit_entries(site)[0]
    assert (latest.staff_name, latest.action, latest.target) == ("Ana", "gate_opened", "exit-1")
    assert verify_audit(site).ok


def test_manual_exit_asks_for_the_fee_until_a_supervisor_waives_it(
    site: Site, clock: FixedClock, ana: Staff, sam: Staff
) -> None:
    ticket = lk.enter(site, "small", plate="AB 123")
    clock.advance(hours=3)
    with pytest.raises(PaymentRequired):
        manual_exit(site, ana, ticket.id, "driver's ticket is soaked")
    with pytest.raises(NotAllowed, match="supervisor"):
        waive_fee(site, ana, ticket.id, "regular customer")
    due = lk.ticket_status(site, ticket.code).due
    assert waive_fee(site, sam, ticket.id, "barrier hit the car", amount=300) == 300
    assert lk.ticket_status(site, ticket.code).due == due - 300  # a discount
    assert waive_fee(site, sam, ticket.id, "barrier hit the car") == due - 300
    with pytest.raises(NothingToPay):
        waive_fee(site, sam, ticket.id, "again")
    result = manual_exit(site, ana, ticket.id, "driver's ticket is soaked")
    assert result.ticket_id == ticket.id
    assert lk.availability(site).for_size("small").occupied == 0
    assert [e.action for e in audit_entries(site)][:3] == [
        "manual_exit",
        "fee_waived",
        "fee_waived",
    ]
    # Waivers are in the ledger as such: the stay counts as paid, no revenue.
    ledger = site.db.read(
        lambda s: [(p.method, p.amount) for p in s.scalars(select(Payment).order_by(Payment.id))]
    )
    assert ledger == [("discount", 300), ("waiver", due - 300)]
    assert verify_audit(site).ok


def test_a_spot_in_use_cannot_be_closed_and_a_closed_spot_is_never_given_out(
    make_site: SiteFactory,
) -> None:
    site = make_site(make_layout(small=2))
    staff = add_staff(site, "Ana", "attendant", "1357")
    ticket = lk.enter(site, "small")
    with pytest.raises(InvalidInput, match="has a car or a booking"):
        set_out_of_service(site, staff, ticket.spot_label, True, "oil leak")
    free = next(s.label for s in lk.snapshot(site).spots if s.label != ticket.spot_label)
    set_out_of_service(site, staff, free, True, "oil leak")
    assert lk.availability(site).for_size("small").out_of_service == 1
    with pytest.raises(lk.LotFull):
        lk.enter(site, "small")  # the other spot is taken, this one closed
    set_out_of_service(site, staff, free, False, "cleaned up")
    assert lk.enter(site, "small").spot_label == free
    assert [a.action for a in audit_entries(site)][:2] == ["spot_reopened", "spot_closed"]
    with pytest.raises(NotFound):
        set_out_of_service(site, staff, "ZZ-99", True, "no such spot")


def test_a_car_moves_only_to_a_free_fitting_spot_and_frees_its_old_one(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    from core.services.overrides import move_car

    site = make_site(make_layout(small=2, large=1))
    staff = add_staff(site, "Ana", "attendant", "1357")
    first = lk.enter(site, "small")
    second = lk.enter(site, "small")
    with pytest.raises(InvalidInput, match="not free"):
        move_car(site, staff, first.id, second.spot_label, "make room")
    large = next(s.label for s in lk.snapshot(site).spots if s.size.label == "large")
    clock.advance(minutes=10)
    assert move_car(site, staff, first.id, large, "blocking the ramp") == large
    states = {s.label: s.status.value for s in lk.snapshot(site).spots}
    assert states[first.spot_label] == "free" and states[large] == "occupied"
    assert overrides(site)[-1].startswith(f"Ticket {first.id} moved from {first.spot_label}")
    # The old spot can be closed now; the car still leaves with its ticket.
    set_out_of_service(site, staff, first.spot_label, True, "repaint lines")
    assert lk.exit(site, first.code).spot_label == large
    assert not helpers.overlapping_claims(site) and verify_audit(site).ok


def test_cancelling_a_reservation_frees_its_spot_refunds_by_the_rule_and_is_audited(
    site: Site, ana: Staff
) -> None:
    from core.errors import ReservationError, TicketSignatureInvalid
    from core.services.overrides import cancel_reservation
    from core.services.reservations import ReservationState

    booked = helpers.paid_reservation(site, start_in_hours=26)
    wrong = booked.short_code[:-1] + ("A" if booked.short_code[-1] != "A" else "B")
    with pytest.raises(TicketSignatureInvalid):
        cancel_reservation(site, ana, wrong, "driver phoned")  # a typo finds nobody
    with pytest.raises(InvalidInput, match="reason"):
        cancel_reservation(site, ana, booked.short_code, "")
    assert lk.get_reservation(site, booked.id).state is ReservationState.CONFIRMED

    done = cancel_reservation(site, ana, booked.short_code, "driver phoned, flight cancelled")
    assert done.reservation.state is ReservationState.CANCELLED
    assert done.refund_amount == booked.price  # a day ahead: all of it back
    assert done.refund is not None and done.refund.succeeded
    latest = audit_entries(site)[0]
    assert (latest.staff_name, latest.action) == ("Ana", "reservation_cancelled")
    assert latest.data["refund"] == booked.price and latest.reason.startswith("driver phoned")
    assert any(
        m.startswith(f"Reservation {booked.short_code} cancelled by Ana") for m in overrides(site)
    )
    with pytest.raises(ReservationError, match="no longer be cancelled"):
        cancel_reservation(site, ana, booked.code, "twice")
    assert len([e for e in audit_entries(site) if e.action == "reservation_cancelled"]) == 1
    assert verify_audit(site).ok


def test_only_a_supervisor_refunds_and_never_more_than_was_paid(
    site: Site, clock: FixedClock, ana: Staff, sam: Staff
) -> None:
    from core.errors import RefundRefused
    from core.services.overrides import refund

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    helpers.pay_and_exit(site, ticket.code)
    (charge,) = lk.payments_for(site, stay_id=ticket.id)
    with pytest.raises(NotAllowed, match="supervisor"):
        refund(site, ana, charge.id, "charged twice")
    assert refund(site, sam, charge.id, "barrier was stuck", amount=100).amount == 100
    with pytest.raises(RefundRefused, match="left to refund"):
        refund(site, sam, charge.id, "again", amount=charge.amount)
    rest = refund(site, sam, charge.id, "the rest too")
    assert rest.amount == charge.amount - 100 and rest.succeeded
    ledger = [(p.kind, p.amount) for p in lk.payments_for(site, stay_id=ticket.id)]
    assert ledger == [("charge", charge.amount), ("refund", 100), ("refund", charge.amount - 100)]
    refunds = [e for e in audit_entries(site) if e.action == "refund"]
    assert [(e.staff_name, e.data["amount"]) for e in refunds] == [
        ("Sam", charge.amount - 100),
        ("Sam", 100),
    ]
    assert verify_audit(site).ok


def test_a_waiver_and_its_audit_row_are_one_transaction(
    site: Site, clock: FixedClock, sam: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.services import overrides as module

    ticket = lk.enter(site, "small")
    clock.advance(hours=3)
    due = lk.ticket_status(site, ticket.code).due

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the audit chain could not be written")

    monkeypatch.setattr(module, "record_audit", broken)
    with pytest.raises(RuntimeError):
        waive_fee(site, sam, ticket.id, "barrier hit the car")
    assert lk.ticket_status(site, ticket.code).due == due  # no waiver without its audit row
    monkeypatch.undo()
    assert waive_fee(site, sam, ticket.id, "barrier hit the car") == due
    assert audit_entries(site)[0].action == "fee_waived" and verify_audit(site).ok


def test_a_waiver_took_no_money_so_it_cannot_be_refunded(
    site: Site, clock: FixedClock, sam: Staff
) -> None:
    from core.errors import RefundRefused
    from core.services.overrides import refund

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    waive_fee(site, sam, ticket.id, "barrier hit the car")
    (waiver,) = lk.payments_for(site, stay_id=ticket.id)
    with pytest.raises(RefundRefused, match="took no money"):
        refund(site, sam, waiver.id, "undo the waiver")
    assert [p.kind for p in lk.payments_for(site, stay_id=ticket.id)] == ["charge"]


def test_check_reason_is_the_rule_every_override_asks(site: Site, ana: Staff) -> None:
    from core.services.overrides import check_reason

    assert check_reason("  barrier   stuck ") == "barrier stuck"
    assert len(check_reason("x" * 300)) == 255
    with pytest.raises(InvalidInput, match="reason"):
        check_reason(" ok ")


def test_acknowledged_alerts_are_kept_for_every_console_and_audited_once(
    site: Site, ana: Staff, sam: Staff
) -> None:
    from core.services.overrides import acknowledge_alerts, acknowledged_alerts

    keys = ["silent:lane-1:2026-11-22T09:00:00+00:00", "overstay:7", "event:12"]
    assert acknowledged_alerts(site, keys) == frozenset()
    assert acknowledge_alerts(site, ana, keys) == tuple(sorted(keys))
    # Another console (Sam's) acknowledging them again, and one more: only
    # the new one is recorded, the others are left as Ana acknowledged them.
    assert acknowledge_alerts(site, sam, [*keys, "hold:3"]) == ("hold:3",)
    assert acknowledge_alerts(site, sam, keys) == ()
    assert acknowledged_alerts(site, [*keys, "overstay:8"]) == {*keys}
    entries = [e for e in audit_entries(site) if e.action == "alerts_acknowledged"]
    assert [(e.staff_name, e.data["keys"]) for e in entries] == [
        ("Sam", ["hold:3"]),
        ("Ana", sorted(keys)),
    ]
    assert overrides(site)[-2:] == [
        "3 alerts acknowledged by Ana: seen at the booth",
        "1 alert acknowledged by Sam: seen at the booth",
    ]
    assert verify_audit(site).ok


def test_acknowledgements_belong_to_their_site_and_long_keys_stay_unique(
    make_site: SiteFactory, ana: Staff, site: Site
) -> None:
    from core.services.overrides import acknowledge_alerts, acknowledged_alerts

    other = make_site(make_layout(small=1), site_id="north")
    long_a, long_b = "fault:" + "a" * 300 + ":1", "fault:" + "a" * 300 + ":2"
    acknowledge_alerts(site, ana, [long_a, "overstay:1"])
    assert acknowledged_alerts(site, [long_a, long_b]) == {long_a}
    assert acknowledge_alerts(site, ana, [long_b]) == (long_b,)
    assert acknowledged_alerts(other, ["overstay:1"]) == frozenset()
