"""Every kiosk screen fits a 80x24 terminal, in English and in Spanish.

Each screen of every journey is opened in turn (with realistic data: a
ticket, a stay to pay, a paid receipt, an account with a vehicle, a held
and a confirmed reservation) and with the idle countdown showing, and the
test fails when a button, a field, a key of the on-screen keyboard, a key
of the footer or a line of text lies (even partly) outside the screen or is
cut off by a container, when a button's label is cut short, or when two
texts run together on one line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_layout
from rich.text import Text
from test_kiosk import PIN, IdleClock, settle
from textual.errors import NoWidget
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, Select, Static, Switch

from core import services as lk
from core.clock import FixedClock
from core.devices.gate import LoggedGate
from core.devices.printer import open_printer
from core.domain import Payment, Size
from core.errors import ReservationError
from core.services.accounts import add_ticket_to_account
from core.site import Site
from kiosk import account, screens
from kiosk.app import KioskApp
from kiosk.i18n import _, error_text, use_language
from kiosk.widgets import size_name

WIDTH, HEIGHT = 80, 24
TALL = 120, 40  # the smallest screen with the tall (bigger keys) layout
PASSWORD = "correct horse battery"

try:  # the footer's keys, should a screen show a footer
    from textual.widgets._footer import FooterKey

    CONTROLS: tuple[type[Widget], ...] = (
        Button,
        Input,
        Select,
        Checkbox,
        RadioButton,
        Switch,
        FooterKey,
    )
except ImportError:  # pragma: no cover - an older Textual
    CONTROLS = (Button, Input, Select, Checkbox, RadioButton, Switch)


def describe(widget: Widget) -> str:
    label = getattr(widget, "label", None)
    text = f" {str(label)!r}" if label is not None else ""
    return f"{type(widget).__name__}#{widget.id or '?'}{text}"


def showing(widget: Widget) -> bool:
    """Meant to be seen: neither it nor a container around it is hidden."""
    node: Any = widget
    while isinstance(node, Widget) and not isinstance(node, Screen):
        if not node.display or not node.visible:
            return False
        node = node.parent
    return True


def has_text(widget: Widget) -> bool:
    if isinstance(widget, Label | Static) and not isinstance(widget, Button):
        content = widget.content
        return bool(str(content).strip()) if isinstance(content, str | Text) else True
    return False


def misfits(screen: Screen[Any]) -> list[str]:
    """What on `screen` a driver cannot see or touch whole."""
    whole = Region(0, 0, *screen.app.size)
    problems = []
    for widget in screen.query("*"):
        control = isinstance(widget, CONTROLS) or widget.can_focus
        if not (control or has_text(widget)) or not showing(widget):
            continue
        try:
            geometry = screen.find_widget(widget)
        except NoWidget:
            problems.append(f"{describe(widget)} is not on the screen at all")
            continue
        region = geometry.region
        if not whole.contains_region(region):
            problems.append(f"{describe(widget)} at {region} reaches outside the screen")
        elif geometry.visible_region != region:
            problems.append(
                f"{describe(widget)} at {region} is cut to {geometry.visible_region} "
                "by its container"
            )
        room = widget.content_region.width
        if isinstance(widget, Button):
            # A button pads each line of its label (`line-pad`).
            needed = widget.label.cell_length + 2 * widget.styles.line_pad
            if needed > room:
                problems.append(f"{describe(widget)} needs {needed} cells and has {room}")
        if isinstance(widget, Input):
            # The value (or the hint) whole, and the cursor after it.
            shown = widget.value or widget.placeholder
            if len(shown) + 1 > room:
                problems.append(f"{describe(widget)} shows {shown!r} in {room} cells")
    return problems


def screen_lines(screen: Screen[Any]) -> list[str]:
    return [strip.text for strip in screen._compositor.render_strips()]


def run_together(lines: list[str], words: list[str]) -> list[str]:
    """Each of `words` shown with a space (or the line's end) after it."""
    problems = []
    for word in words:
        for line in lines:
            at = line.find(word)
            if at >= 0:
                after = line[at + len(word) : at + len(word) + 1]
                if after and not after.isspace():
                    problems.append(f"{word!r} runs into the next text: {line.strip()!r}")
    return problems


class Journey:
    """The data every screen needs, made through the engine as a driver would."""

    def __init__(self, site: Site, clock: FixedClock) -> None:
        self.site = site
        self.account = lk.create_account(site, "Ada Lovelace", "ada@example.com", PASSWORD)
        lk.add_vehicle(site, self.account.id, "KLX 481", "medium")
        self.ticket = lk.enter(site, "small", plate="KLX 481")
        paid_ticket = lk.enter(site, "medium")
        # A reservation's car that stays past its window: the longest fee lines.
        soon = site.local(clock.now()) + timedelta(minutes=30)
        booked = lk.hold(site, self.account.id, "small", soon, soon + timedelta(hours=1))
        self._settle(lk.pay_reservation(site, booked.id, card="tok_visa"))
        overstayer = lk.check_in(site, lk.get_reservation(site, booked.id).code)
        clock.advance(hours=2, minutes=40)
        self.due = lk.ticket_status(site, self.ticket.code)
        self.overstay = lk.ticket_status(site, overstayer.code)
        self.overstay_code = overstayer.code
        self.paid = self._settle(lk.pay_ticket(site, paid_ticket.code, card="tok_visa"))
        self.paid_status = lk.ticket_status(site, paid_ticket.code)
        # Its ticket lost after paying: the receipt of the fee, less what was paid.
        self.lost = self._settle(lk.pay_lost_ticket(site, paid_ticket.id, card="tok_visa"))
        self.declined = self._settle(lk.pay_ticket(site, self.ticket.code, card="tok_declined"))
        add_ticket_to_account(site, self.account.id, self.ticket.code, source="test")
        start = site.local(clock.now()).replace(minute=0, second=0, microsecond=0)
        start += timedelta(days=1)
        confirmed = lk.hold(site, self.account.id, "medium", start, start + timedelta(hours=2))
        self.reservation_paid = self._settle(
            lk.pay_reservation(site, confirmed.id, card="tok_visa")
        )
        self.held = lk.hold(
            site, self.account.id, "large", start, start + timedelta(hours=3), plate="KLX 481"
        )

    def _settle(self, payment: Payment) -> Payment:
        return lk.wait_for_payment(self.site, payment.id, sleep=lambda _seconds: None)


def every_screen(j: Journey) -> list[tuple[Any, ...]]:
    """(name, a screen, keys to press on it)"""
    need_refused = ReservationError(
        "no_spot",
        "Sorry, no EV charging spot for a {size} car is free for that whole time. "
        "Please try other times.",
        size="large",
    )
    ticket_purchase = screens.Purchase(ticket_code=j.ticket.code)
    lost = _(
        "Please press the help button or go to the attendant's booth. "
        "They will find your car by its plate and let you out."
    )
    return [
        ("plate", lambda: screens.PlateScreen(Size.LARGE)),
        ("lot full", lambda: screens.LotFullScreen(Size.LARGE)),
        ("ticket printed", lambda: screens.TicketScreen(j.ticket, True, None)),
        (
            "ticket on screen (paper out)",
            lambda: screens.TicketScreen(
                j.ticket,
                False,
                _(
                    "The ticket printer is not working. Please take a photo of this code: "
                    "it is your ticket."
                ),
            ),
        ),
        ("scan to pay", lambda: screens.ScanScreen("pay")),
        ("scan to leave", lambda: screens.ScanScreen("exit")),
        ("scan a reservation", lambda: screens.ScanScreen("check_in")),
        ("fee to pay", lambda: screens.FeeScreen(j.ticket.code, j.due)),
        ("nothing to pay", lambda: screens.FeeScreen("x", j.paid_status)),
        ("simulated card reader", lambda: screens.SimulatedCardScreen(ticket_purchase)),
        ("card reader", lambda: screens.ReaderScreen(ticket_purchase)),
        ("declined", lambda: screens.DeclinedScreen(ticket_purchase, j.declined)),
        ("receipt", lambda: screens.ReceiptScreen(j.paid, ticket_purchase)),
        ("overstay fee", lambda: screens.FeeScreen(j.overstay_code, j.overstay)),
        ("lost ticket receipt", lambda: screens.ReceiptScreen(j.lost, screens.Purchase())),
        ("goodbye", lambda: screens.GoodbyeScreen(j.ticket.spot_label)),
        ("lost ticket", lambda: screens.MessageScreen(lost)),
        ("staff PIN", lambda: screens.StaffPinScreen()),
        ("account", lambda: account.AccountStartScreen()),
        ("sign in", lambda: account.SignInScreen()),
        ("create an account", lambda: account.CreateAccountScreen()),
        ("account home", lambda: account.AccountHomeScreen()),
        ("my reservations", lambda: account.ReservationsScreen()),
        ("my payments", lambda: account.PaymentsScreen()),
        ("my vehicles", lambda: account.VehiclesScreen()),
        ("my tickets", lambda: account.TicketsScreen()),
        ("reminders", lambda: account.RemindersScreen()),
        ("reserve", lambda: account.ReserveScreen()),
        # With the price of the window shown, and the longest choice of space.
        ("reserve with a price", lambda: account.ReserveScreen(), ("f4", "f4", "f3")),
        ("plate with a need", lambda: screens.PlateScreen(Size.LARGE), ("f4", "f4")),
        ("refused for a need", lambda: screens.MessageScreen(error_text(need_refused))),
        ("hold", lambda: account.HoldScreen(j.held)),
        ("reserved", lambda: account.ReservedScreen(j.held.id, j.reservation_paid)),
    ]


def check_every_screen(
    site: Site, clock: FixedClock, tmp_path: Path, language: str, size: tuple[int, int]
) -> list[str]:
    journey = Journey(site, clock)
    idle = IdleClock()
    app = KioskApp(
        site,
        kiosk_id="lane-1",
        role="combined",
        staff_pin=PIN,
        printer=open_printer("preview", tmp_path / "printed"),
        gate=LoggedGate(),
        idle_clock=idle,
    )
    # The card reader screen is looked at waiting for a card.
    app.pay = lambda *args, **kwargs: None  # type: ignore[method-assign]
    problems: list[str] = []

    async def look(name: str) -> None:
        await settle(app, pilot)
        # With the idle countdown showing, as every screen shows it.
        idle.now = app.idle_timeout - 9
        app.idle_tick()
        # And with the busy line a service call shows meanwhile.
        if isinstance(app.screen, screens.KioskScreen):
            app.screen.busy(_("Holding a space for you..."))
        await settle(app, pilot)
        where = f"{language} {size[0]}x{size[1]} {name}"
        problems.extend(f"{where}: {p}" for p in misfits(app.screen))
        idle.now = 0.0
        app.touched()

    async def main() -> None:
        nonlocal pilot
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            if language != "en":
                app.switch_language()
            await settle(app, pilot)
            await look("start")
            problems.extend(
                f"{language} {size[0]}x{size[1]} start: {p}"
                for p in run_together(screen_lines(app.screen), [size_name(size) for size in Size])
            )
            app.account = journey.account
            for name, make, *keys in every_screen(journey):
                await app.push_screen(make())
                for key in keys[0] if keys else ():
                    await pilot.press(key)
                    await settle(app, pilot)
                await look(name)
                app.pop_screen()
                await settle(app, pilot)

    pilot: Any = None
    import asyncio

    asyncio.run(main())
    use_language("en")
    return problems


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("language", "size"), [("en", (WIDTH, HEIGHT)), ("es", (WIDTH, HEIGHT)), ("es", TALL)]
)
def test_every_screen_fits_80x24(
    make_site: Any, clock: FixedClock, tmp_path: Path, language: str, size: tuple[int, int]
) -> None:
    site = make_site(make_layout(small=4, medium=4, large=2))
    problems = check_every_screen(site, clock, tmp_path, language, size)
    assert not problems, "\n".join(problems)


def test_the_fit_check_finds_a_button_off_screen_a_cut_field_and_a_short_label() -> None:
    from textual.app import App, ComposeResult
    from textual.containers import Horizontal, Vertical

    class Misfit(App[None]):
        def compose(self) -> ComposeResult:
            with Vertical():
                yield Static("\n" * 22)
                yield Button("Below the screen", id="below")
            with Horizontal(id="row"):
                yield Input(id="wide-1")
                yield Input(id="wide-2")
            yield Button(Text("A label much too long for its button"), id="short")

        CSS = """
        Vertical { height: 24; }
        #row { height: 3; width: 80; overflow: hidden; }
        Input { width: 60; }
        #short { width: 12; }
        """

    async def main() -> list[str]:
        app = Misfit()
        async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
            await pilot.pause()
            return misfits(app.screen)

    import asyncio

    found = "\n".join(asyncio.run(main()))
    assert "Button#below" in found
    assert "Input#wide-2" in found and "Input#wide-1" not in found
    assert "Button#short" in found and "needs" in found
