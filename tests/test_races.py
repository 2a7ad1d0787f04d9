"""Every state change decides by a conditional write of its row: one race
test per transition, on SQLite and MariaDB, each shown to fail when its
condition is removed.

The harness is `race.py`: four spawned OS processes (kiosks, consoles,
workers) released together by a barrier make one call each per round, on
the same ids or codes. Every transition is a `Scenario`: it prepares its own
site (its own `site_id`, so scenarios never share spots), gives the rounds'
calls, and checks the outcome exactly: one winner, the others a clear
`LotkeeperError`, the ledger and the events right. To spend the spawn once,
all scenarios race in one group of processes per database; then, on fresh
sites, once more in a group that carries every planted bug
(`_race_actions.PLANTS`: each removes one transition's condition), where
each scenario's check must fail.

A plant that only removes a condition inside one transaction cannot break
on SQLite, whose writers run one at a time (`BEGIN IMMEDIATE` decides
there): those plants are proven on MariaDB. Plants of transitions that span
transactions (payments, sign-in, keys, the exit) are proven on both.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SECRET,
    create_mysql_database,
    drop_mysql_database,
    make_layout,
    mysql_server_url,
    settings_for,
)
from race import Call, Round, call, race
from sqlalchemy import func, select

from core import services as lk
from core.clock import FixedClock
from core.layout import LotLayout
from core.services import booth, notifications, payments, shifts
from core.services.layout import load_layout
from core.services.reservations import ReservationState
from core.services.staff import Staff, add_staff
from core.site import Site, open_site
from core.storage.models import AuditRow, Claim, EventRow, Notification, Payment, Shift, Stay

pytestmark = pytest.mark.slow

WIDTH = 4  # processes racing: lanes, consoles, workers
ROUNDS = 2  # races per scenario on the honest engine
PLANTED_ROUNDS = 4  # and with its condition removed (a race is not always lost)
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PIN = "2468"


@dataclass
class Prepared:
    """A scenario's rounds and what its check needs to know."""

    rounds: list[list[Call]]
    at: datetime
    ctx: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    layout: LotLayout
    prepare: Callable[[Site, FixedClock, int], Prepared]
    plant: str | None
    plant_breaks_sqlite: bool

    @property
    def check(self) -> Callable[[Site, Prepared, list[Round]], None]:
        """Attached to `prepare` by `@checks`."""
        return self.prepare.check  # type: ignore[attr-defined,no-any-return]


SCENARIOS: dict[str, Scenario] = {}
SCENARIOS_LAYOUT: dict[str, LotLayout] = {}


