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
from core.errors import TicketAlreadyUsed
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
    """Answer a form: each value into the focused field (pasted, as a
    barcode reader or the clipboard would: typing each letter on a 160x50
    screen is what makes these tests slow), Enter after each."""
    assert isinstance(app.screen, FormScreen)
    for value in values:
        field = app.focused
        assert isinstance(field, Input), field
        field.insert_text_at_cursor(value)
        await press(app, pilot, "enter")


def message(app: AttendantApp) -> str:
    assert isinstance(app.screen, MessageScreen), type(app.screen)
    return app.screen.text


async def select_spot(app: AttendantApp, pilot: Any, label: str) -> None:
    """Move the grid's cursor to the spot `label` (on its level's tab) and
    press Enter on it, as an attendant would with the arrows."""
    grid = next(g for g in app.screen.query(LotGrid) if any(s.label == label for s in g.spots))
    tabs = app.screen.query_one("#levels")
    tabs.active = grid.parent.id  # type: ignore[union-attr, attr-defined]
    grid.cursor = next(i for i, s in enumerate(grid.spots) if s.label == label)
    grid.focus()
    await press(app, pilot, "enter")


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
        await select_spot(app, pilot, ticket.spot_label)
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


def on_screen_qr(widget: Static) -> str:
    """Decode a QR drawn with half blocks, as a phone camera would read it."""
    import zxingcpp
    from PIL import Image

    lines = [line for line in str(widget.render()).splitlines() if set(line) <= set("█▀▄ ")]
    lines = [line for line in lines if line.strip() or lines]
    width, scale = max(len(line) for line in lines), 4
    image = Image.new("L", ((width + 8) * scale, (len(lines) * 2 + 8) * scale), 255)
    for row, line in enumerate(lines):
        for col, char in enumerate(line):
            for half, dark in enumerate((char in "█▀", char in "█▄")):
                if dark:
                    x, y = (col + 4) * scale, (row * 2 + half + 4) * scale
                    image.paste(0, (x, y, x + scale, y + scale))
    (found,) = zxingcpp.read_barcodes(image)
    return found.text


def on_screen_big_code(widget: Static) -> str:
    """Read the letters three lines tall that `big_text` draws, one band of
    three lines after another, as a driver copying them would."""
    from attendant.booth import GLYPHS, big_text

    letters = {tuple(big_text(char)): char for char in GLYPHS}
    bands: list[list[str]] = [[]]
    for line in str(widget.render()).splitlines():
        if line.strip() and set(line) <= set("█▀▄ "):
            bands[-1].append(line)
        elif bands[-1]:
            bands.append([])
    read = ""
    for band in filter(None, bands):
        assert len(band) == 3, band
        width = max(len(line) for line in band)
        rows = [line.ljust(width) for line in band]
        for col in range(0, width, 5):
            read += letters[tuple(row[col : col + 4].ljust(4) for row in rows)]
    return read


def test_the_short_code_breaks_after_its_ticket_number_when_it_is_too_wide() -> None:
    from attendant.booth import SHORT_WIDTH, big_text

    assert len(big_text("Q-AB")) == 3  # one band
    lines = big_text("123456-ABCDEF")
    assert len(lines) == 7 and lines[3] == ""  # number, then check
    assert max(len(line) for line in lines) <= SHORT_WIDTH
    assert max(len(line) for line in big_text("123456789-ABCDEF")) <= SHORT_WIDTH


