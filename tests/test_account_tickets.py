"""Walk-in tickets added to an account, on SQLite and MariaDB: an account
sees a walk-in's stay only once it proved it holds the ticket (its code,
checked as the pay station checks it), never by a registered plate alone;
one ticket belongs to one account, decided by one conditional write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, update

from core import services as lk
from core.clock import FixedClock
from core.domain import Account
from core.errors import (
    NotFound,
    TicketAlreadyUsed,
    TicketError,
    TicketSignatureInvalid,
    TicketUnknown,
)
from core.services import accounts
from core.services.accounts import (
    TicketInAnotherAccount,
    TooManyTicketTries,
    add_ticket_to_account,
)
from core.site import Site
from core.storage.models import stays_table

PASSWORD = "correct horse battery"


def account(site: Site, name: str = "Ada") -> Account:
    return lk.create_account(site, name, f"{name.lower()}@example.com", PASSWORD)


def stays_seen(site: Site, account_id: int) -> list[int]:
    return [s.ticket_id for s in lk.account_spots(site, account_id).stays]


def invalid_ticket_events(site: Site) -> list[str]:
    events = lk.recent_events(site, limit=200).events
    return [e.data.get("reason", "") for e in events if e.kind == "invalid_ticket"]


def test_a_registered_plate_alone_does_not_show_a_walk_ins_stay(site: Site) -> None:
    """Needs `account_spots` to stop matching stays by plate (reservations.py)."""
    ada = account(site)
    lk.add_vehicle(site, ada.id, "KLX 481", "small")
    ticket = lk.enter(site, "small", plate="KLX 481")  # someone's walk-in with that plate
    assert stays_seen(site, ada.id) == []
    status = add_ticket_to_account(site, ada.id, ticket.code)
    assert (status.ticket_id, status.spot_label) == (ticket.id, ticket.spot_label)
    assert stays_seen(site, ada.id) == [ticket.id]


def test_a_ticket_is_added_by_its_full_or_its_short_code(site: Site) -> None:
    ada = account(site)
    by_qr = lk.enter(site, "small")
    by_hand = lk.enter(site, "medium")
    add_ticket_to_account(site, ada.id, by_qr.code, source="kiosk-2")
    add_ticket_to_account(site, ada.id, by_hand.short_code.lower())
    assert sorted(stays_seen(site, ada.id)) == sorted([by_qr.id, by_hand.id])
    added = [e for e in lk.recent_events(site).events if e.kind == "ticket_added"]
    assert [(e.ticket_id, e.source) for e in added] == [(by_qr.id, "kiosk-2"), (by_hand.id, "")]


def test_adding_it_again_changes_nothing(site: Site) -> None:
    ada = account(site)
    ticket = lk.enter(site, "small")
    first = add_ticket_to_account(site, ada.id, ticket.code)
    assert add_ticket_to_account(site, ada.id, ticket.short_code) == first
    assert stays_seen(site, ada.id) == [ticket.id]
    assert len([e for e in lk.recent_events(site).events if e.kind == "ticket_added"]) == 1


def other(text: str) -> str:
    """The same code with its last character changed."""
    return text[:-1] + ("B" if text[-1] == "A" else "A")


MANGLED: dict[str, Callable[[str, str], str]] = {
    "altered-qr": lambda code, short: other(code),
    "wrong-check": lambda code, short: other(short),
    "other-ticket-id": lambda code, short: "999" + short[short.index("-") :],
    "garbage": lambda code, short: "not a code",
}


@pytest.mark.parametrize("how", MANGLED)
def test_a_code_that_does_not_check_out_is_refused_and_recorded(site: Site, how: str) -> None:
    ada = account(site)
    ticket = lk.enter(site, "small")
    with pytest.raises(TicketError):
        add_ticket_to_account(site, ada.id, MANGLED[how](ticket.code, ticket.short_code))
    assert stays_seen(site, ada.id) == []
    assert len(invalid_ticket_events(site)) == 1


def test_a_ticket_in_another_account_is_refused(site: Site) -> None:
    ada, bob = account(site, "Ada"), account(site, "Bob")
    ticket = lk.enter(site, "small")
    add_ticket_to_account(site, bob.id, ticket.code)
    with pytest.raises(TicketInAnotherAccount, match="another account"):
        add_ticket_to_account(site, ada.id, ticket.code)
    assert stays_seen(site, ada.id) == [] and stays_seen(site, bob.id) == [ticket.id]


def test_a_reservations_stay_is_its_accounts_already(site: Site, clock: FixedClock) -> None:
    ada, bob = account(site, "Ada"), account(site, "Bob")
    start = clock.now() + timedelta(hours=1)
    held = lk.hold(site, ada.id, "small", start, start + timedelta(hours=2))
    lk.wait_for_payment(site, lk.pay_reservation(site, held.id, card="tok_visa").id)
    clock.advance(hours=1)
    ticket = lk.check_in(site, lk.get_reservation(site, held.id).code)
    with pytest.raises(TicketInAnotherAccount):
        add_ticket_to_account(site, bob.id, ticket.code)
    assert add_ticket_to_account(site, ada.id, ticket.code).ticket_id == ticket.id


def test_a_ticket_that_left_cannot_be_added(site: Site) -> None:
    ada = account(site)
    ticket = lk.enter(site, "small")
    lk.exit(site, ticket.code)  # within the free minutes
    with pytest.raises(TicketAlreadyUsed):
        add_ticket_to_account(site, ada.id, ticket.code)
    assert invalid_ticket_events(site) == ["already_used"]


def test_an_unknown_account_is_refused(site: Site) -> None:
    ticket = lk.enter(site, "small")
    with pytest.raises(NotFound):
        add_ticket_to_account(site, 999, ticket.code)


def test_guessing_short_codes_is_slowed_down(site: Site, clock: FixedClock) -> None:
    ada = account(site)
    ticket = lk.enter(site, "small")
    number = ticket.short_code.split("-")[0]
    for guess in ("AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD", "EEEEEE")[: accounts.FREE_FAILURES]:
        with pytest.raises((TicketSignatureInvalid, TicketUnknown)):
            add_ticket_to_account(site, ada.id, f"{number}-{guess}")
    with pytest.raises(TooManyTicketTries) as blocked:
        add_ticket_to_account(site, ada.id, ticket.code)  # even the right one, while blocked
    assert blocked.value.retry_after_seconds == 1
    assert len(invalid_ticket_events(site)) == accounts.FREE_FAILURES  # blocked tries: none
    clock.advance(seconds=1)
    assert add_ticket_to_account(site, ada.id, ticket.code).ticket_id == ticket.id
    # A good code does not buy more guesses: the next bad one is blocked again.
    with pytest.raises(TicketSignatureInvalid):
        add_ticket_to_account(site, ada.id, f"{number}-ZZZZZZ")
    with pytest.raises(TooManyTicketTries):
        add_ticket_to_account(site, ada.id, ticket.code)


def add_at_once(site: Site, people: list[Account], code: str) -> list[int]:
    """Everyone adds the ticket at the same moment: who got it."""
    start = threading.Barrier(len(people))
    won: list[int] = []
    errors: list[BaseException] = []

    def add(person: Account) -> None:
        try:
            start.wait(timeout=30)
            add_ticket_to_account(site, person.id, code)
            won.append(person.id)
        except TicketInAnotherAccount:
            pass
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return won


def test_two_accounts_adding_one_ticket_at_once_one_gets_it(site: Site) -> None:
    people = [account(site, name) for name in ("Ada", "Bob", "Cy", "Dee")]
    ticket = lk.enter(site, "small")
    won = add_at_once(site, people, ticket.code)
    assert len(won) == 1
    assert [p.id for p in people if stays_seen(site, p.id)] == won


def test_the_race_test_catches_a_link_that_does_not_check_the_holder(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = stays_table.c
    blind = (
        update(stays_table)
        .where(t.id == bindparam("stay"), t.site_id == bindparam("site"), t.exited_at.is_(None))
        .values(account_id=bindparam("account"))
    )
    monkeypatch.setattr(accounts, "_LINK_TICKET", blind)
    people = [account(site, name) for name in ("Ada", "Bob", "Cy", "Dee")]
    assert len(add_at_once(site, people, lk.enter(site, "small").code)) > 1
