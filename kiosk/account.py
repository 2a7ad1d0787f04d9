"""Accounts at the kiosk: create one, sign in, register vehicles, see my
reservations and payments, add a walk-in ticket (scanned or typed) to see
its stay, and reserve in advance (size, date, time, hours
-> quote -> a 5-minute hold with its countdown -> pay -> the reservation code
printed and shown as a QR). The driver is signed out whenever the kiosk goes
back to its start screen: done, or idle."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from core import services as lk
from core.domain import Account, Payment, Size
from core.errors import InvalidInput
from core.services.accounts import add_ticket_to_account
from core.services.notifications import Preferences
from core.services.reservations import Reservation
from core.services.stays import StayStatus
from core.tariff import Quote, format_money
from kiosk.i18n import N_, _
from kiosk.screens import KioskScreen, MessageScreen, Purchase, card_screen
from kiosk.widgets import (
    BigButton,
    FeeBreakdown,
    NeedButton,
    OnScreenKeyboard,
    QrCode,
    size_name,
)

# Words from the engine, shown in lists (translated where shown).
WORDS = {
    "held": N_("held"),
    "confirmed": N_("confirmed"),
    "checked_in": N_("checked in"),
    "expired": N_("expired"),
    "cancelled": N_("cancelled"),
    "no_show": N_("no show"),
    "pending": N_("pending"),
    "succeeded": N_("paid"),
    "failed": N_("declined"),
    "stay": N_("parking"),
    "reservation": N_("reservation"),
    "lost_ticket": N_("lost ticket"),
}


def word(value: str) -> str:
    return _(WORDS.get(value, value.replace("_", " ")))


class FormScreen(KioskScreen):
    """A screen with text fields: the on-screen keyboard types into the
    focused field (or the first one). Touch a field, or Tab, to move between
    fields; Enter is the screen's main button, as everywhere."""

    @on(OnScreenKeyboard.Pressed)
    def typed(self, event: OnScreenKeyboard.Pressed) -> None:
        focused = self.focused
        field = focused if isinstance(focused, Input) else self.query(Input).first()
        field.value = field.value[:-1] if event.key == "\b" else field.value + event.key

    def value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value

    def signed_in(self, account: Account) -> None:
        self.kiosk.account = account
        self.busy(None)
        self.app.switch_screen(AccountHomeScreen())


class AccountStartScreen(KioskScreen):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Your account"), id="title")
            yield Label(_("Reserve a space in advance, see your reservations and payments."))
            with Horizontal(id="actions"):
                yield BigButton(_("Sign in"), "f1", id="sign-in")
                yield BigButton(_("Create an account"), "f2", id="create", variant="success")
            yield BigButton(_("Back to start"), "escape", id="home", variant="default")
            yield Label("", id="countdown")

    @on(Button.Pressed, "#sign-in")
    def sign_in(self) -> None:
        self.app.push_screen(SignInScreen())

    @on(Button.Pressed, "#create")
    def create(self) -> None:
        self.app.push_screen(CreateAccountScreen())


class SignInScreen(FormScreen):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Sign in"), id="title")
            yield Input(id="email", placeholder=_("E-mail address"))
            yield Input(id="password", password=True, placeholder=_("Password"))
            with Horizontal(id="actions"):
                yield BigButton(_("Sign in"), "enter", id="go", variant="success")
                yield BigButton(_("Back"), "escape", id="back", variant="error")
            yield Label("", id="busy")
            yield OnScreenKeyboard(id="keyboard")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.query_one("#email", Input).focus()

    @on(Button.Pressed, "#go")
    def go(self) -> None:
        email, password = self.value("email"), self.value("password")
        site, kiosk_id = self.kiosk.site, self.kiosk.kiosk_id
        self.busy(_("Signing in..."))
        # Failures count per kiosk: a stranger here never locks the owner
        # out at another kiosk or on their phone.
        self.kiosk.call_core(
            self, lambda: lk.sign_in(site, email, password, client=kiosk_id), self.signed_in
        )


class CreateAccountScreen(FormScreen):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Create an account"), id="title")
            yield Input(id="name", placeholder=_("Your name"))
            yield Input(id="email", placeholder=_("E-mail address"))
            yield Input(
                id="password", password=True, placeholder=_("Password (8 characters or more)")
            )
            with Horizontal(id="actions"):
                yield BigButton(_("Create"), "enter", id="go", variant="success")
                yield BigButton(_("Back"), "escape", id="back", variant="error")
            yield Label("", id="busy")
            yield OnScreenKeyboard(id="keyboard")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Button.Pressed, "#go")
    def go(self) -> None:
        if self.working:
            return
        name, email, password = self.value("name"), self.value("email"), self.value("password")
        site = self.kiosk.site
        self.busy(_("Creating your account..."))
        self.kiosk.call_core(
            self, lambda: lk.create_account(site, name, email, password), self.signed_in
        )


