"""Shifts and reports: a shift's cash over or short, revenue by method
(waivers are never revenue), refunds, overrides by staff; the day report
from the command line."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from core import services as lk
from core.clock import FixedClock
from core.domain import PaymentPurpose
from core.errors import InvalidInput, NotFound
from core.services.overrides import open_gate, waive_fee
from core.services.payments import record_cash_payment
from core.services.shifts import close_shift, day_report, open_shift
from core.services.staff import add_staff
from core.site import Site


def paid_by_card(site: Site, code: str) -> int:
    payment = lk.pay_ticket(site, code)
    return lk.wait_for_payment(site, payment.id, sleep=lambda _: None).amount


def test_a_shift_closes_with_its_figures_and_cash_over_or_short(
    site: Site, clock: FixedClock
) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    sam = add_staff(site, "Sam", "supervisor", "2468")
    open_shift(site, ana, float_amount=10_000)
    with pytest.raises(InvalidInput, match="already has a shift open"):
        open_shift(site, ana, 0)
    first, second, third = (lk.enter(site, "small") for _ in range(3))
    clock.advance(hours=2)
    card = paid_by_card(site, first.code)
    lk.exit(site, first.code)
    cash = lk.ticket_status(site, second.code).due
    record_cash_payment(site, PaymentPurpose.STAY, cash, stay_id=second.id, source="staff:Ana")
    waived = waive_fee(site, sam, third.id, "barrier hit the car")
    open_gate(site, ana, "exit-1", "van stuck")
    clock.advance(minutes=5)

    report = close_shift(site, ana, counted_amount=10_000 + cash - 100)
    assert (report.entries, report.exits) == (3, 1)
    assert report.revenue == {"card": card, "cash": cash}
    assert report.waived == waived and report.net_revenue == card + cash
    assert report.overrides == {"Ana": 1, "Sam": 1}  # the gate; the waiver
    assert report.expected_cash == 10_000 + cash and report.cash_over_short == -100
    rows = dict(report.lines())
    assert rows["Cash over/short"] == "-$1.00"
    assert report.csv().splitlines()[0] == "item,value"
    with pytest.raises(NotFound):
        close_shift(site, ana, 0)


def test_the_day_report_from_the_command_line(
    site: Site, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    card = paid_by_card(site, ticket.code)
    report = day_report(site, clock.now().date())
    assert report.entries == 1 and report.revenue["card"] == card
    assert day_report(site, (clock.now() - timedelta(days=1)).date()).entries == 0

    from core.cli import main

    monkeypatch.setenv("LOTKEEPER_DATABASE__URL", site.db.url)
    monkeypatch.setenv("LOTKEEPER_PATHS__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOTKEEPER_TICKETS__SECRET", "test-secret-" + "x" * 40)
    out = io.StringIO()
    day = clock.now().date().isoformat()
    assert main(["report", "--day", day, "--csv"], out=out) == 0
    assert f"Revenue (card),${card / 100:.2f}" in out.getvalue()
    assert main(["report", "--day", "22/11/2026"], out=io.StringIO()) == 1


def test_a_shift_is_found_open_and_a_supervisor_closes_anyones_once(
    site: Site, clock: FixedClock
) -> None:
    from core.services.audit import audit_entries
    from core.services.overrides import NotAllowed
    from core.services.shifts import close_shift_by_id, list_shifts, open_shift_of

    bob = add_staff(site, "Bob", "attendant", "1357")
    ana = add_staff(site, "Ana", "attendant", "1111")
    sue = add_staff(site, "Sue", "supervisor", "2468")
    assert open_shift_of(site, bob) is None
    opened = open_shift(site, bob, 5_000)
    clock.advance(hours=8)
    found = open_shift_of(site, bob)
    assert found is not None and (found.id, found.float_amount) == (opened.id, 5_000)
    assert [s.id for s in list_shifts(site, open_only=True)] == [opened.id]

    with pytest.raises(NotAllowed):
        close_shift_by_id(site, ana, opened.id, 5_000)
    report = close_shift_by_id(site, sue, opened.id, 5_200)
    assert report.title == f"Shift {opened.id} (Bob)" and report.cash_over_short == 200
    with pytest.raises(NotFound, match="not open"):
        close_shift_by_id(site, sue, opened.id, 5_200)
    with pytest.raises(NotFound, match="not open"):
        close_shift_by_id(site, sue, 999, 0)
    assert open_shift_of(site, bob) is None and list_shifts(site, open_only=True) == []
    closed = next(e for e in audit_entries(site) if e.action == "shift_closed")
    assert (closed.staff_name, closed.reason) == ("Sue", "closed for Bob")


def test_a_report_shows_its_times_as_the_site_reads_them(site: Site, clock: FixedClock) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    opened = open_shift(site, ana, 0)
    clock.advance(hours=8)
    rows = dict(close_shift(site, ana, 0).lines())
    assert rows["From"] == site.describe_time(opened.opened_at, year=True)
    assert rows["To"] == site.describe_time(clock.now(), year=True)
    day = dict(day_report(site, clock.now().date()).lines())
    assert day["From"].startswith("00:00 on ") and "T" not in day["To"]