def test_a_lost_ticket_is_found_by_plate_paid_in_cash_and_gets_an_exit_pass_as_a_qr(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    from attendant.booth import LostTicketScreen

    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=1)
    charge = lk.lost_ticket_quote(site, ticket.id)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "l")
        await fill(app, pilot, "KLX 481")
        assert isinstance(app.screen, LostTicketScreen)
        shown = str(app.screen.query_one("#charge", Static).render())
        assert "KLX 481" in shown and f"Lost-ticket charge: ${charge.due / 100:.2f}" in shown
        await press(app, pilot, "c")
        assert "taken in cash" in str(app.screen.query_one("#reader", Static).render())
        # The preview printer prints nothing: the pass is on screen as a QR,
        # its short code beside it in large letters (and small ones).
        issued = app.screen.issued
        assert issued is not None
        assert on_screen_qr(app.screen.query_one("#pass", Static)) == issued.code
        short = app.screen.query_one("#short", Static)
        app.exit_pass = on_screen_big_code(short)  # type: ignore[attr-defined]
        assert app.exit_pass == issued.short_code == ticket.short_code  # type: ignore[attr-defined]
        assert f"Type at the exit: {issued.short_code}" in str(short.render())
        app.qr = issued.code  # type: ignore[attr-defined]
        await press(app, pilot, "c")  # taking it twice is not possible
        await press(app, pilot, "escape")
        assert isinstance(app.screen, ConsoleScreen)

    app = run_console(site, scenario)
    # Typed at the exit kiosk, the short code lets the car out, once.
    assert lk.exit(site, app.exit_pass, kiosk="exit-1").ticket_id == ticket.id  # type: ignore[attr-defined]
    for again in (app.exit_pass, app.qr):  # type: ignore[attr-defined]
        with pytest.raises(TicketAlreadyUsed):
            lk.exit(site, again, kiosk="exit-1")
    cash = [p for p in lk.payments_for(site, stay_id=ticket.id) if p.method == "cash"]
    assert [p.amount for p in cash] == [charge.due]
    assert [e.action for e in audit_entries(site)][:1] == ["exit_pass"]


def printed_big_under_the_qr(data: bytes) -> str:
    """The first line an ESC/POS job prints under its QR, which must be in
    double width and height (ESC ! n with bits 4 and 5), as a ticket's
    short code is."""
    from fake_printer import FakePrinter

    qr_printed = b"\x1d(k\x03\x001Q0"  # GS ( k fn 81: print the stored symbol
    under = data[data.index(qr_printed) + len(qr_printed) :]
    reader = FakePrinter()  # not listening: it only reads the bytes fed to it
    reader.feed(under)
    line = next(line for line in reader.text().splitlines() if line.strip()).strip()
    before = under[: under.index(line.encode())]
    mode = before[before.rindex(b"\x1b!") + 2]  # ESC ! n, the print mode it is in
    assert mode & 0x30 == 0x30, f"{line!r} is not printed double size"
    return line


def test_a_lost_ticket_paid_by_card_prints_its_exit_pass_on_the_booth_printer(
    site: Site, clock: FixedClock, ana: Any, tmp_path: Path
) -> None:
    from fake_printer import FakePrinter

    from attendant.booth import LostTicketScreen
    from core.devices.printer import open_printer

    ticket = lk.enter(site, "small")
    clock.advance(hours=1)

    with FakePrinter() as fake:
        printer = open_printer(fake.url, tmp_path, timeout=0.5, logo=tmp_path / "none.png")

        async def scenario(app: AttendantApp, pilot: Any) -> None:
            await log_in(app, pilot, "Ana", "1357")
            await press(app, pilot, "l")
            await fill(app, pilot, "", ticket.spot_label)  # found by its spot
            assert isinstance(app.screen, LostTicketScreen)
            await press(app, pilot, "k")  # the simulated reader approves
            assert "paid by card (Visa 4242)" in str(
                app.screen.query_one("#reader", Static).render()
            )
            assert "printed on tcp://" in str(app.screen.query_one("#pass", Static).render())
            # Printed, and on the console too, for the attendant to read out.
            app.shown = on_screen_big_code(app.screen.query_one("#short", Static))  # type: ignore[attr-defined]

        app = run_console(site, scenario, printer=printer, payment_sleep=lambda _: None)
        assert fake.wait_for_cuts(1)
        (printed,) = fake.qr_payloads()
        text = fake.text()
        assert "EXIT PASS" in text and "Scan the QR or type the code at the exit" in text
        # As on a ticket: the short code big under the QR, no long code to copy.
        typed = printed_big_under_the_qr(fake.received)
        assert typed == app.shown == ticket.short_code  # type: ignore[attr-defined]
        assert printed not in text

    (card,) = lk.payments_for(site, stay_id=ticket.id)
    assert (card.method, card.purpose, card.succeeded) == ("card", "lost_ticket", True)
    assert lk.exit(site, typed, kiosk="exit-1").ticket_id == ticket.id
    for again in (typed, printed):
        with pytest.raises(TicketAlreadyUsed):
            lk.exit(site, again, kiosk="exit-1")