class AccountScreen(KioskScreen):
    """A screen for a signed-in driver."""

    @property
    def account(self) -> Account:
        account = self.kiosk.account
        if account is None:  # signed out meanwhile (idle): never show another's data
            raise LookupError("no driver is signed in")
        return account


class AccountHomeScreen(AccountScreen):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Hello, {name}").format(name=self.account.name), id="title")
            with Horizontal(id="actions"):
                yield BigButton(_("Reserve"), "f1", id="reserve", variant="success")
                yield BigButton(_("My reservations"), "f2", id="reservations")
                yield BigButton(_("My tickets"), "f6", id="tickets")
            with Horizontal():
                yield BigButton(_("My payments"), "f3", id="payments")
                yield BigButton(_("My vehicles"), "f4", id="vehicles")
                yield BigButton(_("Reminders"), "f5", id="reminders")
            yield BigButton(_("Sign out"), "escape", id="home", variant="error")
            yield Label("", id="countdown")

    @on(Button.Pressed, "#reserve")
    def reserve(self) -> None:
        self.app.push_screen(ReserveScreen())

    @on(Button.Pressed, "#reservations")
    def reservations(self) -> None:
        self.app.push_screen(ReservationsScreen())

    @on(Button.Pressed, "#payments")
    def payments(self) -> None:
        self.app.push_screen(PaymentsScreen())

    @on(Button.Pressed, "#tickets")
    def tickets(self) -> None:
        self.app.push_screen(TicketsScreen())

    @on(Button.Pressed, "#vehicles")
    def vehicles(self) -> None:
        self.app.push_screen(VehiclesScreen())

    @on(Button.Pressed, "#reminders")
    def reminders(self) -> None:
        self.app.push_screen(RemindersScreen())


