"""The attendant console, driven with Pilot: PIN login and lock, the live
grid fed by a kiosk in another OS process, overrides with reasons (a
supervisor's PIN for a waiver), a lost ticket, and closing a shift."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _workers
import pytest
from conftest import SECRET
from textual.widgets import Input, Label, Static

from attendant.app import AttendantApp, ConsoleScreen, FormScreen, LoginScreen, MessageScreen
from attendant.widgets import LotGrid
from core import services as lk
from core.clock import FixedClock
from core.devices.gate import LoggedGate
from core.domain import SpotStatus
from core.services.audit import audit_entries, verify_audit
from core.services.staff import add_staff
from core.site import Site

Scenario = Callable[[AttendantApp, Any], Awaitable[None]]


class IdleClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_console(site: Site, scenario: Scenario, **options: Any) -> AttendantApp:
    app = AttendantApp(site, **options)

    async def main() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def settle(app: AttendantApp, pilot: Any) -> None:
    import contextlib

    from textual.worker import WorkerCancelled

    for _ in range(3):
        # An exclusive worker (the live tail) may be replaced by a newer one.
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()


async def press(app: AttendantApp, pilot: Any, *keys: str) -> None:
    await pilot.press(*keys)
    await settle(app, pilot)


async def type_in(app: AttendantApp, pilot: Any, text: str) -> None:
    from textual.keys import _character_to_key

    await press(app, pilot, *(_character_to_key(c) for c in text))


async def log_in(app: AttendantApp, pilot: Any, name: str, pin: str) -> None:
    await type_in(app, pilot, name)
    await press(app, pilot, "enter")
    await type_in(app, pilot, pin)
    await press(app, pilot, "enter")


async def fill(app: AttendantApp, pilot: Any, *values: str) -> None:
    """Answer a form: each value, Enter after each."""
    assert isinstance(app.screen, FormScreen)
    for value in values:
        await type_in(app, pilot, value)
        await press(app, pilot, "enter")


def message(app: AttendantApp) -> str:
    assert isinstance(app.screen, MessageScreen), type(app.screen)
    return app.screen.text


def cell(app: AttendantApp, label: str) -> SpotStatus:
    return next(s.status for s in app.spots if s.label == label)


@pytest.fixture
def ana(site: Site) -> Any:
    return add_staff(site, "Ana", "attendant", "1357")


@pytest.fixture
def sam(site: Site) -> Any:
    return add_staff(site, "Sam", "supervisor", "2468")


def test_login_needs_the_right_pin_and_idle_locks_the_console(site: Site, ana: Any) -> None:
    idle = IdleClock()

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        assert isinstance(app.screen, LoginScreen)
        await log_in(app, pilot, "Ana", "0000")
        assert "name and PIN do not match" in str(
            app.screen.query_one("#login-error", Label).render()
        )
        await press(app, pilot, "shift+tab")
        app.screen.query_one("#name", Input).value = ""
        await log_in(app, pilot, "Ana", "1357")
        assert isinstance(app.screen, ConsoleScreen) and app.staff == ana
        assert "Ana (attendant)" in str(app.screen.query_one("#who", Label).render())
        idle.now += 300
        app.idle_tick()
        await settle(app, pilot)
        assert isinstance(app.screen, LoginScreen) and app.staff is None

    run_console(site, scenario, idle_clock=idle)


def test_the_grid_shows_what_a_kiosk_in_another_process_does(
    site: Site, ana: Any, db_url: str, tmp_path: Path
) -> None:
    # The kiosk process starts first (spawning from inside the running app is
    # not possible) and waits at the barrier until the console is up.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    now = site.clock.now().isoformat()
    kiosk = ctx.Process(
        target=_workers.enter_and_exit,
        args=(db_url, str(tmp_path), SECRET, now, "KLX 481", barrier, results),
        daemon=True,
    )
    kiosk.start()

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        assert all(s.status is SpotStatus.FREE for s in app.spots)
        await asyncio.to_thread(barrier.wait, 120)
        assert await asyncio.to_thread(results.get, True, 120) == []
        app.follow()  # the 0.5 s tail, without waiting for the timer
        await settle(app, pilot)
        occupied = [s for s in app.spots if s.status is SpotStatus.OCCUPIED]
        assert [s.plate for s in occupied] == ["KLX 481"]
        in_grid = [s for g in app.screen.query(LotGrid) for s in g.spots]
        assert [s.plate for s in in_grid if s.status is SpotStatus.OCCUPIED] == ["KLX 481"]
        feed = str(app.screen.query_one("#feed", Static).render())
        assert feed.index("Exit") < feed.index("KLX 481")  # newest first

    run_console(site, scenario)
    kiosk.join(timeout=30)


def test_opening_the_gate_asks_a_reason_and_lands_in_the_audit_trail(site: Site, ana: Any) -> None:
    gate = LoggedGate()

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "g")
        await fill(app, pilot, "exit-1", "van stuck at the barrier")
        assert message(app) == "Gate exit-1 opened."

    run_console(site, scenario, gate=gate)
    assert gate.openings == [("exit-1", "attendant")]
    entry = audit_entries(site)[0]
    assert (entry.staff_name, entry.action, entry.reason) == (
        "Ana",
        "gate_opened",
        "van stuck at the barrier",
    )
    assert verify_audit(site).ok


def test_an_attendant_waiver_needs_a_supervisor_pin_then_the_car_goes_out(
    site: Site, clock: FixedClock, ana: Any, sam: Any
) -> None:
    ticket = lk.enter(site, "small", plate="AB 123")
    clock.advance(hours=3)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        grid = next(g for g in app.screen.query(LotGrid) if g.spots and any(
            s.label == ticket.spot_label for s in g.spots))  # fmt: skip
        tabs = app.screen.query_one("#levels")
        tabs.active = grid.parent.id  # type: ignore[union-attr, attr-defined]
        grid.cursor = next(i for i, s in enumerate(grid.spots) if s.label == ticket.spot_label)
        grid.focus()
        await press(app, pilot, "enter")
        assert "AB 123" in str(app.screen.query_one("#detail", Static).render())
        await press(app, pilot, "x")
        await fill(app, pilot, "lost ticket, car damaged")
        assert "Please pay" in message(app)
        await press(app, pilot, "enter")
        await press(app, pilot, "w")
        await fill(app, pilot, "", "barrier hit the car")
        await fill(app, pilot, "Sam", "2468")  # the supervisor approves
        assert message(app).startswith(f"Fee of ticket {ticket.id} waived")
        await press(app, pilot, "enter")
        await press(app, pilot, "x")
        await fill(app, pilot, "fee waived by Sam")
        assert message(app) == f"Ticket {ticket.id} let out from {ticket.spot_label}."

    run_console(site, scenario)
    assert [(e.staff_name, e.action) for e in audit_entries(site)[:2]] == [
        ("Ana", "manual_exit"),
        ("Sam", "fee_waived"),
    ]


def test_a_lost_ticket_is_found_by_plate_paid_in_cash_and_gets_an_exit_pass(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=1)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "l")
        await fill(app, pilot, "KLX 481", "")
        text = message(app)
        assert f"Ticket {ticket.id}" in text and "taken in cash" in text
        app.exit_pass = text.split("Exit pass: ")[1]  # type: ignore[attr-defined]

    app = run_console(site, scenario)
    assert lk.exit(site, app.exit_pass).ticket_id == ticket.id  # type: ignore[attr-defined]


def test_a_shift_opens_with_a_float_and_closes_with_its_report(
    site: Site, ana: Any, tmp_path: Path
) -> None:
    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "s")
        await fill(app, pilot, "100")
        assert message(app) == "Shift 1 open with a float of $100.00."
        await press(app, pilot, "enter")
        await press(app, pilot, "s")
        await fill(app, pilot, "99.50")
        text = message(app)
        assert "Cash over/short" in text and "-$0.50" in text and "Saved as" in text

    run_console(site, scenario)
    (report,) = (site.settings.paths.data_dir / "reports").glob("*.csv")
    assert "Cash over/short,-$0.50" in report.read_text()