def scenario(
    name: str, layout: LotLayout, plant: str | None, plant_breaks_sqlite: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `prepare` (decorated) with its `check` (`prepare.check`)."""

    def register(prepare: Callable[..., Any]) -> Callable[..., Any]:
        SCENARIOS_LAYOUT[name] = layout
        SCENARIOS[name] = Scenario(name, layout, prepare, plant, plant_breaks_sqlite)
        return prepare

    return register


def checks(prepare: Callable[..., Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def attach(check: Callable[..., None]) -> Callable[..., None]:
        prepare.check = check  # type: ignore[attr-defined]
        return check

    return attach


# -- reading the tables ----------------------------------------------------------------


def count(site: Site, model: Any, *where: Any) -> int:
    return int(
        site.db.read(
            lambda s: s.scalar(
                select(func.count()).select_from(model).where(model.site_id == site.id, *where)
            )
        )
        or 0
    )


def charges(site: Site, *where: Any) -> list[tuple[str, str, int, int]]:
    """(kind, status, amount, refunded) of the site's ledger rows."""
    rows = site.db.read(
        lambda s: s.execute(
            select(Payment.kind, Payment.status, Payment.amount, Payment.refunded)
            .where(Payment.site_id == site.id, *where)
            .order_by(Payment.id)
        ).all()
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def events_about(site: Site, kind: str, reservation_id: int) -> int:
    rows = site.db.read(
        lambda s: s.scalars(
            select(EventRow.data).where(EventRow.site_id == site.id, EventRow.kind == kind)
        ).all()
    )
    return sum(1 for data in rows if json.loads(data).get("reservation_id") == reservation_id)


def supervisor(site: Site, name: str = "Sue") -> Staff:
    return add_staff(site, name, "supervisor", PIN)


def paid_booking(site: Site, clock: FixedClock, account: int, start_in: timedelta) -> Any:
    start = clock.now() + start_in
    held = lk.hold(site, account, "small", start, start + timedelta(hours=2))
    paying = lk.pay_reservation(site, held.id)
    assert payments.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    return lk.get_reservation(site, held.id)


def new_account(site: Site, n: int) -> int:
    return lk.create_account(site, "Bea", f"bea{n}@example.com", "pass words").id


def owing_ticket(site: Site, clock: FixedClock) -> Any:
    """A car that came in an hour before the race's instant (it owes a fee)."""
    clock.set(START - timedelta(hours=1))
    ticket = lk.enter(site, "small")
    clock.set(START)
    return ticket


SIBLINGS: list[Site] = []


def sibling(site: Site, clock: FixedClock, suffix: str) -> Site:
    """Another garage like `site` in the same database (its own spots), for
    a scenario whose rounds must not share a lot."""
    settings = site.settings.model_copy(
        update={"site": site.settings.site.model_copy(update={"id": f"{site.id}-{suffix}"})}
    )
    other = open_site(settings, clock=clock, rng=random.Random(7))
    load_layout(other, SCENARIOS_LAYOUT[site.id.removeprefix("p-")], source="test")
    SIBLINGS.append(other)
    return other


# -- the transitions -------------------------------------------------------------------


@scenario("check-in", make_layout(small=12), "check_in_by_id", False)
def _check_in(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """The same reservation code scanned at four entry lanes at once."""
    account = new_account(site, 0)
    booked = [paid_booking(site, clock, account, timedelta(minutes=15)) for _ in range(rounds)]
    at = booked[0].starts_at
    return Prepared([[call("check_in", b.code, at=at)] * WIDTH for b in booked], at, booked)


@checks(_check_in)
def _check_in_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for booked, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"ReservationError": WIDTH - 1}
        assert all("already used" in o.message for o in result.refused())
        assert count(site, Stay, Stay.reservation_id == booked.id) == 1
        assert lk.get_reservation(site, booked.id).stay_id == result.won()[0].value


@scenario("check-in-or-cancel", make_layout(small=12), "cancel_by_id", True)
def _check_in_or_cancel(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A driver checks in (two lanes) while the driver and an attendant cancel."""
    staff = supervisor(site)
    account = new_account(site, 0)
    booked = [paid_booking(site, clock, account, timedelta(minutes=15)) for _ in range(rounds)]
    at = booked[0].starts_at
    return Prepared(
        [
            [
                call("check_in", b.code, at=at),
                call("cancel", b.id, account, at=at),
                call("cancel_at_booth", staff, b.code, at=at),
                call("check_in", b.code, at=at),
            ]
            for b in booked
        ],
        at,
        booked,
    )


@checks(_check_in_or_cancel)
def _check_in_or_cancel_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for booked, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"ReservationError": WIDTH - 1}
        state = lk.get_reservation(site, booked.id).state
        winner = result.won()[0]
        ledger = charges(site, Payment.reservation_id == booked.id)
        if winner.action == "check_in":
            assert state is ReservationState.CHECKED_IN
            assert count(site, Stay, Stay.reservation_id == booked.id) == 1
            assert [k for k, *_ in ledger] == ["charge"]
        else:
            assert state is ReservationState.CANCELLED
            assert count(site, Stay, Stay.reservation_id == booked.id) == 0
            refunds = [amount for kind, _, amount, _ in ledger if kind == "refund"]
            assert sum(refunds) == winner.value and len(refunds) <= 1
        cancels = events_about(site, "reservation_cancelled", booked.id)
        assert cancels == (0 if winner.action == "check_in" else 1)


@scenario("no-show-or-cancel", make_layout(small=12), "release_by_id", False)
def _no_show_or_cancel(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """Two workers release no-shows while the driver and an attendant cancel."""
    staff = supervisor(site)
    account = new_account(site, 0)
    booked = [paid_booking(site, clock, account, timedelta(minutes=15)) for _ in range(rounds)]
    at = booked[0].starts_at + site.tariff.no_show_grace + timedelta(minutes=1)
    return Prepared(
        [
            [
                call("release_no_shows", at=at),
                call("cancel", b.id, account, at=at),
                call("cancel_at_booth", staff, b.code, at=at),
                call("release_no_shows", at=at),
            ]
            for b in booked
        ],
        at,
        booked,
    )


@checks(_no_show_or_cancel)
def _no_show_or_cancel_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    released: list[int] = []
    for result in results:
        released += [i for o in result.won("release_no_shows") for i in o.value]
    assert len(released) == len(set(released))
    for booked, result in zip(prepared.ctx, results, strict=True):
        cancelled = result.won("cancel") + result.won("cancel_at_booth")
        outcomes = len(cancelled) + released.count(booked.id)
        assert outcomes == 1, result.outcomes
        state = lk.get_reservation(site, booked.id).state
        assert state is (ReservationState.CANCELLED if cancelled else ReservationState.NO_SHOW)
        refunds = [a for kind, _, a, _ in charges(site, Payment.reservation_id == booked.id)]
        assert len(refunds) == (2 if cancelled and cancelled[0].value else 1)


@scenario("hold-confirm-or-expire", make_layout(small=12), "expire_with_payment_in_flight", True)
def _confirm_or_expire(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A card approved just as the 5-minute hold runs out: two kiosks settle
    the payment while two workers expire holds."""
    account = new_account(site, 0)
    paying = []
    for _ in range(rounds):
        start = clock.now() + timedelta(hours=3)
        held = lk.hold(site, account, "small", start, start + timedelta(hours=2))
        paying.append((held, lk.pay_reservation(site, held.id)))
    at = paying[0][0].hold_expires_at + timedelta(seconds=30)
    return Prepared(
        [
            [
                call("settle", p.id, at=at),
                call("expire_holds", at=at),
                call("expire_holds", at=at),
                call("settle", p.id, at=at),
            ]
            for _, p in paying
        ],
        at,
        paying,
    )


@checks(_confirm_or_expire)
def _confirm_or_expire_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for (held, _), result in zip(prepared.ctx, results, strict=True):
        assert {o.value for o in result.won("settle")} == {"succeeded"}
        assert all(held.id not in o.value for o in result.won("expire_holds"))
        assert lk.get_reservation(site, held.id).state is ReservationState.CONFIRMED
        assert charges(site, Payment.reservation_id == held.id) == [
            ("charge", "succeeded", held.price, 0)
        ]


@scenario("pay-ticket", make_layout(small=4), "charge_without_mark", True)
def _pay_ticket(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """One ticket paid at four pay stations at once."""
    tickets = [owing_ticket(site, clock) for _ in range(rounds)]
    return Prepared(
        [[call("pay_ticket", t.code, f"pay-{i}") for i in range(WIDTH)] for t in tickets],
        START,
        tickets,
    )


def _one_charge_per_stay(site: Site, results: list[Round], stays: list[int]) -> None:
    for stay_id, result in zip(stays, results, strict=True):
        ledger = charges(site, Payment.stay_id == stay_id, Payment.status == "succeeded")
        assert len(ledger) == 1, ledger
        assert len(result.won()) == 1, result.outcomes
        assert set(result.errors()) <= {"PaymentInProgress", "NothingToPay"}
        paid = site.db.read(lambda s, i=stay_id: s.get_one(Stay, i).paid_amount)
        assert paid == ledger[0][2]
        assert lk.stay_status(site, stay_id).due == 0


@checks(_pay_ticket)
def _pay_ticket_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    _one_charge_per_stay(site, results, [t.id for t in prepared.ctx])


@scenario("pay-reservation", make_layout(small=12), "reservation_charge_without_mark", True)
def _pay_reservation(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """One held reservation paid from four places at once."""
    account = new_account(site, 0)
    held = []
    for _ in range(rounds):
        start = clock.now() + timedelta(hours=3)
        held.append(lk.hold(site, account, "small", start, start + timedelta(hours=2)))
    return Prepared(
        [[call("pay_reservation", h.id, f"kiosk-{i}") for i in range(WIDTH)] for h in held],
        START,
        held,
    )


@checks(_pay_reservation)
def _pay_reservation_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for held, result in zip(prepared.ctx, results, strict=True):
        assert charges(site, Payment.reservation_id == held.id) == [
            ("charge", "succeeded", held.price, 0)
        ]
        assert len(result.won()) == 1, result.outcomes
        assert set(result.errors()) <= {"PaymentInProgress", "ReservationError"}
        assert lk.get_reservation(site, held.id).state is ReservationState.CONFIRMED


@scenario("lost-ticket", make_layout(small=4), "charge_without_mark", True)
def _lost_ticket(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A lost ticket paid by card at two stations and in cash at two booths."""
    staff = supervisor(site)
    tickets = [owing_ticket(site, clock) for _ in range(rounds)]
    return Prepared(
        [
            [
                call("pay_lost_ticket", t.id, "pay-1"),
                call("lost_ticket_cash", staff, t.id),
                call("pay_lost_ticket", t.id, "pay-2"),
                call("lost_ticket_cash", staff, t.id),
            ]
            for t in tickets
        ],
        START,
        tickets,
    )


@checks(_lost_ticket)
def _lost_ticket_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    _one_charge_per_stay(site, results, [t.id for t in prepared.ctx])


@scenario("waive", make_layout(small=4), "charge_without_mark", True)
def _waive(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """Four supervisors waive the same fee at once."""
    staff = supervisor(site)
    tickets = [owing_ticket(site, clock) for _ in range(rounds)]
    return Prepared([[call("waive", staff, t.id)] * WIDTH for t in tickets], START, tickets)


@checks(_waive)
def _waive_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    _one_charge_per_stay(site, results, [t.id for t in prepared.ctx])
    waived = count(site, AuditRow, AuditRow.action == "fee_waived")
    assert waived == len(prepared.ctx)


@scenario("exit-pass", make_layout(small=4), "exit_twice", True)
def _exit_pass(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """An exit pass from the booth used at four exits at once."""
    staff = supervisor(site)
    passes = []
    for _ in range(rounds):
        ticket = owing_ticket(site, clock)
        booth.lost_ticket_cash(site, staff, ticket.id)
        passes.append((ticket.id, booth.exit_pass(site, staff, ticket.id).code))
    return Prepared(
        [[call("exit", code, f"exit-{i}") for i in range(WIDTH)] for _, code in passes],
        START,
        passes,
    )


@checks(_exit_pass)
def _exit_pass_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for (stay_id, _), result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"TicketAlreadyUsed": WIDTH - 1}
        assert count(site, EventRow, EventRow.kind == "exit", EventRow.stay_id == stay_id) == 1


@scenario("refund", make_layout(small=4), "refund_beyond_the_charge", False)
def _refund(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """One charge refunded in full from four consoles at once."""
    staff = supervisor(site)
    paid = []
    for _ in range(rounds):
        ticket = owing_ticket(site, clock)
        paying = lk.pay_ticket(site, ticket.code)
        paid.append(payments.wait_for_payment(site, paying.id, sleep=lambda _: None))
    return Prepared([[call("refund", staff, p.id)] * WIDTH for p in paid], START, paid)


@checks(_refund)
def _refund_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for charge, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"RefundRefused": WIDTH - 1}
        ledger = charges(site, Payment.stay_id == charge.stay_id)
        assert ledger == [
            ("charge", "succeeded", charge.amount, charge.amount),
            ("refund", "succeeded", charge.amount, 0),
        ]
        assert site.db.read(lambda s, c=charge: s.get_one(Stay, c.stay_id).paid_amount) == 0


@scenario("move-or-exit", make_layout(small=14), "move_whatever_the_stay", False)
def _move_or_exit(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """The attendant moves a car (to two spots at once) as it exits."""
    staff = supervisor(site)
    tickets = [lk.enter(site, "small") for _ in range(rounds)]
    free = [s.label for s in lk.snapshot(site).spots if s.status == "free"]
    return Prepared(
        [
            [
                call("move", staff, t.id, free[2 * i]),
                call("exit", t.code, "exit-1"),
                call("move", staff, t.id, free[2 * i + 1]),
                call("noop"),
            ]
            for i, t in enumerate(tickets)
        ],
        START,
        tickets,
    )


@checks(_move_or_exit)
def _move_or_exit_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    now = START

    def live_stay_claims(session: Any) -> list[tuple[int, int | None]]:
        return session.execute(
            select(Claim.id, Stay.id)
            .outerjoin(Stay, (Stay.claim_id == Claim.id) & Stay.exited_at.is_(None))
            .where(
                Claim.site_id == site.id,
                Claim.kind == "stay",
                Claim.cancelled_at.is_(None),
                Claim.ends_at > now,
            )
        ).all()

    # Every live stay claim belongs to a car still inside: none left behind.
    assert all(stay is not None for _, stay in site.db.read(live_stay_claims))
    for ticket, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won("exit")) == 1, result.outcomes
        assert set(result.errors()) <= {"NotFound", "InvalidInput"}
        assert count(site, Stay, Stay.id == ticket.id, Stay.exited_at.is_(None)) == 0


@scenario("out-of-service-or-entry", make_layout(small=1), "close_a_busy_spot", True)
def _close_or_enter(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """The attendant closes the last free spot as three cars take tickets
    (each round on a one-spot garage of its own)."""
    staff = supervisor(site)
    lots = [site] + [sibling(site, clock, f"{r}") for r in range(1, rounds)]
    label = lk.snapshot(site).spots[0].label
    return Prepared(
        [
            [call("close_spot", staff, label, site_id=lot.id)]
            + [call("enter", "small", site_id=lot.id)] * 3
            for lot in lots
        ],
        START,
        lots,
    )


@checks(_close_or_enter)
def _close_or_enter_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for lot, result in zip(prepared.ctx, results, strict=True):
        closed = bool(result.won("close_spot"))
        entered = len(result.won("enter"))
        assert entered <= 1 and closed != (entered == 1), result.outcomes
        assert set(result.errors()) <= {"LotFull", "InvalidInput"}
        (spot,) = lk.snapshot(lot).spots
        assert (spot.status == "out_of_service") == closed
        assert count(lot, Stay, Stay.exited_at.is_(None)) == entered


@scenario("shift-close", make_layout(small=1), "close_shift_twice", False)
def _shift_close(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A shift closed from four consoles at once: two by its owner, two by
    a supervisor closing it by its number (`lotkeeper shift close`)."""
    staff = [supervisor(site, f"Ana {i}") for i in range(rounds)]
    boss = supervisor(site, "Sue")
    opened = [shifts.open_shift(site, member, 10_000).id for member in staff]
    return Prepared(
        [
            [call("close_shift", m), call("close_shift_by_id", boss, i)] * (WIDTH // 2)
            for m, i in zip(staff, opened, strict=True)
        ],
        START,
        staff,
    )


@checks(_shift_close)
def _shift_close_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for member, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"NotFound": WIDTH - 1}
        assert count(site, Shift, Shift.staff_id == member.id, Shift.closed_at.is_(None)) == 0
    assert count(site, AuditRow, AuditRow.action == "shift_closed") == len(prepared.ctx)


@scenario("shift-open", make_layout(small=1), None, False)
def _shift_open(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A shift opened from four consoles at once. No plant: the unique key
    decides, and behind it the audit head (every audited action moves it by
    a conditional write), so removing the key alone cannot make it fail."""
    staff = [supervisor(site, f"Ana {i}") for i in range(rounds)]
    return Prepared([[call("open_shift", m)] * WIDTH for m in staff], START, staff)


@checks(_shift_open)
def _shift_open_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for member, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won()) == 1, result.outcomes
        assert result.errors() == {"InvalidInput": WIDTH - 1}
        assert count(site, Shift, Shift.staff_id == member.id) == 1


@scenario("disable-or-sign-in", make_layout(small=1), "sign_in_when_disabled", True)
def _disable_or_sign_in(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A supervisor disables an attendant while three consoles sign them in."""
    names = [f"Sam {i}" for i in range(rounds)]
    for name in names:
        add_staff(site, name, "attendant", PIN)
    return Prepared(
        [[call("disable_staff", n)] + [call("sign_in", n, PIN)] * 3 for n in names], START, names
    )


@checks(_disable_or_sign_in)
def _disable_or_sign_in_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    def trail(session: Any) -> list[tuple[int, str, str]]:
        return session.execute(
            select(AuditRow.seq, AuditRow.action, AuditRow.target)
            .where(AuditRow.site_id == site.id)
            .order_by(AuditRow.seq)
        ).all()

    rows = site.db.read(trail)
    for name, result in zip(prepared.ctx, results, strict=True):
        assert len(result.won("disable_staff")) == 1
        assert set(result.errors()) <= {"SignInFailed"}
        disabled = next(
            seq for seq, action, target in rows if (action, target) == ("staff_disabled", name)
        )
        signed = [seq for seq, action, target in rows if (action, target) == ("signed_in", name)]
        # A sign-in that counted was written before the disable, never after.
        assert all(seq < disabled for seq in signed), (signed, disabled)
        assert len(signed) == len(result.won("sign_in"))


@scenario("key-retire-or-exit", make_layout(small=12), "exit_with_a_retired_key", True)
def _retire_or_exit(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A key retired while three exits take its tickets; then, at once, more
    of its tickets at the same kiosks (whose key rings still hold it)."""
    old = lk.list_keys(site)[0].key_id
    tickets = [lk.enter(site, "small") for _ in range(6)]
    lk.rotate_key(site)
    return Prepared(
        [
            [call("retire_key", old)] + [call("exit", t.code, "exit") for t in tickets[:3]],
            [call("noop")] + [call("exit", t.code, "exit") for t in tickets[3:]],
        ],
        START,
        [old],
    )


@checks(_retire_or_exit)
def _retire_or_exit_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    during, after = results[0], results[1]
    assert len(during.won("retire_key")) == 1
    assert set(during.errors()) <= {"TicketKeyUnknown"}
    assert after.won("exit") == [] and after.errors() == {"TicketKeyUnknown": 3}


@scenario("notice", make_layout(small=4), "lease_taken_notice", False)
def _notice(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """Four workers deliver the same due notice at once."""
    account = new_account(site, 0)
    notices = []
    for r in range(rounds):
        clock.set(START + timedelta(days=r))
        booked = paid_booking(site, clock, account, timedelta(minutes=20))
        planned = notifications.plan_notifications(site)
        notices.append(next(n.id for n in planned if n.subject == f"reservation {booked.id}"))
    clock.set(START)
    return Prepared(
        [
            [call("deliver", f"worker-{i}", at=START + timedelta(days=r)) for i in range(WIDTH)]
            for r in range(rounds)
        ],
        START,
        notices,
    )


@checks(_notice)
def _notice_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for notice_id, result in zip(prepared.ctx, results, strict=True):
        handled = [o for o in result.won() if any(i == notice_id for i, _ in o.value)]
        assert len(handled) == 1, result.outcomes
        sent = count(site, Notification, Notification.id == notice_id, Notification.state == "sent")
        assert sent == 1


@scenario("idempotency-key", make_layout(small=1), None, False)
def _idempotency_key(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """One API write sent four times at once under one new Idempotency-Key.
    No plant: the key's primary key decides (the take-over of an abandoned
    key, a conditional write, is raced and planted in test_api_hardening)."""
    keys = [f"key-{r}" for r in range(rounds)]
    return Prepared([[call("idempotent", k)] * WIDTH for k in keys], START, keys)


@checks(_idempotency_key)
def _idempotency_key_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    for result in results:
        assert [o.value for o in result.won()] == ["runs"], result.outcomes
        assert result.errors() == {"IdempotencyConflict": WIDTH - 1}


@scenario("decommission-or-heartbeat", make_layout(small=1), "decommission_a_live_kiosk", True)
def _decommission_or_heartbeat(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """A kiosk silent for a minute is decommissioned from two consoles just
    as it comes back and beats twice; then, 10 s after its beat, from two
    consoles again (a round whose order is known: the beat came first)."""
    staff = supervisor(site)
    kiosks = [f"kiosk-{r}" for r in range(rounds)]
    clock.set(START - timedelta(minutes=1))
    for kiosk in kiosks:
        lk.report_heartbeat(site, kiosk, "entry", {})
    clock.set(START)
    later = START + timedelta(seconds=10)
    mixed = [
        [
            call("decommission", staff, k),
            call("heartbeat", k),
            call("heartbeat", k),
            call("decommission", staff, k),
        ]
        for k in kiosks
    ]
    after = [[call("decommission", staff, k, at=later)] * 2 + [call("noop")] * 2 for k in kiosks]
    return Prepared(mixed + after, START, kiosks)


@checks(_decommission_or_heartbeat)
def _decommission_or_heartbeat_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    alive = {d.device_id: d for d in lk.device_health(site)}
    kiosks = prepared.ctx
    mixed, after = results[: len(kiosks)], results[len(kiosks) :]
    for kiosk, result, late in zip(kiosks, mixed, after, strict=True):
        # Whatever the order, the kiosk that beat at START is known after it:
        # a decommission either came first (the beat brings it back) or was
        # refused (it beat within the last 30 s), and so are the later ones.
        assert kiosk in alive and alive[kiosk].last_seen_at == START, result.outcomes
        assert len(result.won("decommission")) <= 1
        assert set(result.errors()) <= {"InvalidInput", "NotFound"}
        assert len(result.won("heartbeat")) == 2
        assert late.errors() == {"InvalidInput": 2}, late.outcomes
    decommissioned = sum(len(r.won("decommission")) for r in mixed)
    assert count(site, AuditRow, AuditRow.action == "device_decommissioned") == decommissioned


@scenario("acknowledge-alerts", make_layout(small=1), "acknowledge_without_the_unique_key", True)
def _acknowledge_alerts(site: Site, clock: FixedClock, rounds: int) -> Prepared:
    """The same alerts (a quiet kiosk, an overstay) acknowledged from four
    consoles at once, by two attendants."""
    staff = [supervisor(site, "Ana"), supervisor(site, "Bo")]
    keys = [[f"silent:kiosk-{r}:{START.isoformat()}", f"overstay:{r}"] for r in range(rounds)]
    return Prepared(
        [[call("acknowledge", staff[i % 2], k) for i in range(WIDTH)] for k in keys], START, keys
    )


@checks(_acknowledge_alerts)
def _acknowledge_alerts_check(site: Site, prepared: Prepared, results: list[Round]) -> None:
    from core.services.audit import audit_entries
    from core.storage.models import AlertAck

    audited = [e for e in audit_entries(site, 1000) if e.action == "alerts_acknowledged"]
    for keys, result in zip(prepared.ctx, results, strict=True):
        # One console records them; the others find them recorded: no error.
        assert sorted(o.value for o in result.won()) == [[]] * 3 + [sorted(keys)], result.outcomes
        assert count(site, AlertAck, AlertAck.alert_key.in_(keys)) == len(keys)
        assert sum(1 for e in audited if set(keys) & set(e.data["keys"])) == 1


# -- the arenas: one group of processes per database and per honesty ---------------------


class Arena:
    """Sites prepared for every scenario, raced together."""

    def __init__(self, url: str, data_dir: Path, planted: bool, sqlite: bool) -> None:
        self.url, self.data_dir = url, data_dir
        self.sites: dict[str, tuple[Site, FixedClock, Prepared]] = {}
        self.results: dict[str, list[Round]] = {}
        self.planted = planted
        chosen = [
            s
            for s in SCENARIOS.values()
            if not planted or (s.plant is not None and (s.plant_breaks_sqlite or not sqlite))
        ]
        rounds_each = PLANTED_ROUNDS if planted else ROUNDS
        calls: list[list[Call]] = []
        spans: dict[str, tuple[int, int]] = {}
        for s in chosen:
            site_id = ("p-" if planted else "") + s.name
            clock = FixedClock(START)
            settings = settings_for(url, data_dir)
            settings = settings.model_copy(
                update={"site": settings.site.model_copy(update={"id": site_id})}
            )
            site = open_site(settings, clock=clock, rng=random.Random(7))
            load_layout(site, s.layout, source="test")
            prepared = s.prepare(site, clock, rounds_each)
            for r in prepared.rounds:
                calls.append(
                    [
                        Call(c.action, c.args, c.at, site_id if c.site_id == "demo" else c.site_id)
                        for c in r
                    ]
                )
            spans[s.name] = (len(calls) - len(prepared.rounds), len(calls))
            self.sites[s.name] = (site, clock, prepared)
        plants = sorted({s.plant for s in chosen if s.plant}) if planted else []
        raced = race(url, data_dir, calls, now=START, plants=plants)
        for name, (begin, end) in spans.items():
            self.results[name] = raced[begin:end]

    def check(self, name: str) -> None:
        site, clock, prepared = self.sites[name]
        clock.set(prepared.at)
        SCENARIOS[name].check(site, prepared, self.results[name])

    def close(self) -> None:
        for site, _, _ in self.sites.values():
            site.close()
        while SIBLINGS:
            SIBLINGS.pop().close()


def _arena(tmp_path_factory: pytest.TempPathFactory, kind: str, planted: bool) -> Iterator[Arena]:
    data_dir = tmp_path_factory.mktemp(f"race-{kind}-{planted}")
    if kind == "sqlite":
        url = f"sqlite:///{data_dir / 'lotkeeper.sqlite3'}"
    else:
        if mysql_server_url() is None:
            pytest.skip("LOTKEEPER_TEST_MYSQL_URL is not set (.ci/run sets it)")
        url = create_mysql_database()
    arena = Arena(url, data_dir, planted, kind == "sqlite")
    try:
        yield arena
    finally:
        arena.close()
        if kind != "sqlite":
            drop_mysql_database(url)


@pytest.fixture(scope="module")
def honest_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    yield from _arena(tmp_path_factory, "sqlite", planted=False)


@pytest.fixture(scope="module")
def honest_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    yield from _arena(tmp_path_factory, "mysql", planted=False)


@pytest.fixture(scope="module")
def planted_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    yield from _arena(tmp_path_factory, "sqlite", planted=True)


@pytest.fixture(scope="module")
def planted_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    yield from _arena(tmp_path_factory, "mysql", planted=True)


DATABASES = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(params=DATABASES)
def honest(request: pytest.FixtureRequest) -> Arena:
    return request.getfixturevalue(f"honest_{request.param}")  # type: ignore[no-any-return]


def test_the_same_reservation_code_at_four_lanes_admits_one_car(honest: Arena) -> None:
    honest.check("check-in")


def test_check_in_and_two_cancels_at_once_have_one_outcome(honest: Arena) -> None:
    honest.check("check-in-or-cancel")


def test_no_show_release_and_cancels_at_once_have_one_outcome(honest: Arena) -> None:
    honest.check("no-show-or-cancel")


def test_a_payment_settling_as_its_hold_expires_confirms_it(honest: Arena) -> None:
    honest.check("hold-confirm-or-expire")


def test_one_ticket_paid_at_four_stations_is_charged_once(honest: Arena) -> None:
    honest.check("pay-ticket")


def test_one_reservation_paid_from_four_places_is_charged_once(honest: Arena) -> None:
    honest.check("pay-reservation")


def test_a_lost_ticket_paid_by_card_and_cash_at_once_is_paid_once(honest: Arena) -> None:
    honest.check("lost-ticket")


def test_a_fee_waived_by_four_supervisors_at_once_is_waived_once(honest: Arena) -> None:
    honest.check("waive")


def test_an_exit_pass_at_four_exits_lets_one_car_out(honest: Arena) -> None:
    honest.check("exit-pass")


def test_a_charge_refunded_from_four_consoles_is_refunded_once(honest: Arena) -> None:
    honest.check("refund")


def test_moving_a_car_as_it_exits_leaves_no_claim_behind(honest: Arena) -> None:
    honest.check("move-or-exit")


def test_closing_the_last_spot_as_cars_enter_never_closes_an_occupied_spot(honest: Arena) -> None:
    honest.check("out-of-service-or-entry")


def test_a_shift_closed_from_four_consoles_closes_once(honest: Arena) -> None:
    honest.check("shift-close")


def test_a_shift_opened_from_four_consoles_opens_once(honest: Arena) -> None:
    honest.check("shift-open")


def test_no_sign_in_counts_after_the_staff_member_was_disabled(honest: Arena) -> None:
    honest.check("disable-or-sign-in")


def test_a_retired_key_stops_at_every_kiosk_at_once(honest: Arena) -> None:
    honest.check("key-retire-or-exit")


def test_a_notice_due_at_four_workers_is_sent_once(honest: Arena) -> None:
    honest.check("notice")


def test_one_api_write_sent_four_times_under_one_key_runs_once(honest: Arena) -> None:
    honest.check("idempotency-key")


def test_a_kiosk_decommissioned_as_it_comes_back_stays_known(honest: Arena) -> None:
    honest.check("decommission-or-heartbeat")


def test_alerts_acknowledged_from_four_consoles_are_recorded_once(honest: Arena) -> None:
    honest.check("acknowledge-alerts")


PLANTED = [
    pytest.param("sqlite", name, id=f"sqlite-{name}")
    for name, s in SCENARIOS.items()
    if s.plant_breaks_sqlite
] + [
    pytest.param("mysql", name, id=f"mysql-{name}", marks=pytest.mark.mysql)
    for name, s in SCENARIOS.items()
    if s.plant is not None
]


@pytest.mark.parametrize(("database", "name"), PLANTED)
def test_each_race_test_fails_without_its_condition(
    request: pytest.FixtureRequest, database: str, name: str
) -> None:
    planted: Arena = request.getfixturevalue(f"planted_{database}")
    with pytest.raises(AssertionError):
        planted.check(name)


def test_every_transition_has_a_race_test_and_a_plant() -> None:
    import _race_actions

    planted = {s.plant for s in SCENARIOS.values() if s.plant is not None}
    assert planted == set(_race_actions.PLANTS)
    assert SECRET  # the processes sign with the tests' secret