def test_a_shift_opens_with_a_float_and_closes_with_its_report_saved_and_printed(
    site: Site, ana: Any, tmp_path: Path
) -> None:
    from attendant.booth import ReportScreen

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "s")
        await fill(app, pilot, "100")
        assert message(app) == "Shift 1 open with a float of $100.00."
        await press(app, pilot, "enter")
        await press(app, pilot, "s")
        await fill(app, pilot, "99.50")
        assert isinstance(app.screen, ReportScreen)
        text = app.screen.text
        assert "Cash over/short" in text and "-$0.50" in text and "Saved as" in text
        await press(app, pilot, "p")
        assert "Report saved as" in str(app.screen.query_one("#printed", Static).render())
        await press(app, pilot, "enter")
        assert isinstance(app.screen, ConsoleScreen)

    run_console(site, scenario)
    (report,) = (site.settings.paths.data_dir / "reports").glob("*.csv")
    assert "Cash over/short,-$0.50" in report.read_text()
    (printed,) = (site.settings.paths.data_dir / "printed").glob("report-*.txt")
    assert "Cash over/short" in printed.read_text() and "SHIFT" in printed.read_text()


def test_moving_a_car_and_closing_its_old_spot_show_on_the_grid_and_in_the_audit(
    make_site: Any, clock: FixedClock, tmp_path: Path
) -> None:
    from conftest import make_layout

    site = make_site(make_layout(small=3))
    add_staff(site, "Ana", "attendant", "1357")
    ticket = lk.enter(site, "small")
    labels = sorted(s.label for s in lk.snapshot(site).spots)
    to = next(label for label in labels if label != ticket.spot_label)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await select_spot(app, pilot, ticket.spot_label)
        await press(app, pilot, "o")
        await fill(app, pilot, "oil on the floor")
        assert "has a car or a booking" in message(app)
        await press(app, pilot, "enter")
        await press(app, pilot, "m")
        await fill(app, pilot, to, "oil leak, moved by valet")
        assert message(app) == f"Ticket {ticket.id} moved to {to}."
        await press(app, pilot, "enter")
        app.follow()
        await settle(app, pilot)
        assert cell(app, to) is SpotStatus.OCCUPIED
        assert cell(app, ticket.spot_label) is SpotStatus.FREE
        await select_spot(app, pilot, ticket.spot_label)
        detail = str(app.screen.query_one("#detail", Static).render())
        assert "free" in detail and f"moved from {ticket.spot_label} to {to}" in detail
        await press(app, pilot, "o")
        await fill(app, pilot, "oil on the floor")
        assert message(app) == f"Spot {ticket.spot_label} closed."
        await press(app, pilot, "enter")
        app.follow()
        await settle(app, pilot)
        assert cell(app, ticket.spot_label) is SpotStatus.OUT_OF_SERVICE
        await press(app, pilot, "o")
        await fill(app, pilot, "cleaned up")
        assert message(app) == f"Spot {ticket.spot_label} back in service."

    run_console(site, scenario)
    assert [e.action for e in audit_entries(site)][:3] == [
        "spot_reopened",
        "spot_closed",
        "car_moved",
    ]
    assert verify_audit(site).ok


