"""The kiosk, driven with Textual's Pilot the way a driver uses it: walk-in
entry, a full size, paying a ticket (approved and declined), leaving, the keys
that must not leave the app, the staff PIN, the idle timeout and the language
switch. Every journey runs on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SiteFactory, make_layout
from sqlalchemy import select

from core import services as lk
from core.clock import FixedClock
from core.devices.gate import LoggedGate
from core.devices.printer import open_printer
from core.site import Site
from core.storage.models import Stay
from kiosk import screens
from kiosk.app import KioskApp
from kiosk.i18n import use_language
from kiosk.widgets import QrCode

PIN = "2468"
Scenario = Callable[[KioskApp, Any], Awaitable[None]]


class IdleClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_kiosk(site: Site, tmp_path: Path, scenario: Scenario, **options: Any) -> KioskApp:
    """Run `scenario(app, pilot)` against a kiosk on `site` at 80x24."""
    options.setdefault("printer", open_printer("preview", tmp_path / "printed"))
    options.setdefault("gate", LoggedGate())
    app = KioskApp(site, kiosk_id="lane-1", staff_pin=PIN, **options)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    use_language("en")
    return app


async def settle(app: KioskApp, pilot: Any) -> None:
    """Let workers finish and the screen catch up."""
    import contextlib

    from textual.worker import WorkerCancelled

    for _ in range(3):
        # An exclusive worker (the live tail) may be replaced by a newer one.
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()


async def press(app: KioskApp, pilot: Any, *keys: str) -> None:
    await pilot.press(*keys)
    await settle(app, pilot)


def shown(app: KioskApp) -> str:
    """All text on the current screen."""
    import io

    from rich.console import Console
    from rich.text import Text
    from textual.widgets import Button, Label, Static

    parts = []
    for widget in app.screen.query("Label, Static, Button"):
        if isinstance(widget, Label | Static):
            content = widget.content
            if isinstance(content, str | Text):
                parts.append(str(content))
            else:  # a table or other renderable: as it reads on screen
                console = Console(file=io.StringIO(), width=78, color_system=None)
                console.print(content)
                parts.append(" ".join(console.file.getvalue().split()))  # type: ignore[attr-defined]
        elif isinstance(widget, Button):
            parts.append(str(widget.label))
    return "\n".join(parts)


def test_walk_in_takes_a_ticket_with_a_plate(site: Site, tmp_path: Path) -> None:
    gate = LoggedGate()

    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert isinstance(app.screen, screens.StartScreen)
        assert "6 free" in shown(app)  # a small car fits all 6 spots
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens.PlateScreen)
        await press(app, pilot, "a", "b", "space", "1", "2", "3")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.TicketScreen)
        ticket = app.screen.ticket
        assert ticket.plate == "AB 123" and ticket.size.label == "medium"
        assert ticket.spot_label in shown(app)
        assert "saved as" in shown(app)  # the preview printer shows it here
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.StartScreen)

    run_kiosk(site, tmp_path, scenario, gate=gate)
    (stay,) = site.db.read(lambda s: s.scalars(select(Stay)).all())
    assert stay.plate == "AB 123" and stay.entry_kiosk == "lane-1"
    assert gate.openings == [("lane-1", f"entry, ticket {stay.id}")]
    assert list((tmp_path / "printed").glob("ticket-*.png"))


def test_a_taken_size_gets_a_larger_space_and_a_full_lot_prints_nothing(
    make_site: SiteFactory, tmp_path: Path
) -> None:
    site = make_site(make_layout(small=1, large=1))
    lk.enter(site, "small")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f1")
        await press(app, pilot, "f2")  # skip the plate
        assert isinstance(app.screen, screens.TicketScreen)
        assert app.screen.ticket.spot_size.label == "large"
        assert "you have a larger one" in shown(app)
        await press(app, pilot, "enter")
        await press(app, pilot, "f1")
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens.LotFullScreen)
        assert "full for a small car" in shown(app)
        assert "No ticket was printed" in shown(app)
        await press(app, pilot, "escape")
        assert isinstance(app.screen, screens.StartScreen)

    run_kiosk(site, tmp_path, scenario)
    assert len(list((tmp_path / "printed").glob("ticket-*.png"))) == 1
    stays = site.db.read(lambda s: s.scalars(select(Stay)).all())
    assert len(stays) == 2  # the one before, and the larger space; nothing for the refusal
    assert [e.kind for e in lk.recent_events(site).events].count("refused_full") == 1


def test_pay_a_ticket_then_leave_through_the_exit(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=2)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        assert isinstance(app.screen, screens.ScanScreen)
        await pilot.press(*ticket.short_code.lower())
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen)
        assert "To pay now: $6.00" in shown(app)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.SimulatedCardScreen)
        await press(app, pilot, "f2")  # declined
        assert isinstance(app.screen, screens.DeclinedScreen)
        assert "declined" in shown(app)
        await press(app, pilot, "enter")  # try again
        await press(app, pilot, "f1")  # approved
        assert isinstance(app.screen, screens.ReceiptScreen)
        text = shown(app)
        assert "Paid $6.00 with Visa •••• 4242" in text
        assert "SIMULATED" in text and "leave by 11:15" in text
        await press(app, pilot, "enter")
        await press(app, pilot, "f6")
        await pilot.press(*ticket.code.lower())
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.GoodbyeScreen)

    run_kiosk(site, tmp_path, scenario)
    assert site.db.read(lambda s: s.scalar(select(Stay.exited_at))) is not None
    assert list((tmp_path / "printed").glob("receipt-*.png"))


def test_an_unpaid_ticket_at_the_exit_goes_straight_to_paying(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f6")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen)
        assert "$3.00" in shown(app)
        await press(app, pilot, "escape")  # not now: back to the start
        assert isinstance(app.screen, screens.StartScreen)
        await press(app, pilot, "f6")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        await press(app, pilot, "enter")  # pay by card
        await press(app, pilot, "f1")  # approved
        assert isinstance(app.screen, screens.ReceiptScreen)
        assert "The gate is open" in shown(app)  # paid at the exit: out at once

    gate = LoggedGate()
    run_kiosk(site, tmp_path, scenario, gate=gate)
    assert [why for _, why in gate.openings] == ["exit, ticket 1"]
    assert site.db.read(lambda s: s.scalar(select(Stay.exited_at))) is not None


def test_a_forged_code_is_refused_with_a_message(site: Site, tmp_path: Path) -> None:
    ticket = lk.enter(site, "small")
    forged = ticket.short_code[:-1] + ("A" if ticket.short_code[-1] != "A" else "B")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        await pilot.press(*forged)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "not valid" in shown(app)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.ScanScreen)

    run_kiosk(site, tmp_path, scenario)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_leaving_keys_do_nothing_and_only_the_staff_pin_exits(site: Site, tmp_path: Path) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        for keys in (["ctrl+c"], ["ctrl+q"], ["ctrl+z"], ["ctrl+p"], ["escape"], ["f12"]):
            await press(app, pilot, *keys)
            assert app.is_running and isinstance(app.screen, screens.StartScreen)
        await press(app, pilot, "f2")
        for keys in (["ctrl+c"], ["ctrl+q"], ["ctrl+z"], ["tab"], ["x"]):
            await press(app, pilot, *keys)
            assert app.is_running
        await press(app, pilot, "f10")
        assert isinstance(app.screen, screens.StaffPinScreen)
        await press(app, pilot, "1", "1", "1", "1", "enter")
        assert app.is_running and "Wrong PIN" in shown(app)
        await press(app, pilot, *PIN, "enter")
        assert not app.is_running

    run_kiosk(site, tmp_path, scenario)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_staff_pin_dialog_has_buttons_to_leave_and_to_go_back(
    site: Site, tmp_path: Path
) -> None:
    from textual.widgets import Button, Input

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f10")
        dialog = app.screen
        assert isinstance(dialog, screens.StaffPinScreen)
        leave, back = dialog.query_one("#leave", Button), dialog.query_one("#back", Button)
        screen = app.screen.region
        for button in (leave, back):
            assert screen.contains_region(button.region), button.region
        assert "Leave the kiosk" in str(leave.label) and "Back" in str(back.label)
        # Back closes the dialog and the kiosk carries on.
        await pilot.click("#back")
        await settle(app, pilot)
        assert app.is_running and isinstance(app.screen, screens.StartScreen)
        # A wrong PIN with the button says so and keeps the dialog open.
        await press(app, pilot, "f10")
        await press(app, pilot, "1", "2", "3", "4")
        await pilot.click("#leave")
        await settle(app, pilot)
        assert app.is_running and "Wrong PIN" in shown(app)
        assert app.screen.query_one("#pin", Input).value == ""
        # The right PIN with the button leaves.
        await press(app, pilot, *PIN)
        await pilot.click("#leave")
        await settle(app, pilot)
        assert not app.is_running

    run_kiosk(site, tmp_path, scenario)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_idle_screen_counts_down_and_returns_to_the_start(site: Site, tmp_path: Path) -> None:
    idle = IdleClock()

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f3")
        assert isinstance(app.screen, screens.PlateScreen)
        idle.now += app.idle_timeout - 10
        app.idle_tick()
        await settle(app, pilot)
        assert "Back to the start in 10 s" in shown(app)
        idle.now += 10
        app.idle_tick()
        await settle(app, pilot)
        assert isinstance(app.screen, screens.StartScreen)

    run_kiosk(site, tmp_path, scenario, idle_clock=idle)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_language_switch_changes_every_text(site: Site, tmp_path: Path) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert "Pay a ticket" in shown(app)
        await press(app, pilot, "f9")
        assert "Pagar un ticket" in shown(app)
        assert "English" in shown(app)
        await press(app, pilot, "f9")
        assert "Pay a ticket" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_availability_follows_entries_made_elsewhere(
    make_site: SiteFactory, tmp_path: Path
) -> None:
    site = make_site(make_layout(small=1))

    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert "1 free" in shown(app)
        lk.enter(make_site(), "small")  # another kiosk process
        app.follow_lot()
        await settle(app, pilot)
        assert "FULL" in shown(app)

    run_kiosk(site, tmp_path, scenario)


@pytest.fixture(autouse=True)
def _english() -> None:
    use_language("en")


# -- the real ESC/POS adapter against the loopback printer -----------------------


def tcp_printer(fake: Any, tmp_path: Path) -> Any:
    return open_printer(fake.url, tmp_path / "printed", timeout=0.5, logo=tmp_path / "none.png")


def test_the_printed_qr_is_a_ticket_the_exit_accepts(site: Site, tmp_path: Path) -> None:
    from fake_printer import FakePrinter

    with FakePrinter() as fake:

        async def scenario(app: KioskApp, pilot: Any) -> None:
            await press(app, pilot, "f1")
            await press(app, pilot, "f2")
            assert isinstance(app.screen, screens.TicketScreen)
            assert "Take your ticket" in shown(app)
            assert not app.screen.query(QrCode)  # printed, so not shown

        run_kiosk(site, tmp_path, scenario, printer=tcp_printer(fake, tmp_path))
        assert fake.wait_for_cuts(1)
        (printed_code,) = fake.qr_payloads()
        (stay,) = site.db.read(lambda s: s.scalars(select(Stay)).all())
        assert f"{stay.id}-" in fake.text()  # the short code is on the paper too

    result = lk.exit(site, printed_code, kiosk="exit-1")  # within the free minutes
    assert result.ticket_id == stay.id


def test_paper_out_shows_the_qr_alerts_the_attendant_and_still_admits(
    site: Site, tmp_path: Path
) -> None:
    from fake_printer import FakePrinter

    with FakePrinter(mode="paper_out") as fake:

        async def scenario(app: KioskApp, pilot: Any) -> None:
            await press(app, pilot, "f1")
            await press(app, pilot, "f2")
            assert isinstance(app.screen, screens.TicketScreen)
            assert "take a photo of this code" in shown(app)
            assert app.screen.query_one(QrCode).code == app.screen.ticket.code

        app = run_kiosk(site, tmp_path, scenario, printer=tcp_printer(fake, tmp_path))
        assert fake.cuts == 0 and fake.qr_payloads() == []

    stays = site.db.read(lambda s: s.scalars(select(Stay)).all())
    assert len(stays) == 1  # admitted once, no second claim
    faults = [e for e in lk.recent_events(site).events if e.kind == "device_fault"]
    assert len(faults) == 1 and "paper" in faults[0].message
    (device,) = lk.device_health(site)
    assert device.device_id == app.kiosk_id and device.components["printer"].state == "fault"


def test_the_kiosk_reports_its_health_for_the_attendant(site: Site, tmp_path: Path) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        pass  # the first heartbeat goes out at start

    run_kiosk(site, tmp_path, scenario)
    (device,) = lk.device_health(site)
    assert device.device_id == "lane-1" and device.ok
    assert set(device.components) == {"printer", "reader"}
    assert "simulated" in device.components["reader"].detail


# Keys a driver (or a cat) may press anywhere; function keys, Enter and Esc
# are the buttons' own and are pressed by the journeys above.
RANDOM_KEYS = [*"abcxyz0123456789-", "space", "backspace", "tab", "up", "down", "left"]
LEAVING_KEYS = ["ctrl+c", "ctrl+q", "ctrl+z", "ctrl+p", "ctrl+d", "ctrl+backslash"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_leaving_keys_and_random_keys_on_every_screen_keep_the_kiosk_running(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    import random

    from core.domain import Size

    ticket = lk.enter(site, "small")
    clock.advance(hours=1)
    status = lk.ticket_status(site, ticket.code)
    paying = lk.pay_ticket(site, ticket.code, card="tok_declined")
    declined = lk.wait_for_payment(site, paying.id, sleep=lambda _: None)
    paid = lk.wait_for_payment(
        site, lk.pay_ticket(site, ticket.code, card="tok_visa").id, sleep=lambda _: None
    )
    from datetime import timedelta

    from kiosk import account

    ada = lk.create_account(site, "Ada", "ada@example.com", "correct horse")
    start = clock.now() + timedelta(days=1)
    held = lk.hold(site, ada.id, "small", start, start + timedelta(hours=1))
    reserved = lk.wait_for_payment(site, lk.pay_reservation(site, held.id).id, sleep=lambda _: None)
    every_screen = [
        screens.StartScreen,
        lambda: screens.PlateScreen(Size.MEDIUM),
        lambda: screens.LotFullScreen(Size.LARGE),
        lambda: screens.TicketScreen(ticket, True, None),
        lambda: screens.TicketScreen(ticket, False, "printer out of paper"),
        lambda: screens.ScanScreen("pay"),
        lambda: screens.ScanScreen("exit"),
        lambda: screens.ScanScreen("check_in"),
        lambda: screens.FeeScreen(ticket.code, status),
        lambda: screens.SimulatedCardScreen(screens.Purchase(ticket_code=ticket.code)),
        lambda: screens.DeclinedScreen(screens.Purchase(ticket_code=ticket.code), declined),
        lambda: screens.ReceiptScreen(paid),
        lambda: screens.GoodbyeScreen("1S-01"),
        lambda: screens.MessageScreen("A message"),
        screens.StaffPinScreen,
        account.AccountStartScreen,
        account.SignInScreen,
        account.CreateAccountScreen,
        account.AccountHomeScreen,
        account.ReserveScreen,
        account.ReservationsScreen,
        account.PaymentsScreen,
        account.VehiclesScreen,
        lambda: account.HoldScreen(held),
        lambda: account.ReservedScreen(held.id, reserved),
    ]
    rng = random.Random(20261122)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        for make in every_screen:
            app.account = ada  # (the account screens are for a signed-in driver)
            screen = make()
            await app.push_screen(screen)
            await settle(app, pilot)
            await press(app, pilot, *LEAVING_KEYS)
            assert app.is_running and app.screen is screen, screen
            await press(app, pilot, *rng.choices(RANDOM_KEYS, k=8))
            assert app.is_running
            while len(app.screen_stack) > 2:
                app.pop_screen()
            await settle(app, pilot)

    run_kiosk(site, tmp_path, scenario)


def test_a_paid_ticket_shows_its_exit_by_time_instead_of_a_fee(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from helpers import pay_and_exit  # noqa: F401 - the same simulated reader

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    paying = lk.pay_ticket(site, ticket.code)
    lk.wait_for_payment(site, paying.id, sleep=lambda _: None)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen)
        assert "Nothing to pay. Please leave by 11:15" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_lost_ticket_at_the_exit_calls_the_attendant(site: Site, tmp_path: Path) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f6")
        await press(app, pilot, "f3")  # I lost my ticket
        assert isinstance(app.screen, screens.MessageScreen)
        assert "attendant" in shown(app)

    run_kiosk(site, tmp_path, scenario)
    (alert,) = [e for e in lk.recent_events(site).events if e.kind == "device_fault"]
    assert "lost ticket" in alert.message and alert.data["alert"] is True


def test_a_receipt_printer_out_of_paper_leaves_the_payment_and_shows_the_receipt(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from fake_printer import FakePrinter

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)

    with FakePrinter(mode="paper_out") as fake:

        async def scenario(app: KioskApp, pilot: Any) -> None:
            await press(app, pilot, "f5")
            await pilot.press(*ticket.short_code)
            await press(app, pilot, "enter")
            await press(app, pilot, "enter")
            await press(app, pilot, "f1")  # approved
            assert isinstance(app.screen, screens.ReceiptScreen)
            assert "receipt printer is not working. Paid $6.00; leave by 11:15" in shown(app)

        run_kiosk(site, tmp_path, scenario, printer=tcp_printer(fake, tmp_path))
        assert fake.cuts == 0

    assert lk.ticket_status(site, ticket.code).due == 0  # the payment stands


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_spanish_speaking_driver_gets_the_ticket_and_receipt_printed_in_spanish(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from fake_printer import FakePrinter

    earlier = lk.enter(site, "small")
    clock.advance(hours=2)

    with FakePrinter() as fake:

        async def scenario(app: KioskApp, pilot: Any) -> None:
            await press(app, pilot, "f9")  # Español
            await press(app, pilot, "f1")
            await press(app, pilot, "f2")  # no plate
            assert isinstance(app.screen, screens.TicketScreen)
            await press(app, pilot, "enter")  # the next driver...
            await press(app, pilot, "f9")  # ...speaks Spanish too, and pays
            await press(app, pilot, "f5")
            await pilot.press(*earlier.short_code)
            await press(app, pilot, "enter")
            await press(app, pilot, "enter")
            await press(app, pilot, "f1")  # approved
            assert isinstance(app.screen, screens.ReceiptScreen)

        run_kiosk(site, tmp_path, scenario, printer=tcp_printer(fake, tmp_path))
        assert fake.wait_for_cuts(2)
        ticket_text, receipt_text = fake.text().split("TICKET DE APARCAMIENTO")[1].split("RECIBO")

    for word in ("Plaza ", "Tamaño", "Entrada", "Salga antes de", "Guarde este ticket"):
        assert word in ticket_text
    for word in ("Total", "Pagado con", "Salida antes de", "PAGO SIMULADO"):
        assert word in receipt_text
    assert "Leave by" not in ticket_text and "Paid with" not in receipt_text
    # Times and the fee line in Spanish too: the ticket was taken at 11:00,
    # the fee is for the earlier car, in since 09:00.
    ticket_words, receipt_words = " ".join(ticket_text.split()), " ".join(receipt_text.split())
    assert "11:00 del 22 nov" in ticket_words and "11:00 del 23 nov" in ticket_words
    # (the printer wraps the line, its amount beside the first part)
    assert "Aparcamiento 2 h (coche pequeño)," in receipt_words
    assert "entrada a las 09:00 del 22 nov" in receipt_words
    assert "11:15 del 22 nov" in receipt_words  # exit by
    for english in (" on ", "Nov", "Sun", "Parking", "small car", "entered"):
        assert english not in ticket_words + receipt_words


def test_a_code_scanned_on_the_start_screen_goes_straight_to_its_fee(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert isinstance(app.screen, screens.StartScreen)
        # What a keyboard-wedge scanner does: types the code, then Enter.
        from textual.keys import _character_to_key

        await pilot.press(*(_character_to_key(c) for c in ticket.code), "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, screens.FeeScreen), shown(app)
        assert "$3.00" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_enter_pressed_twice_on_the_plate_screen_issues_one_ticket(
    site: Site, tmp_path: Path
) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f1")
        calls = []
        app.take_ticket = lambda *args: calls.append(args)  # type: ignore[method-assign]
        await pilot.press("enter", "enter")  # the driver is in a hurry
        assert len(calls) == 1

    run_kiosk(site, tmp_path, scenario)


def test_cancel_pressed_before_the_reader_has_the_payment_still_cancels_it(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=2)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        start_paying = app.pay

        def driver_cancels_first(*args: Any) -> Any:
            app.cancel_requested = True  # Cancel pressed while the payment starts
            return start_paying(*args)

        app.pay = driver_cancels_first  # type: ignore[method-assign]
        purchase = screens.Purchase(ticket_code=ticket.code)
        await app.push_screen(screens.ReaderScreen(purchase, card="tok_timeout"))
        await settle(app, pilot)
        assert isinstance(app.screen, screens.DeclinedScreen)
        assert "Payment cancelled" in shown(app)

    # Without the early cancel the reader would wait until its timeout.
    run_kiosk(site, tmp_path, scenario, payment_sleep=lambda s: clock.advance(seconds=s))
    status = lk.ticket_status(site, ticket.code)
    assert status.due > 0 and status.paid_until is None  # nothing was taken


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_screen_counts_down_and_the_next_driver_gets_the_kiosk_language(
    site: Site, tmp_path: Path
) -> None:
    idle = IdleClock()

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f9")  # Español
        await app.push_screen(screens.GoodbyeScreen("1S-01"))
        await settle(app, pilot)
        idle.now += app.idle_timeout - 10
        app.idle_tick()
        await settle(app, pilot)
        assert "10 s" in shown(app)  # a screen with no countdown of its own
        idle.now += 10
        app.idle_tick()
        await settle(app, pilot)
        assert isinstance(app.screen, screens.StartScreen)
        assert "Pay a ticket" in shown(app)  # English again

    run_kiosk(site, tmp_path, scenario, idle_clock=idle)


def test_a_reservation_code_scanned_at_a_pay_station_is_sent_to_the_entry(
    site: Site, tmp_path: Path
) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        from textual.keys import _character_to_key

        await pilot.press(*(_character_to_key(c) for c in "LR1.K1.7.1.ABC"), "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, screens.MessageScreen)
        assert "use it at the entry" in shown(app)

    run_kiosk(site, tmp_path, scenario, role="pay")


def test_an_unattended_kiosk_waits_for_the_database_and_restarts_after_an_error(
    site: Site, tmp_path: Path
) -> None:
    """`lotkeeper kiosk` never leaves a lane at a shell: only the staff PIN
    ends it."""
    from core.errors import DatabaseUnavailable
    from kiosk.app import run_unattended

    opened: list[str] = []
    said: list[str] = []

    def open_site() -> Site:
        if not opened:
            opened.append("down")
            raise DatabaseUnavailable("The database at db:3306 cannot be used right now")
        opened.append("up")
        return make_site_again()

    def make_site_again() -> Site:
        class Unclosable:  # the test's site stays open for the checks below
            def __getattr__(self, name: str) -> Any:
                return getattr(site, name)

            def close(self) -> None:
                pass

        return Unclosable()  # type: ignore[return-value]

    runs = iter([False, True])  # first run crashes, the second is left by staff

    class FakeApp:
        kiosk_id = "lane-9"

        def __init__(self, _site: Site) -> None:
            self.staff_exit = False

        def run(self) -> None:
            self.staff_exit = next(runs)

    code = run_unattended(
        open_site,
        FakeApp,
        sleep=lambda _: None,
        report=said.append,
        attempts=5,  # type: ignore[arg-type]
    )
    assert code == 0 and opened == ["down", "up", "up"]
    assert "waiting for the database" in said[0] and "starting it again" in said[1]
    (fault,) = [e for e in lk.recent_events(site).events if e.kind == "device_fault"]
    assert "lane-9" in fault.message and "restarted" in fault.message


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_engine_message_is_shown_in_the_drivers_language(site: Site, tmp_path: Path) -> None:
    ticket = lk.enter(site, "small")
    forged = ticket.short_code[:-1] + ("A" if ticket.short_code[-1] != "A" else "B")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f9")  # Español
        await press(app, pilot, "f5")
        await pilot.press(*forged)
        await press(app, pilot, "enter")
        assert "Este ticket no es válido" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_a_full_size_says_full_at_once_and_the_attendant_sees_the_refusal(
    make_site: SiteFactory, tmp_path: Path
) -> None:
    site = make_site(make_layout(small=1, medium=1))
    lk.enter(site, "medium")
    lk.enter(site, "small")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert "FULL" in shown(app)
        await press(app, pilot, "f2")  # medium: full, so no plate screen
        assert isinstance(app.screen, screens.LotFullScreen)
        assert "full for a medium car" in shown(app)

    run_kiosk(site, tmp_path, scenario)
    assert [e.kind for e in lk.recent_events(site).events].count("refused_full") == 1


def test_esc_on_nothing_to_pay_goes_back_to_the_start(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    paying = lk.pay_ticket(site, ticket.code)
    lk.wait_for_payment(site, paying.id, sleep=lambda _: None)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen) and "Nothing to pay" in shown(app)
        await press(app, pilot, "escape")
        assert isinstance(app.screen, screens.StartScreen)

    run_kiosk(site, tmp_path, scenario)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_card_reader_counts_down_the_time_it_waits_for_a_card(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from textual.widgets import Label

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    timeout = int(site.settings.payments.reader_timeout_seconds)
    seen: list[str] = []
    app_box: list[KioskApp] = []

    def driver_waits(_seconds: float) -> None:
        # Between polls of the reader: what the screen says now, then time passes.
        app = app_box[0]
        line = app.call_from_thread(lambda: app.screen.query_one("#reader-left", Label).content)
        seen.append(str(line))
        clock.advance(seconds=timeout // 3)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        app_box.append(app)
        purchase = screens.Purchase(ticket_code=ticket.code)
        await app.push_screen(screens.ReaderScreen(purchase, card="tok_timeout"))
        await settle(app, pilot)
        assert isinstance(app.screen, screens.DeclinedScreen)  # the reader gave up

    run_kiosk(site, tmp_path, scenario, payment_sleep=driver_waits)
    step = timeout // 3
    assert seen == [
        f"The reader waits {timeout - n * step} s more for your card." for n in range(3)
    ]


def test_a_driver_who_asks_for_an_accessible_space_gets_one_or_hears_none_is_free(
    make_site: SiteFactory, tmp_path: Path
) -> None:
    from core.layout import parse_layout

    spots = [
        {"label": "1A", "size": "medium", "accessible": True},
        {"label": "1M1", "size": "medium"},
        {"label": "1M2", "size": "medium"},
    ]
    site = make_site(parse_layout({"name": "Lot", "levels": [{"name": "L1", "spots": spots}]}, "t"))

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens.PlateScreen)
        assert "Space: any [F4]" in shown(app)
        await press(app, pilot, "f4")
        assert "Space: accessible [F4]" in shown(app)
        await press(app, pilot, "f2")  # skip the plate
        assert isinstance(app.screen, screens.TicketScreen)
        assert app.screen.ticket.spot_label == "1A"
        await press(app, pilot, "enter")
        await press(app, pilot, "f2", "f4")  # accessible again: none is left
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "no accessible spot is free for a medium car" in shown(app)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.PlateScreen)  # may ask for any space
        await press(app, pilot, "f4", "f4")  # EV, then back to any space
        assert "Space: any [F4]" in shown(app)
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens.TicketScreen)
        assert app.screen.ticket.spot_label in ("1M1", "1M2")

    run_kiosk(site, tmp_path, scenario)


def test_a_second_payment_s_receipt_says_already_paid_for_the_earlier_one_only(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ticket = lk.enter(site, "small")
    clock.advance(minutes=20)
    paying = lk.pay_ticket(site, ticket.code)
    lk.wait_for_payment(site, paying.id, sleep=lambda _: None)  # $1.50
    clock.advance(hours=1)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        await press(app, pilot, "enter")  # pay by card
        await press(app, pilot, "f1")  # approved
        assert isinstance(app.screen, screens.ReceiptScreen)
        text = shown(app)
        assert "Already paid -$1.50" in text and "Paid now: $3.00" in text
        assert text.count("Already paid") == 1

    run_kiosk(site, tmp_path, scenario)
