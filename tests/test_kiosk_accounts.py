"""Accounts and reservations at the kiosk, driven with Pilot: create an
account, register a vehicle, see payments; reserve in advance with the
5-minute hold and its countdown, pay, get the code printed and as a QR, and
check in with it; sign-out on idle; check-in refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_kiosk import IdleClock, press, run_kiosk, settle, shown
from textual.widgets import Input

from core import services as lk
from core.clock import FixedClock
from core.services.reservations import ReservationState
from core.site import Site
from core.storage.models import Reservation as ReservationRow
from core.tariff import format_money
from core.ticket_codes import RESERVATION
from kiosk import account as screens_account
from kiosk import screens
from kiosk.app import KioskApp
from kiosk.widgets import QrCode

PASSWORD = "correct horse"


async def type_text(app: KioskApp, pilot: Any, text: str) -> None:
    """Type on the physical keyboard ("@" is the key named "at", and so on)."""
    from textual.keys import _character_to_key

    await press(app, pilot, *(_character_to_key(c) for c in text))


async def sign_in(app: KioskApp, pilot: Any, email: str = "ada@example.com") -> None:
    await press(app, pilot, "f7")
    await press(app, pilot, "f1")
    assert isinstance(app.screen, screens_account.SignInScreen)
    await type_text(app, pilot, email)
    await press(app, pilot, "tab")  # to the password
    await type_text(app, pilot, PASSWORD)
    await press(app, pilot, "enter")
    assert isinstance(app.screen, screens_account.AccountHomeScreen), shown(app)


def test_create_an_account_add_a_vehicle_and_see_payments(site: Site, tmp_path: Path) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f7")
        await press(app, pilot, "f2")
        assert isinstance(app.screen, screens_account.CreateAccountScreen)
        await type_text(app, pilot, "Ada Lovelace")
        await press(app, pilot, "tab")
        await type_text(app, pilot, "ada@example.com")
        await press(app, pilot, "tab")
        await type_text(app, pilot, "short")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "at least 8 characters" in shown(app)
        await press(app, pilot, "enter")
        await type_text(app, pilot, " enough now")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens_account.AccountHomeScreen)
        assert "Hello, Ada Lovelace" in shown(app)

        await press(app, pilot, "f4")
        assert "No vehicles yet" in shown(app)
        await type_text(app, pilot, "ab 123")
        await press(app, pilot, "f2")  # medium
        assert "AB 123" in shown(app) and "Medium car" in shown(app)
        await press(app, pilot, "escape")
        await press(app, pilot, "f3")
        assert "No payments yet" in shown(app)
        await press(app, pilot, "escape")
        await press(app, pilot, "escape")  # sign out
        assert isinstance(app.screen, screens.StartScreen) and app.account is None

    run_kiosk(site, tmp_path, scenario)
    ada = lk.sign_in(site, "ada@example.com", "short enough now")
    assert [(v.plate, v.size.label) for v in lk.list_vehicles(site, ada.id)] == [
        ("AB 123", "medium")
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_driver_turns_a_reminder_off_and_back_on(site: Site, tmp_path: Path) -> None:
    ada = lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f5")
        assert isinstance(app.screen, screens_account.RemindersScreen)
        assert "Emails to ada@example.com" in shown(app)
        assert "Reminder 30 minutes before a reservation: on" in shown(app)
        await press(app, pilot, "f1")
        assert "Reminder 30 minutes before a reservation: off" in shown(app)
        assert not lk.notification_preferences(site, ada.id).remind_reservation
        await press(app, pilot, "f2")
        await press(app, pilot, "f2")
        assert "my parking time ends: on" in shown(app)

    run_kiosk(site, tmp_path, scenario)
    prefs = lk.notification_preferences(site, ada.id)
    assert (prefs.remind_reservation, prefs.remind_max_stay, prefs.notify_changes) == (
        False,
        True,
        True,
    )


def test_a_wrong_password_is_refused_without_saying_which_part(site: Site, tmp_path: Path) -> None:
    lk.create_account(site, "Ada", "ada@example.com", "something else")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f7")
        await press(app, pilot, "f1")
        await type_text(app, pilot, "ada@example.com")
        await press(app, pilot, "tab")
        await type_text(app, pilot, PASSWORD)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "email and password do not match" in shown(app)
        assert app.account is None

    run_kiosk(site, tmp_path, scenario)


def test_reserve_in_advance_hold_pay_and_check_in_with_the_printed_code(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f1")
        assert isinstance(app.screen, screens_account.ReserveScreen)
        await press(app, pilot, "f2")  # medium: the price for the prefilled window
        assert "To pay now:" in shown(app)
        await press(app, pilot, "enter")  # hold and pay
        assert isinstance(app.screen, screens_account.HoldScreen)
        assert "Pay within 5:00" in shown(app)
        clock.advance(minutes=1, seconds=30)
        app.screen.tick()
        await settle(app, pilot)
        assert "Pay within 3:30" in shown(app)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.SimulatedCardScreen)
        await press(app, pilot, "f1")  # approved
        assert isinstance(app.screen, screens_account.ReservedScreen)
        assert "reservation is printed" in shown(app)
        code = app.screen.query_one(QrCode).code
        assert code.startswith("LR1.")
        app.reserved_code = code  # type: ignore[attr-defined]

    app = run_kiosk(site, tmp_path, scenario)
    (row,) = site.db.read(lambda s: s.scalars(select(ReservationRow)).all())
    assert row.state == ReservationState.CONFIRMED
    assert list((tmp_path / "printed").glob("receipt-*.png"))

    clock.advance(hours=1)  # the prefilled start: the next full hour
    ticket = lk.check_in(site, app.reserved_code)  # type: ignore[attr-defined]
    assert ticket.id


def test_a_hold_that_runs_out_on_screen_releases_the_space(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f1")
        await press(app, pilot, "f1")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens_account.HoldScreen)
        clock.advance(minutes=5)
        app.screen.tick()
        await settle(app, pilot)
        assert isinstance(app.screen, screens.MessageScreen)
        assert "5 minutes are up" in shown(app)

    run_kiosk(site, tmp_path, scenario)
    assert lk.availability(site).for_size("small").held == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_idle_kiosk_signs_the_driver_out(site: Site, tmp_path: Path) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)
    idle = IdleClock()

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f2")  # my reservations
        idle.now += app.idle_timeout
        app.idle_tick()
        await settle(app, pilot)
        assert isinstance(app.screen, screens.StartScreen) and app.account is None

    run_kiosk(site, tmp_path, scenario, idle_clock=idle)


def test_check_in_at_the_kiosk_and_its_refusals(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    ada = lk.create_account(site, "Ada", "ada@example.com", PASSWORD)
    start = clock.now() + timedelta(hours=3)
    held = lk.hold(site, ada.id, "small", start, start + timedelta(hours=2))
    paying = lk.pay_reservation(site, held.id)
    lk.wait_for_payment(site, paying.id, sleep=lambda _: None)
    reservation = lk.get_reservation(site, held.id)
    forged = reservation.short_code[:-1] + ("A" if reservation.short_code[-1] != "A" else "B")

    async def check_in(app: KioskApp, pilot: Any, code: str) -> str:
        await press(app, pilot, "f4")
        await type_text(app, pilot, code)
        await press(app, pilot, "enter")
        return shown(app)

    late_hold = lk.hold(site, ada.id, "medium", start, start + timedelta(hours=1))
    lk.wait_for_payment(site, lk.pay_reservation(site, late_hold.id).id, sleep=lambda _: None)
    late = lk.get_reservation(site, late_hold.id)
    other = lk.hold(site, ada.id, "small", start, start + timedelta(hours=1))
    lk.cancel_reservation(site, other.id, ada.id)
    cancelled = lk.get_reservation(site, other.id)
    ring = site.keyring()
    unknown = ring.code_for(ring.active_id, 999, int(clock.now().timestamp()), RESERVATION).text

    async def scenario(app: KioskApp, pilot: Any) -> None:
        assert "cancelled" in await check_in(app, pilot, cancelled.short_code)
        await press(app, pilot, "enter")
        await press(app, pilot, "escape")
        assert "no record of this reservation" in await check_in(app, pilot, unknown)
        await press(app, pilot, "enter")
        await press(app, pilot, "escape")
        assert "You are early" in await check_in(app, pilot, reservation.short_code)
        await press(app, pilot, "enter")
        await press(app, pilot, "escape")
        assert "not valid" in await check_in(app, pilot, forged)
        await press(app, pilot, "enter")
        await press(app, pilot, "escape")
        clock.advance(hours=3)
        await check_in(app, pilot, reservation.short_code)
        assert isinstance(app.screen, screens.TicketScreen)
        assert app.screen.ticket.spot_label == reservation.spot_label
        await press(app, pilot, "enter")
        clock.advance(hours=2)  # the other driver's reservation ran out meanwhile
        assert "could be used until" in await check_in(app, pilot, late.short_code)

    run_kiosk(site, tmp_path, scenario)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_on_screen_keyboard_types_into_the_touched_field_and_fits_at_80x24(
    site: Site, tmp_path: Path
) -> None:
    from textual.widgets import Input

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f7")
        await press(app, pilot, "f2")
        screen = app.screen
        for key in ("#key-space", "#key-delete", "#key-shift", "#go"):
            region = screen.query_one(key).region
            assert 0 < region.bottom <= 24 and region.right <= 80, (key, region)
        await pilot.click("#password")
        for key in ("#key-shift", f"#key-{ord('A')}", f"#key-{ord('B')}", f"#key-{ord('1')}"):
            await pilot.click(key)
        await settle(app, pilot)
        assert screen.query_one("#password", Input).value == "ab1"
        assert screen.query_one("#name", Input).value == ""

    run_kiosk(site, tmp_path, scenario)


def test_the_reserve_form_shows_every_field_and_prices_the_window_it_names(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f1")
        form = app.screen
        assert isinstance(form, screens_account.ReserveScreen)
        for field in ("Date", "Start", "Hours"):
            assert field in shown(app)
        await press(app, pilot, "f1")  # small: the price of the prefilled window
        start = site.describe_time(clock.now() + timedelta(hours=1))
        end = site.describe_time(clock.now() + timedelta(hours=3))
        assert f"Small car, {start} to {end} (2 h)" in shown(app)
        # Another length: the price shown before is not the one held.
        form.query_one("#hours", Input).value = "3"
        await settle(app, pilot)
        assert "Choose the size of your car for the price." in shown(app)
        await press(app, pilot, "enter")  # nothing to hold until priced again
        assert app.screen is form
        await press(app, pilot, "f1")
        assert "(3 h)" in shown(app)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens_account.HoldScreen)
        assert app.screen.reservation.ends_at - app.screen.reservation.starts_at == timedelta(
            hours=3
        )

    run_kiosk(site, tmp_path, scenario)


def test_after_reserving_the_driver_stays_signed_in_on_their_account(
    site: Site, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f1", "f2", "enter", "enter", "f1")  # reserve, pay
        assert isinstance(app.screen, screens_account.ReservedScreen)
        await press(app, pilot, "enter")  # Done
        assert isinstance(app.screen, screens_account.AccountHomeScreen)
        assert app.account is not None and "Hello, Ada" in shown(app)
        await press(app, pilot, "f2")  # my reservations: the new one is there
        assert "confirmed" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_a_reservation_for_an_ev_space_is_refused_naming_the_need(
    site: Site, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)  # the lot has no EV spot

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f1", "f4", "f4")  # EV charging
        assert "Space: EV charging [F4]" in shown(app)
        await press(app, pilot, "f2", "enter")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "no EV charging spot for a medium car" in shown(app)

    run_kiosk(site, tmp_path, scenario)


def test_the_fee_for_a_stay_past_its_reservation_shows_the_real_entry_and_both_parts(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from test_reservations import reserve

    booked = reserve(site, clock, start_hours=1, hours=2)
    clock.advance(minutes=56)  # checks in 4 minutes early
    entered = clock.now()
    ticket = lk.check_in(site, booked.code)
    clock.advance(hours=3, minutes=4)  # an hour past the window
    quote = lk.ticket_status(site, ticket.code).quote

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f5")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen)
        text = shown(app)
        assert f"Entered {site.describe_time(entered)}." in text
        assert f"Your reservation ended at {site.describe_time(booked.ends_at)}." in text
        assert "$3.00" in text  # an hour of parking after the window
        assert format_money(quote.overstay, quote.currency) in text
        assert "Overstay fee" in text
        assert f"To pay now: {format_money(quote.due, quote.currency)}" in text

    run_kiosk(site, tmp_path, scenario)