def test_a_reservation_is_cancelled_and_a_payment_refunded_with_a_supervisors_pin(
    site: Site, ana: Any, sam: Any
) -> None:
    import helpers

    booked = helpers.paid_reservation(site, start_in_hours=26)
    (charge,) = lk.payments_for(site, reservation_id=booked.id)
    money = f"${booked.price / 100:.2f}"

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "slash")
        await fill(app, pilot, booked.short_code)
        assert f"Payment {charge.id}: charge {money} card, succeeded" in message(app)
        await press(app, pilot, "enter")
        await press(app, pilot, "c")
        await fill(app, pilot, booked.short_code, "driver phoned, trip cancelled")
        assert message(app) == (
            f"Reservation {booked.short_code} cancelled; {booked.spot_label} is free again. "
            f"Refunded {money}."
        )
        await press(app, pilot, "enter")
        await press(app, pilot, "r")
        await fill(app, pilot, str(charge.id), "1", "goodwill")
        await fill(app, pilot, "Sam", "2468")  # an attendant needs a supervisor
        assert "Only $0.00 is left to refund" in message(app)

    run_console(site, scenario)
    assert lk.get_reservation(site, booked.id).state.value == "cancelled"
    actions = [(e.staff_name, e.action) for e in audit_entries(site)]
    assert ("Ana", "reservation_cancelled") in actions
    assert not any(action == "refund" for _, action in actions)  # refused: nothing left


def test_a_supervisor_refunds_part_of_a_ticket_payment(
    site: Site, clock: FixedClock, sam: Any
) -> None:
    import helpers

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    helpers.pay_and_exit(site, ticket.code)
    (charge,) = lk.payments_for(site, stay_id=ticket.id)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Sam", "2468")
        await press(app, pilot, "r")
        await fill(app, pilot, f"#{charge.id}", "1.50", "barrier was stuck")
        assert message(app).endswith(": $1.50 given back.")

    run_console(site, scenario)
    refunds = [p for p in lk.payments_for(site, stay_id=ticket.id) if p.kind == "refund"]
    assert [(p.amount, p.succeeded) for p in refunds] == [(150, True)]
    entry = audit_entries(site)[0]
    assert (entry.staff_name, entry.action, entry.data["amount"]) == ("Sam", "refund", 150)


def test_the_occupancy_sparkline_shows_the_last_24_hours(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    from textual.widgets import Sparkline

    lk.enter(site, "small")
    clock.advance(hours=2)
    lk.enter(site, "small")

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        app.follow()
        await settle(app, pilot)
        data = list(app.screen.query_one("#occupancy", Sparkline).data or [])
        assert len(data) == 48 and data[-1] == 2 and data[0] == 0
        label = str(app.screen.query_one("#occupancy-label", Label).render())
        assert "now 2, peak 2" in label

    run_console(site, scenario)


def test_a_card_declined_at_the_booth_says_so_and_cash_can_follow(
    site: Site, clock: FixedClock, ana: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stripe._http_client
    from fake_stripe import FakeStripe

    from attendant.booth import LostTicketScreen
    from core.payments.stripe_terminal import StripeTerminalProvider

    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=1)

    with FakeStripe() as fake:
        site.use_payment_provider(
            StripeTerminalProvider(fake.api_key, fake.reader_id, api_base=fake.url)
        )
        tapped: list[object] = []

        def sleep(_: float) -> None:  # the driver taps a card that is declined
            if not tapped:
                tapped.append(fake.present_card("4000000000000002"))

        async def scenario(app: AttendantApp, pilot: Any) -> None:
            await log_in(app, pilot, "Ana", "1357")
            await press(app, pilot, "l")
            await fill(app, pilot, "KLX 481")
            assert isinstance(app.screen, LostTicketScreen)
            await press(app, pilot, "k")
            assert "declined" in str(app.screen.query_one("#reader", Static).render())
            assert app.screen.issued is None and not app.screen.working
            await press(app, pilot, "c")  # the driver pays cash instead
            assert app.screen.issued is not None

        run_console(site, scenario, payment_sleep=sleep)
        assert fake.successful_charges() == []

    kinds = [(p.method, p.status.value) for p in lk.payments_for(site, stay_id=ticket.id)]
    assert kinds == [("card", "failed"), ("cash", "succeeded")]


def test_an_overstaying_car_is_an_alert_while_it_stays(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=site.max_stay.total_seconds() / 3600 + 1)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        alerts = str(app.screen.query_one("#alerts", Static).render())
        assert f"Overstay in {ticket.spot_label}: ticket {ticket.id}, KLX 481" in alerts
        assert cell(app, ticket.spot_label) is SpotStatus.OVERSTAY

    run_console(site, scenario)


def test_a_shift_opened_before_a_restart_or_a_lock_closes_at_the_next_sign_in(
    site: Site, ana: Any
) -> None:
    from attendant.booth import ReportScreen

    async def open_then_lock(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "s")
        await fill(app, pilot, "100")
        assert message(app) == "Shift 1 open with a float of $100.00."
        await press(app, pilot, "enter")
        await press(app, pilot, "ctrl+l")
        await log_in(app, pilot, "Ana", "1357")
        assert "shift 1 since" in str(app.screen.query_one("#who", Label).render())

    async def after_restart(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "s")
        assert isinstance(app.screen, FormScreen)
        assert app.screen.title_text.startswith("Close shift 1 (open since")
        await fill(app, pilot, "100")
        assert isinstance(app.screen, ReportScreen)
        assert "Shift 1 (Ana)" in app.screen.text

    run_console(site, open_then_lock)
    run_console(site, after_restart)
    assert lk_open_shifts(site) == []


def lk_open_shifts(site: Site) -> list[int]:
    from core.services.shifts import list_shifts

    return [s.id for s in list_shifts(site, open_only=True)]


def test_a_too_short_reason_keeps_the_form_open_with_the_rule(site: Site, ana: Any) -> None:
    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "g")
        await fill(app, pilot, "exit-1", "x")
        assert isinstance(app.screen, FormScreen)
        error = str(app.screen.query_one("#form-error", Label).render())
        assert "needs a reason" in error
        assert app.screen.query_one("#field-lane", Input).value == "exit-1"
        reason = app.screen.query_one("#field-reason", Input)
        reason.focus()
        reason.insert_text_at_cursor("x van stuck")
        await press(app, pilot, "enter")
        assert message(app) == "Gate exit-1 opened."

    run_console(site, scenario)


