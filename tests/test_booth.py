"""The booth: a lost ticket found by plate, paid in cash, let out with an
exit pass that works once; search by plate, code, reservation and email."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import timedelta

import pytest

from core import services as lk
from core.clock import FixedClock
from core.errors import InvalidInput, TicketAlreadyUsed
from core.services.booth import ExitPass, exit_pass, lost_ticket_cash, search
from core.services.staff import add_staff
from core.site import Site


def test_a_lost_ticket_is_paid_in_cash_and_the_pass_opens_the_exit_once(
    site: Site, clock: FixedClock
) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=2)
    (found,) = lk.find_stays(site, plate="klx 481")
    assert found.ticket_id == ticket.id
    with pytest.raises(InvalidInput, match="not paid"):
        exit_pass(site, ana, ticket.id)
    charge = lk.lost_ticket_quote(site, ticket.id).due
    assert lost_ticket_cash(site, ana, ticket.id) == charge > 0
    issued = exit_pass(site, ana, ticket.id)
    assert lk.exit(site, issued.code, kiosk="exit-1").ticket_id == ticket.id
    with pytest.raises(TicketAlreadyUsed):
        lk.exit(site, ticket.code)  # the lost ticket, found again: no second exit
    from core.services.audit import audit_entries, verify_audit

    assert audit_entries(site)[0].action == "exit_pass" and verify_audit(site).ok


@pytest.mark.parametrize("left_with", ["short code", "QR"])
def test_an_exit_pass_has_the_tickets_short_code_and_either_code_exits_once(
    site: Site, clock: FixedClock, left_with: str
) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=2)
    lost_ticket_cash(site, ana, ticket.id)
    issued = exit_pass(site, ana, ticket.id)
    assert issued == ExitPass(code=ticket.code, short_code=ticket.short_code)
    with pytest.raises(FrozenInstanceError):
        issued.short_code = "1-AAAAAA"  # type: ignore[misc]
    first, other = (
        (issued.short_code, issued.code)
        if left_with == "short code"
        else (issued.code, issued.short_code)
    )
    assert lk.exit(site, first.lower(), kiosk="exit-1").ticket_id == ticket.id  # as typed
    for again in (first, other, ticket.short_code):
        with pytest.raises(TicketAlreadyUsed):
            lk.exit(site, again, kiosk="exit-2")


def test_an_exit_pass_after_a_key_rotation_keeps_the_stays_key(
    site: Site, clock: FixedClock
) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    ticket = lk.enter(site, "small")
    lk.rotate_key(site)
    clock.advance(hours=2)
    lost_ticket_cash(site, ana, ticket.id)
    issued = exit_pass(site, ana, ticket.id)
    assert issued.short_code == ticket.short_code
    assert lk.exit(site, issued.short_code).ticket_id == ticket.id


def test_a_plate_is_found_however_it_is_typed(site: Site) -> None:
    first = lk.enter(site, "small", plate="KLX 481")
    lk.enter(site, "small", plate="KL 1234")
    for typed in ("KLX 481", "klx481", "KLX-481", " klx 481 "):
        found = lk.find_stays(site, plate=typed)
        assert [s.ticket_id for s in found] == [first.id], typed
    assert lk.find_stays(site, plate="KLX 48") == []


def test_search_by_plate_ticket_code_reservation_code_and_email(
    site: Site, clock: FixedClock
) -> None:
    ticket = lk.enter(site, "small", plate="AB 123")
    ada = lk.create_account(site, "Ada", "ada@example.com", "correct horse")
    start = clock.now() + timedelta(hours=5)
    held = lk.hold(site, ada.id, "small", start, start + timedelta(hours=1))
    assert [s.ticket_id for s in search(site, "ab 123").stays] == [ticket.id]
    assert [s.ticket_id for s in search(site, ticket.short_code).stays] == [ticket.id]
    assert [s.ticket_id for s in search(site, ticket.code).stays] == [ticket.id]
    assert [r.id for r in search(site, held.short_code).reservations] == [held.id]
    assert search(site, "ADA@example.com").accounts == ((ada.id, "Ada", "ada@example.com"),)
    assert search(site, "ZZ 999").empty
    with pytest.raises(InvalidInput):
        search(site, "  ")