class ListScreen(AccountScreen):
    """A list read in a worker: reservations, payments or vehicles."""

    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_(self.TITLE_TEXT), id="title")
            yield from self.controls()
            yield Static(_("Loading..."), id="list")
            yield BigButton(_("Back"), "escape", id="back", variant="default")
            yield Label("", id="busy")
            yield Label("", id="countdown")

    def controls(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        account_id = self.account.id
        self.kiosk.call_core(self, lambda: self.load(account_id), self.show)

    def load(self, account_id: int) -> Any:
        raise NotImplementedError

    def show(self, table: Table | str) -> None:
        self.busy(None)
        self.query_one("#list", Static).update(table)


class ReservationsScreen(ListScreen):
    TITLE_TEXT = N_("My reservations")

    def load(self, account_id: int) -> Table | str:
        site = self.kiosk.site
        page = lk.account_reservations(site, account_id, per_page=8)
        if not page.items:
            return _("No reservations yet.")
        table = Table(expand=True, show_edge=False)
        for column in (_("Code"), _("Space"), _("From"), _("To"), _("State")):
            table.add_column(column)
        for r in page.items:
            table.add_row(
                r.short_code,
                r.spot_label,
                self.kiosk.describe_time(r.starts_at),
                self.kiosk.describe_time(r.ends_at),
                word(r.state.value),
            )
        return table


class PaymentsScreen(ListScreen):
    TITLE_TEXT = N_("My payments")

    def load(self, account_id: int) -> Table | str:
        site = self.kiosk.site
        page = lk.payment_history(site, account_id, per_page=8)
        if not page.items:
            return _("No payments yet.")
        table = Table(expand=True, show_edge=False)
        for column in (_("When"), _("For"), _("Amount"), _("State")):
            table.add_column(column)
        for p in page.items:
            amount = format_money(p.amount, p.currency)
            table.add_row(
                self.kiosk.describe_time(p.created_at),
                word(p.purpose),
                f"-{amount}" if p.kind == "refund" else amount,
                word(p.status.value) + (" (" + _("simulated") + ")" if p.simulated else ""),
            )
        return table


class VehiclesScreen(ListScreen, FormScreen):
    TITLE_TEXT = N_("My vehicles")

    def controls(self) -> ComposeResult:
        yield Input(id="plate", placeholder=_("Licence plate"), max_length=15)
        # Three buttons a row: five in one cut their labels (and keys) at 80x24.
        with Horizontal(id="sizes"):
            for index, size in enumerate(Size, start=1):
                yield BigButton(size_name(size), f"f{index}", id=f"add-{size.label}")
        with Horizontal(id="actions"):
            yield BigButton(_("Remove"), "f5", id="remove", variant="error")

    def load(self, account_id: int) -> str:
        vehicles = lk.list_vehicles(self.kiosk.site, account_id)
        if not vehicles:
            return _("No vehicles yet: type a plate, then choose its size to add it.")
        return "\n".join(f"{v.plate:<12} {size_name(v.size)}" for v in vehicles)

    @on(Button.Pressed)
    def change(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if not (button.startswith("add-") or button == "remove"):
            return
        plate, account_id, site = self.value("plate"), self.account.id, self.kiosk.site
        self.query_one("#plate", Input).value = ""
        self.busy(_("Saving..."))
        if button == "remove":
            self.kiosk.call_core(
                self, lambda: lk.remove_vehicle(site, account_id, plate), self.changed
            )
        else:
            size = button.removeprefix("add-")
            self.kiosk.call_core(
                self, lambda: lk.add_vehicle(site, account_id, plate, size), self.changed
            )

    def changed(self, _result: object) -> None:
        self.busy(None)
        self.reload()


class TicketsScreen(ListScreen, FormScreen):
    """The account's cars inside, and adding a walk-in's ticket by its code:
    the ticket in hand is the proof the stay is the driver's (a plate is
    not)."""

    TITLE_TEXT = N_("My tickets")

    def controls(self) -> ComposeResult:
        yield Input(id="code", placeholder=_("Scan the ticket, or type the code under its QR"))
        with Horizontal(id="actions"):
            yield BigButton(_("Add ticket"), "enter", id="add", variant="success")

    def on_mount(self) -> None:  # ListScreen's on_mount loads the list too
        self.query_one("#code", Input).focus()

    def load(self, account_id: int) -> Table | str:
        site = self.kiosk.site
        stays = lk.account_spots(site, account_id).stays
        if not stays:
            return _("No cars inside on this account yet: scan a ticket to add it.")
        table = Table(expand=True, show_edge=False)
        for column in (_("Ticket"), _("Space"), _("Since"), _("To pay")):
            table.add_column(column)
        for stay in stays:
            table.add_row(
                str(stay.ticket_id),
                stay.spot_label,
                self.kiosk.describe_time(stay.entered_at),
                format_money(stay.due, stay.quote.currency),
            )
        return table

    @on(Button.Pressed, "#add")
    def add(self) -> None:
        if self.working:
            return
        code, account_id, site, kiosk = (
            self.value("code"),
            self.account.id,
            self.kiosk.site,
            self.kiosk,
        )
        self.query_one("#code", Input).value = ""
        self.busy(_("Adding the ticket..."))
        kiosk.call_core(
            self,
            lambda: add_ticket_to_account(site, account_id, code, source=kiosk.kiosk_id),
            self.added,
        )

    def added(self, _stay: StayStatus) -> None:
        self.busy(None)
        self.reload()


class RemindersScreen(AccountScreen):
    """Which emails the driver wants: each button turns one on or off."""

    CHOICES = (
        ("remind_reservation", N_("Reminder 30 minutes before a reservation"), "f1"),
        ("remind_max_stay", N_("Reminder 15 minutes before my parking time ends"), "f2"),
        ("notify_overstay", N_("Notice when my car is past its time"), "f3"),
        ("notify_changes", N_("Notice when a reservation is cancelled or moved"), "f4"),
    )

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Emails to {email}").format(email=self.account.email), id="title")
            for choice, _text, key in self.CHOICES:
                yield BigButton("...", key, id=choice)
            yield BigButton(_("Back"), "escape", id="back", variant="default")
            yield Label("", id="busy")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        account_id, site = self.account.id, self.kiosk.site
        self.kiosk.call_core(self, lambda: lk.notification_preferences(site, account_id), self.show)

    def show(self, prefs: Preferences) -> None:
        self.busy(None)
        self.prefs = prefs
        for choice, text, key in self.CHOICES:
            state = _("on") if getattr(prefs, choice) else _("off")
            label = Text(f"{_(text)}: {state} [{key.upper()}]")
            button = self.query_one(f"#{choice}", Button)
            button.label = label
            button.variant = "success" if getattr(prefs, choice) else "default"

    @on(Button.Pressed)
    def toggle(self, event: Button.Pressed) -> None:
        choice = event.button.id or ""
        prefs = getattr(self, "prefs", None)
        if prefs is None or choice not in dict((c, t) for c, t, _k in self.CHOICES):
            return
        account_id, site = self.account.id, self.kiosk.site
        wanted = {choice: not getattr(prefs, choice)}
        self.busy(_("Saving..."))
        self.kiosk.call_core(
            self, lambda: lk.set_notification_preferences(site, account_id, **wanted), self.show
        )


def _parse_start(day: str, clock_time: str, zone: Any) -> datetime:
    """A site-local date ("2026-11-23") and time ("09:30", "0930" or "9")."""
    try:
        date = datetime.strptime(day.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise InvalidInput(_("Please type the date as year-month-day, e.g. 2026-11-23.")) from None
    digits = "".join(c for c in clock_time if c in "0123456789")
    if not digits or len(digits) > 4:
        raise InvalidInput(_("Please type the time as hours and minutes, e.g. 09:30."))
    hours, minutes = (
        (int(digits[:-2] or 0), int(digits[-2:]))
        if len(digits) > 2
        else (
            int(digits),
            0,
        )
    )
    if hours > 23 or minutes > 59:
        raise InvalidInput(_("Please type the time as hours and minutes, e.g. 09:30."))
    return datetime.combine(date, time(hours, minutes), tzinfo=zone)


class ReserveScreen(AccountScreen, FormScreen):
    """Date, start time, hours and (optionally) an accessible or EV space,
    then the size -> the price of that window -> hold the spot and pay.
    Changing the window after the price was shown asks for the size again,
    so the price held is always the one on screen."""

    WINDOW_FIELDS = ("day", "time", "hours")

    def compose(self) -> ComposeResult:
        site = self.kiosk.site
        start = site.local(site.clock.now()).replace(minute=0, second=0, microsecond=0)
        start += timedelta(hours=1)
        self.car_size = Size.MEDIUM
        self.quoted_window: tuple[Size, datetime, datetime] | None = None
        with Vertical():
            yield Label(_("Reserve a space"), id="title")
            with Horizontal(id="window"):
                yield Label(_("Date"), classes="field-label")
                yield Input(start.strftime("%Y-%m-%d"), id="day", placeholder="2026-11-23")
                yield Label(_("Start"), classes="field-label")
                yield Input(start.strftime("%H:%M"), id="time", placeholder="09:30", max_length=5)
                yield Label(_("Hours"), classes="field-label")
                yield Input("2", id="hours", placeholder="2", max_length=2)
                yield NeedButton()
            with Horizontal(id="sizes"):
                for index, size in enumerate(Size, start=1):
                    yield BigButton(size_name(size), f"f{index}", id=f"size-{size.label}")
            yield FeeBreakdown(id="fee")
            with Horizontal(id="actions"):
                yield BigButton(_("Hold and pay"), "enter", id="hold", variant="success")
                yield BigButton(_("Back"), "escape", id="back", variant="error")
            yield Label("", id="busy")
            yield OnScreenKeyboard(id="keyboard")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.unquote()

    def unquote(self) -> None:
        self.quoted_window = None
        self.query_one("#hold", Button).disabled = True
        self.query_one(FeeBreakdown).update(_("Choose the size of your car for the price."))

    @on(Input.Changed)
    def window_changed(self, event: Input.Changed) -> None:
        if event.input.id in self.WINDOW_FIELDS and self.quoted_window is not None:
            self.unquote()

    def window(self) -> tuple[datetime, datetime]:
        start = _parse_start(self.value("day"), self.value("time"), self.kiosk.site.zone)
        try:
            hours = int(self.value("hours"))
        except ValueError:
            raise InvalidInput(_("Please type how many hours, e.g. 2.")) from None
        return start, start + timedelta(hours=hours)

    @on(Button.Pressed)
    def choose_size(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if not button.startswith("size-"):
            return
        self.car_size = Size.parse(button.removeprefix("size-"))
        site = self.kiosk.site
        try:
            start, end = self.window()
        except InvalidInput as error:
            self.failed(error)
            return
        size = self.car_size
        self.busy(_("Working out the price..."))
        self.kiosk.call_core(
            self,
            lambda: lk.quote_reservation(site, size, start, end),
            lambda quote: self.quoted(quote, size, start, end),
        )

    def quoted(self, quote: Quote, size: Size, start: datetime, end: datetime) -> None:
        self.busy(None)
        self.quoted_window = (size, start, end)
        hours = int((end - start).total_seconds() // 3600)
        heading = _("{size}, {start} to {end} ({hours} h)").format(
            size=size_name(size),
            start=self.kiosk.describe_time(start),
            end=self.kiosk.describe_time(end),
            hours=hours,
        )
        self.query_one(FeeBreakdown).show(quote, quote.total, heading=heading)
        self.query_one("#hold", Button).disabled = False

    @on(Button.Pressed, "#hold")
    def hold(self) -> None:
        if self.working or self.quoted_window is None:
            return
        site, account, kiosk = self.kiosk.site, self.account, self.kiosk
        size, start, end = self.quoted_window
        need = self.query_one(NeedButton).need
        self.busy(_("Holding a space for you..."))
        kiosk.call_core(
            self,
            lambda: lk.hold(site, account.id, size, start, end, kiosk=kiosk.kiosk_id, need=need),
            lambda held: self.app.switch_screen(HoldScreen(held)),
        )


class HoldScreen(AccountScreen):
    """A space held for 5 minutes while the driver pays, with the countdown."""

    def __init__(self, reservation: Reservation) -> None:
        super().__init__()
        self.reservation = reservation

    def compose(self) -> ComposeResult:
        r = self.reservation
        with Vertical():
            yield Label(_("Space {spot} is held for you").format(spot=r.spot_label), id="title")
            yield Label(
                _("{level}, {start} to {end}: {price}").format(
                    level=r.level,
                    start=self.kiosk.describe_time(r.starts_at),
                    end=self.kiosk.describe_time(r.ends_at),
                    price=format_money(r.price, r.currency),
                )
            )
            yield Label("", id="hold-left")
            with Horizontal(id="actions"):
                yield BigButton(_("Pay by card"), "enter", id="pay", variant="success")
                yield BigButton(_("Cancel"), "escape", id="cancel", variant="error")
            yield Label("", id="busy")

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        left = self.reservation.hold_expires_at - self.kiosk.site.clock.now()
        seconds = max(0, int(left.total_seconds()))
        self.query_one("#hold-left", Label).update(
            _("Pay within {time} to keep it.").format(time=f"{seconds // 60}:{seconds % 60:02d}")
        )
        if seconds == 0:
            self.query_one("#pay", Button).disabled = True
            self.app.switch_screen(
                MessageScreen(_("The 5 minutes are up and the space was released."))
            )

    @on(Button.Pressed, "#pay")
    def pay(self) -> None:
        self.app.switch_screen(card_screen(self.kiosk, Purchase(reservation=self.reservation)))

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        if self.working:
            return
        site, r, kiosk = self.kiosk.site, self.reservation, self.kiosk
        self.busy(_("Releasing the space..."))
        kiosk.call_core(
            self,
            lambda: lk.cancel_reservation(site, r.id, r.account_id, kiosk=kiosk.kiosk_id),
            lambda _done: self.app.pop_screen(),
        )


class ReservedScreen(KioskScreen):
    """Paid: the reservation's code, printed and as a QR to photograph."""

    def __init__(self, reservation_id: int, payment: Payment) -> None:
        super().__init__()
        self.reservation_id = reservation_id
        self.payment = payment

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Your space is reserved"), id="title")
            if self.payment.simulated:
                yield Label(_("SIMULATED PAYMENT - NO MONEY TAKEN"), id="demo")
            # The QR beside the facts, so Done stays on an 80x24 screen.
            with Horizontal(id="qr-and-facts"):
                yield QrCode(id="qr")
                with Vertical(id="facts"):
                    yield Label("", id="details")
                    yield Label(_("Printing your reservation..."), id="receipt")
                    # Still signed in: Done goes back to the account.
                    yield BigButton(_("Done"), "enter", id="account-home")

    def on_mount(self) -> None:
        self.kiosk.print_receipt(self, self.payment)

    @on(Button.Pressed, "#account-home")
    def account_home(self) -> None:
        self.kiosk.go_to_account()

    def receipt_done(self, text: str, reservation: Reservation | None = None) -> None:
        self.query_one("#receipt", Label).update(text)
        if reservation is None:
            return
        self.query_one("#details", Label).update(
            Text(
                _("Code {code}: space {spot}, {level}, {start} to {end}.").format(
                    code=reservation.short_code,
                    spot=reservation.spot_label,
                    level=reservation.level,
                    start=self.kiosk.describe_time(reservation.starts_at),
                    end=self.kiosk.describe_time(reservation.ends_at),
                )
            )
        )
        self.query_one(QrCode).show(reservation.code)