def test_enter_in_the_lost_ticket_plate_field_finds_the_car(site: Site, ana: Any) -> None:
    from attendant.booth import LostTicketScreen

    ticket = lk.enter(site, "small", plate="KLX 481")

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await press(app, pilot, "l")
        await fill(app, pilot, "KLX 481")
        assert isinstance(app.screen, LostTicketScreen)
        assert app.screen.stay.ticket_id == ticket.id

    run_console(site, scenario)


def test_the_levels_change_with_the_bracket_keys(make_site: Any) -> None:
    from conftest import make_layout
    from textual.widgets import TabbedContent

    site = make_site(make_layout(small=4, levels=3))
    add_staff(site, "Ana", "attendant", "1357")

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        tabs = app.screen.query_one(TabbedContent)
        await press(app, pilot, "right_square_bracket")
        assert tabs.active == "level-1" and app.focused is app.screen.query_one("#grid-1")
        await press(app, pilot, "left_square_bracket", "left_square_bracket")
        assert tabs.active == "level-2"

    run_console(site, scenario)


def test_the_feed_keeps_a_gap_after_a_long_kind() -> None:
    from datetime import UTC, datetime

    from attendant.widgets import feed_line
    from core.domain import Event

    at = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    event = Event(1, at, "check_in_refused", "Check-in refused", "lane-1", None, None, {})
    assert "check_in_refused  Check-in refused" in feed_line(event, "09:00").plain


def test_an_overstay_comes_before_quiet_kiosks_which_are_acknowledged_or_decommissioned(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    from core.services.devices import Component

    ticket = lk.enter(site, "small", plate="KLX 481")
    for n in range(1, 6):  # kiosks that were taken away
        lk.report_heartbeat(site, f"old-{n}", "entry", {"printer": Component("ok")})
    clock.advance(hours=site.max_stay.total_seconds() / 3600 + 1)

    def panel(app: AttendantApp) -> list[str]:
        return str(app.screen.query_one("#alerts", Static).render()).splitlines()

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        lines = panel(app)
        assert lines[0].startswith(f"Overstay in {ticket.spot_label}")
        assert sum("no heartbeat" in line for line in lines) == 5
        await press(app, pilot, "d")
        await fill(app, pilot, "old-1", "kiosk removed")
        assert message(app) == "old-1 decommissioned: its alerts are gone until it reports again."
        await press(app, pilot, "enter")
        app.last_resync = float("-inf")  # the next tail re-reads the lot at once
        await settle(app, pilot)
        app.follow()
        await settle(app, pilot)
        assert not any("old-1" in line for line in panel(app))
        await press(app, pilot, "a")
        assert panel(app) == ["No alerts."]

    run_console(site, scenario)
    assert [d.device_id for d in lk.device_health(site)] == [f"old-{n}" for n in range(2, 6)]
    actions = [e.action for e in audit_entries(site)]
    assert "device_decommissioned" in actions and "alerts_acknowledged" in actions


def alert_panel(app: AttendantApp) -> list[str]:
    return str(app.screen.query_one("#alerts", Static).render()).splitlines()


async def tail_now(app: AttendantApp, pilot: Any) -> None:
    """The next tail re-reads the lot and the alerts at once."""
    app.last_resync = float("-inf")
    app.follow()
    await settle(app, pilot)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_acknowledged_alerts_stay_acknowledged_after_a_restart(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    from core.services.devices import SILENT_AFTER, Component, record_device_fault

    ticket = lk.enter(site, "small", plate="KLX 481")
    lk.report_heartbeat(site, "lane-2", "entry", {"printer": Component("ok")})
    lk.report_heartbeat(site, "pay-1", "pay", {"reader": Component("fault", "offline")})
    clock.advance(hours=site.max_stay.total_seconds() / 3600 + 1)
    lk.report_heartbeat(site, "pay-1", "pay", {"reader": Component("fault", "offline")})
    record_device_fault(site, "pay-1", "help", "driver asks for help")
    shown: list[list[str]] = []

    async def acknowledge(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        shown.append(alert_panel(app))
        await press(app, pilot, "a")
        assert alert_panel(app) == ["No alerts."]

    async def after_restart(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        await tail_now(app, pilot)
        assert alert_panel(app) == ["No alerts."]

    run_console(site, acknowledge)
    (panel,) = shown
    assert any(line.startswith(f"Overstay in {ticket.spot_label}") for line in panel)
    assert any("lane-2: no heartbeat" in line for line in panel)
    assert "pay-1: reader: offline" in panel
    assert any("driver asks for help" in line for line in panel)
    clock.advance(SILENT_AFTER / 3)  # pay-1 still beats: its fault is the same one
    lk.report_heartbeat(site, "pay-1", "pay", {"reader": Component("fault", "offline")})
    run_console(site, after_restart)  # a new console on the same site


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_acknowledged_alert_raises_again_when_its_state_changes(
    site: Site, clock: FixedClock, ana: Any
) -> None:
    from datetime import timedelta

    from core.services.devices import Component

    offline, online = {"reader": Component("fault", "offline")}, {"reader": Component("ok")}
    lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=1)
    second = lk.enter(site, "small", plate="BEE 22")
    lk.report_heartbeat(site, "lane-2", "entry", {"printer": Component("ok")})
    clock.advance(site.max_stay - timedelta(minutes=30))  # the first car overstays
    lk.report_heartbeat(site, "pay-1", "pay", offline)

    async def scenario(app: AttendantApp, pilot: Any) -> None:
        await log_in(app, pilot, "Ana", "1357")
        assert len(alert_panel(app)) == 4  # the overstay, pay-1's fault and event, lane-2
        await press(app, pilot, "a")
        assert alert_panel(app) == ["No alerts."]
        # lane-2 comes back, then goes quiet again; pay-1's reader comes
        # back, then goes offline again; the second car overstays.
        lk.report_heartbeat(site, "lane-2", "entry", {"printer": Component("ok")})
        lk.report_heartbeat(site, "pay-1", "pay", online)
        clock.advance(timedelta(minutes=31))  # over SILENT_AFTER
        lk.report_heartbeat(site, "pay-1", "pay", offline)
        await tail_now(app, pilot)
        assert alert_panel(app) == [
            "pay-1: reader: offline",
            f"Overstay in {second.spot_label}: ticket {second.id}, BEE 22",
            "10:01  device_fault     pay-1: reader: offline",
            "lane-2: no heartbeat since 09:30 on 23 Nov",
        ]  # and not the first car's overstay, still acknowledged

    run_console(site, scenario)
