"""One screen per step of a driver's journey. Screens call `core` service
functions only from thread workers, and only through the app's helpers, so
the UI loop never blocks and never sees a database session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from core.domain import Payment, Size, Ticket
from core.errors import (
    LotFull,
    LotkeeperError,
)
from core.payments.provider import PaymentStatus
from core.services.reservations import Reservation
from core.services.stays import Receipt, StayStatus
from core.tariff import format_money
from kiosk.i18n import LANGUAGES, N_, _, error_text, language
from kiosk.widgets import (
    AvailabilityPanel,
    BigButton,
    FeeBreakdown,
    NeedButton,
    OnScreenKeyboard,
    QrCode,
    size_name,
)

if TYPE_CHECKING:
    from kiosk.app import KioskApp


@dataclass(frozen=True)
class Purchase:
    """What the card pays for: a ticket (by its code) or a held reservation."""

    ticket_code: str | None = None
    reservation: Reservation | None = None
    leave_after: bool = False
    """Paying at the exit lane: once paid, the gate opens."""


def card_screen(kiosk: KioskApp, purchase: Purchase) -> Screen[Any]:
    """Where paying by card starts: the simulated reader's choices in the
    demo, the real reader otherwise."""
    if kiosk.simulated_payments:
        return SimulatedCardScreen(purchase)
    return ReaderScreen(purchase)


class KioskScreen(Screen[Any]):
    """Base: key shortcuts of big buttons, and a busy line."""

    @property
    def kiosk(self) -> KioskApp:
        return self.app  # type: ignore[return-value]

    def on_key(self, event: Any) -> None:
        self.kiosk.touched()
        buttons = list(self.query(BigButton))
        for button in buttons:
            if button.key == event.key and not button.disabled:
                event.stop()
                button.press()
                return
        if event.key == "escape" and not any(b.key == "escape" for b in buttons):
            # Esc always leaves a screen: where no button shows Esc, it is
            # the way out the screen has ("Done", "Back").
            for button in buttons:
                if button.id in ("home", "back", "account-home") and not button.disabled:
                    event.stop()
                    button.press()
                    return

    @on(Button.Pressed, "#home")
    def home(self) -> None:
        """Every "Done", "Cancel" and "Back to start" ends the journey."""
        self.kiosk.go_home()

    @on(Button.Pressed, "#back")
    def back(self) -> None:
        """Every "Back" goes one step back."""
        self.app.pop_screen()

    def failed(self, error: LotkeeperError) -> None:
        """A service call was refused: say why; the driver stays here."""
        self.busy(None)
        self.app.push_screen(MessageScreen(error_text(error)))

    working = False
    """A service call started here is under way: a second press of the
    same button (or Enter) is ignored until it answers."""

    def busy(self, text: str | None) -> None:
        self.working = bool(text)
        for line in self.query("#busy").results(Label):
            line.update(text or "")
            line.display = bool(text)


class StartScreen(KioskScreen):
    """Live availability, the entry choices, pay, exit, reservations and the
    language switch. A scanned code (scanner types it and Enter) is handled
    from here directly."""

    def compose(self) -> ComposeResult:
        role = self.kiosk.role
        with Vertical(id="start"):
            yield Label(self.kiosk.site_name, id="title")
            if self.kiosk.simulated_payments:
                yield Label(_("Demo mode: card payments are simulated"), id="demo")
            yield AvailabilityPanel(id="availability")
            with Horizontal(id="choices"):
                if role in ("entry", "combined"):
                    yield BigButton(size_name(Size.SMALL), "f1", id="enter-small")
                    yield BigButton(size_name(Size.MEDIUM), "f2", id="enter-medium")
                    yield BigButton(size_name(Size.LARGE), "f3", id="enter-large")
            with Horizontal(id="services"):
                if role in ("pay", "exit", "combined"):
                    yield BigButton(_("Pay a ticket"), "f5", id="pay", variant="success")
                if role in ("exit", "combined"):
                    yield BigButton(_("Exit"), "f6", id="exit", variant="warning")
                if role in ("entry", "combined"):
                    yield BigButton(_("Reservation"), "f4", id="reservation")
            with Horizontal(id="more"):
                if role in ("entry", "pay", "combined"):
                    yield BigButton(_("Account"), "f7", id="account", variant="default")
                other = "es" if language() == "en" else "en"
                yield BigButton(LANGUAGES[other], "f9", id="language", variant="default")
            yield Input(placeholder=_("Or scan your ticket here"), id="scan")
            yield Label("", id="busy")

    def on_mount(self) -> None:
        self.refresh_availability()
        # A keyboard-wedge scanner types into whatever has the focus.
        self.query_one("#scan", Input).focus()

    def refresh_availability(self) -> None:
        self.query_one(AvailabilityPanel).show(self.kiosk.availability)

    @on(Button.Pressed, "#enter-small, #enter-medium, #enter-large")
    def choose_size(self, event: Button.Pressed) -> None:
        size = Size.parse((event.button.id or "").removeprefix("enter-"))
        counts = self.kiosk.availability
        if counts is not None and counts.for_size(size).free_fitting == 0:
            # Full by the live counts: the engine is asked at once, not after
            # the plate, so the driver hears "full" straight away and the
            # attendant sees the refusal. Should a space have come free this
            # instant, the ticket is issued as with "Skip plate".
            if not self.working:
                self.busy(_("Checking..."))
                self.kiosk.take_ticket(self, size, None)
            return
        self.app.push_screen(PlateScreen(size))

    def failed(self, error: LotkeeperError) -> None:
        self.busy(None)
        if isinstance(error, LotFull):
            self.app.push_screen(LotFullScreen(Size.parse(error.size)))
        else:
            self.app.push_screen(MessageScreen(error_text(error)))

    @on(Button.Pressed, "#pay")
    def pay(self) -> None:
        self.app.push_screen(ScanScreen("pay"))

    @on(Button.Pressed, "#exit")
    def exit_lane(self) -> None:
        self.app.push_screen(ScanScreen("exit"))

    @on(Button.Pressed, "#reservation")
    def reservation(self) -> None:
        self.app.push_screen(ScanScreen("check_in"))

    @on(Button.Pressed, "#account")
    def account(self) -> None:
        from kiosk.account import AccountStartScreen

        self.app.push_screen(AccountStartScreen())

    @on(Button.Pressed, "#language")
    def switch_language(self) -> None:
        self.kiosk.switch_language()

    @on(Input.Submitted, "#scan")
    def scanned(self, event: Input.Submitted) -> None:
        code = event.value.strip()
        event.input.value = ""
        if code:
            kind = "check_in" if code.upper().startswith(("LR1.", "R")) else "pay"
            if kind == "check_in" and self.kiosk.role not in ("entry", "combined"):
                self.app.push_screen(
                    MessageScreen(_("This is a reservation code: please use it at the entry."))
                )
                return
            if kind == "pay" and self.kiosk.role == "exit":
                kind = "exit"
            self.app.push_screen(ScanScreen(kind, code))


class PlateScreen(KioskScreen):
    """Optional plate and an optional accessible or EV space, then the
    ticket is issued."""

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.car_size = size

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(size_name(self.car_size), id="title")
            yield Label(_("Your licence plate (optional)"))
            yield Input(id="plate", max_length=15)
            with Horizontal(id="needs"):
                yield NeedButton()
            yield OnScreenKeyboard(id="keyboard")
            with Horizontal(id="actions"):
                yield BigButton(_("Take ticket"), "enter", id="take")
                yield BigButton(_("Skip plate"), "f2", id="skip", variant="default")
                yield BigButton(_("Back"), "escape", id="back", variant="error")
            yield Label("", id="busy")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.query_one("#plate", Input).focus()

    @on(OnScreenKeyboard.Pressed)
    def typed(self, event: OnScreenKeyboard.Pressed) -> None:
        field = self.query_one("#plate", Input)
        field.value = field.value[:-1] if event.key == "\b" else field.value + event.key

    @on(Input.Submitted, "#plate")
    @on(Button.Pressed, "#take")
    def take(self) -> None:
        self.issue(self.query_one("#plate", Input).value)

    @on(Button.Pressed, "#skip")
    def skip(self) -> None:
        self.issue("")

    def issue(self, plate: str) -> None:
        if self.working:
            return
        for button in self.query(Button):
            button.disabled = True
        self.busy(_("Printing your ticket..."))
        need = self.query_one(NeedButton).need
        self.kiosk.take_ticket(self, self.car_size, plate or None, need)

    def failed(self, error: LotkeeperError) -> None:
        for button in self.query(Button):
            button.disabled = False
        self.busy(None)
        if isinstance(error, LotFull) and getattr(error, "need", None) is None:
            self.app.switch_screen(LotFullScreen(self.car_size))
        else:
            # No space with the feature asked for (named in the message):
            # the driver stays here and may ask for any space instead.
            self.app.push_screen(MessageScreen(error_text(error)))


class LotFullScreen(KioskScreen):
    """No fitting space for this size. A car fits its size or larger, and
    entry already gives the smallest free space that fits, larger ones
    included; so when a size is full, every larger size is full too and
    there is nothing bigger to offer."""

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.car_size = size

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                _("Sorry, the garage is full for a {size}.").format(
                    size=size_name(self.car_size).lower()
                ),
                id="title",
            )
            yield Label(_("No ticket was printed. Please try again later or ask the attendant."))
            yield BigButton(_("Back to start"), "escape", id="home", variant="default")
            yield Label("", id="countdown")


class TicketScreen(KioskScreen):
    """The spot, and the ticket's QR on screen when it could not be printed."""

    def __init__(self, ticket: Ticket, printed: bool, problem: str | None) -> None:
        super().__init__()
        self.ticket = ticket
        self.printed = printed
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                _("Your space: {spot}, {level}").format(
                    spot=self.ticket.spot_label, level=self.ticket.level
                ),
                id="title",
            )
            if self.printed:
                yield from self.facts()
                yield Label(_("Take your ticket. The gate is open."), id="done")
                yield BigButton(_("Done"), "enter", id="home")
                return
            # The QR beside the facts: below them it would push Done off an
            # 80x24 screen.
            with Horizontal(id="qr-and-facts"):
                yield QrCode(id="qr")
                with Vertical(id="facts"):
                    yield Label(
                        self.problem
                        or _("Your ticket could not be printed. Please take a photo of this code."),
                        id="problem",
                    )
                    yield from self.facts()
                    yield BigButton(_("Done"), "enter", id="home")

    def facts(self) -> ComposeResult:
        site = self.kiosk
        yield Label(_("Ticket {code}").format(code=self.ticket.short_code), id="short")
        if self.ticket.spot_size > self.ticket.size:
            yield Label(_("All spaces of your size are taken, so you have a larger one."))
        yield Label(
            _("Entered {entered}. Please leave by {until}.").format(
                entered=site.describe_time(self.ticket.entered_at),
                until=site.describe_time(self.ticket.max_stay_until),
            )
        )

    def on_mount(self) -> None:
        if not self.printed:
            self.query_one(QrCode).show(self.ticket.code)


class ScanScreen(KioskScreen):
    """Scan or type a ticket (pay, exit) or a reservation code (check in)."""

    TITLES = {
        "pay": N_("Scan your ticket to pay"),
        "exit": N_("Scan your ticket to leave"),
        "check_in": N_("Scan or type your reservation code"),
    }

    def __init__(self, purpose: str, code: str | None = None) -> None:
        super().__init__()
        self.purpose = purpose
        self.initial = code

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_(self.TITLES[self.purpose]), id="title")
            yield Input(id="code", placeholder=_("Code under the QR, e.g. 42-ABCDEF"))
            yield OnScreenKeyboard(id="keyboard")
            with Horizontal(id="actions"):
                yield BigButton(_("OK"), "enter", id="ok")
                if self.purpose == "exit":
                    yield BigButton(_("I lost my ticket"), "f3", id="lost", variant="warning")
                yield BigButton(_("Back"), "escape", id="back", variant="error")
            yield Label("", id="busy")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.query_one("#code", Input).focus()
        if self.initial:
            self.submit(self.initial)

    @on(OnScreenKeyboard.Pressed)
    def typed(self, event: OnScreenKeyboard.Pressed) -> None:
        field = self.query_one("#code", Input)
        field.value = field.value[:-1] if event.key == "\b" else field.value + event.key

    @on(Input.Submitted, "#code")
    def entered(self, event: Input.Submitted) -> None:
        self.submit(event.value)

    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        self.submit(self.query_one("#code", Input).value)

    @on(Button.Pressed, "#lost")
    def lost(self) -> None:
        self.app.push_screen(
            MessageScreen(
                _(
                    "Please press the help button or go to the attendant's booth. "
                    "They will find your car by its plate and let you out."
                ),
                alert=f"lost ticket at {self.kiosk.kiosk_id}",
            )
        )

    def submit(self, code: str) -> None:
        code = code.strip()
        if not code or self.working:
            return
        self.query_one("#code", Input).value = ""
        self.busy(_("Checking..."))
        if self.purpose == "check_in":
            self.kiosk.check_in(self, code)
        elif self.purpose == "exit":
            self.kiosk.leave(self, code)
        else:
            self.kiosk.look_up(self, code)

    def failed(self, error: LotkeeperError) -> None:
        self.busy(None)
        self.app.push_screen(MessageScreen(error_text(error)))


class FeeScreen(KioskScreen):
    """What the ticket owes, with its breakdown; or its exit-by time."""

    def __init__(self, code: str, status: StayStatus, leaving: bool = False) -> None:
        super().__init__()
        self.code = code
        self.status = status
        self.leaving = leaving

    def compose(self) -> ComposeResult:
        status = self.status
        with Vertical():
            yield Label(
                _("Ticket {id}: space {spot}").format(id=status.ticket_id, spot=status.spot_label),
                id="title",
            )
            entered = _("Entered {time}.").format(time=self.kiosk.describe_time(status.entered_at))
            if status.billed_from is not None:
                # A reservation's stay: prepaid until its window's end.
                entered += " " + _("Your reservation ended at {time}.").format(
                    time=self.kiosk.describe_time(status.billed_from)
                )
            yield Label(entered, id="entered")
            yield FeeBreakdown(id="fee")
            if status.due:
                with Horizontal(id="actions"):
                    yield BigButton(_("Pay by card"), "enter", id="card", variant="success")
                    yield BigButton(_("Cancel"), "escape", id="home", variant="error")
            else:
                until = status.paid_until
                yield Label(
                    _("Nothing to pay. Please leave by {time}.").format(
                        time=self.kiosk.describe_time(until)
                    )
                    if until
                    else _("Nothing to pay. You may leave now."),
                    id="paid",
                )
                yield BigButton(_("Done"), "enter", id="home")
            yield Label("", id="busy")
            yield Label("", id="countdown")

    def on_mount(self) -> None:
        self.query_one(FeeBreakdown).show(self.status.quote, self.status.due)

    @on(Button.Pressed, "#card")
    def card(self) -> None:
        purchase = Purchase(ticket_code=self.code, leave_after=self.leaving)
        self.app.switch_screen(card_screen(self.kiosk, purchase))


class SimulatedCardScreen(KioskScreen):
    """Demo mode: no real reader, so the driver picks what the card does."""

    CHOICES = (
        ("tok_visa", N_("Tap a card that is approved"), "f1"),
        ("tok_declined", N_("Tap a card that is declined"), "f2"),
        ("tok_timeout", N_("Walk away without tapping"), "f3"),
    )

    def __init__(self, purchase: Purchase) -> None:
        super().__init__()
        self.purchase = purchase

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Simulated card reader (demo: no money is taken)"), id="title")
            for token, text, key in self.CHOICES:
                yield BigButton(_(text), key, id=token)
            yield BigButton(_("Cancel"), "escape", id="home", variant="error")

    @on(Button.Pressed)
    def chosen(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id != "home":
            self.app.switch_screen(ReaderScreen(self.purchase, card=event.button.id))


class ReaderScreen(KioskScreen):
    """The card reader's live status, with a cancel button."""

    def __init__(self, purchase: Purchase, card: str | None = None) -> None:
        super().__init__()
        self.purchase = purchase
        self.card = card
        self.payment: Payment | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Present your card on the reader"), id="title")
            yield Label(_("Starting the card reader..."), id="reader")
            yield Label("", id="reader-left")
            yield BigButton(_("Cancel"), "escape", id="cancel", variant="error")
            yield Label("", id="busy")

    def on_mount(self) -> None:
        self.kiosk.cancel_requested = False
        self.kiosk.pay(self, self.purchase, self.card)
        self.set_interval(1.0, self.tick)

    def reader_status(self, payment: Payment) -> None:
        self.payment = payment
        label = self.query_one("#reader", Label)
        if payment.status is PaymentStatus.PENDING:
            label.update(_(payment.reader_message or "Waiting for the card reader..."))
        self.tick()

    def tick(self) -> None:
        """How long the reader still waits for a card: the reader's timeout
        counted on the site clock from when the payment started, as the
        paying worker counts it."""
        payment, line = self.payment, self.query_one("#reader-left", Label)
        if payment is None or payment.status is not PaymentStatus.PENDING:
            line.update("")
            return
        timeout = self.kiosk.site.settings.payments.reader_timeout_seconds
        waited = (self.kiosk.site.clock.now() - payment.created_at).total_seconds()
        left = max(0, int(timeout - waited))
        line.update(_("The reader waits {n} s more for your card.").format(n=left))

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.query_one("#cancel", Button).disabled = True
        self.query_one("#reader", Label).update(_("Cancelling..."))
        self.kiosk.cancel_payment(self)

    def finished(self, payment: Payment) -> None:
        if not payment.succeeded:
            self.app.switch_screen(DeclinedScreen(self.purchase, payment))
        elif self.purchase.reservation is not None:
            from kiosk.account import ReservedScreen

            self.app.switch_screen(ReservedScreen(self.purchase.reservation.id, payment))
        else:
            self.app.switch_screen(ReceiptScreen(payment, self.purchase))

    def failed(self, error: LotkeeperError) -> None:
        self.app.switch_screen(MessageScreen(error_text(error)))


class DeclinedScreen(KioskScreen):
    def __init__(self, purchase: Purchase, payment: Payment) -> None:
        super().__init__()
        self.purchase = purchase
        self.payment = payment

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_(self.payment.message or "The payment did not go through."), id="title")
            with Horizontal(id="actions"):
                yield BigButton(_("Try again"), "enter", id="retry", variant="success")
                yield BigButton(_("Cancel"), "escape", id="home", variant="error")

    @on(Button.Pressed, "#retry")
    def retry(self) -> None:
        self.app.switch_screen(card_screen(self.kiosk, self.purchase))


class ReceiptScreen(KioskScreen):
    def __init__(self, payment: Payment, purchase: Purchase | None = None) -> None:
        super().__init__()
        self.payment = payment
        self.purchase = purchase or Purchase()

    def compose(self) -> ComposeResult:
        payment = self.payment
        card = (
            f"{(payment.card_brand or '').title()} •••• {payment.card_last4}"
            if payment.card_last4
            else _("card")
        )
        with Vertical():
            yield Label(
                _("Paid {amount} with {card}.").format(
                    amount=format_money(payment.amount, payment.currency), card=card
                ),
                id="title",
            )
            if payment.simulated:
                yield Label(_("SIMULATED PAYMENT - NO MONEY TAKEN"), id="demo")
            yield FeeBreakdown(id="receipt-lines")
            yield Label(_("Printing your receipt..."), id="receipt")
            yield Label("", id="gate")
            yield BigButton(_("Done"), "enter", id="home")

    def on_mount(self) -> None:
        self.kiosk.print_receipt(self, self.payment)
        if self.purchase.leave_after and self.purchase.ticket_code:
            self.kiosk.leave_after_paying(self, self.purchase.ticket_code)

    def show_receipt(self, receipt: Receipt) -> None:
        self.query_one("#receipt-lines", FeeBreakdown).show_paid(
            receipt.lines, receipt.currency, receipt.amount
        )

    def receipt_done(self, text: str) -> None:
        self.query_one("#receipt", Label).update(text)

    def gate_opened(self, _spot: str) -> None:
        self.query_one("#gate", Label).update(_("The gate is open. Drive safely."))


class GoodbyeScreen(KioskScreen):
    def __init__(self, spot: str) -> None:
        super().__init__()
        self.spot = spot

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(_("Thank you! The gate is open. Drive safely."), id="title")
            yield BigButton(_("Done"), "enter", id="home")


class MessageScreen(ModalScreen[None]):
    """A message the driver acknowledges."""

    BINDINGS = [Binding("enter,escape", "dismiss_message", show=False)]

    def __init__(self, message: str, alert: str | None = None) -> None:
        super().__init__()
        self.message = message
        self.alert = alert

    def compose(self) -> ComposeResult:
        with Center(id="message-box"):
            yield Static(Text(self.message), id="message")
            yield Button(Text(_("OK [Enter]")), id="ok", variant="primary")

    def on_mount(self) -> None:
        if self.alert:
            self.app.call_later(self._raise_alert)

    def _raise_alert(self) -> None:
        kiosk: Any = self.app
        kiosk.raise_alert(self.alert)

    def action_dismiss_message(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        self.dismiss(None)


class StaffPinScreen(ModalScreen[bool]):
    """Only a staff PIN leaves the kiosk."""

    BINDINGS = [Binding("escape", "cancel", show=False)]

    def compose(self) -> ComposeResult:
        with Center(id="message-box"):
            yield Label(_("Staff PIN"))
            yield Input(password=True, id="pin", max_length=12)
            yield Label("", id="pin-error")
            with Horizontal(id="pin-buttons"):
                yield Button(Text(_("Leave the kiosk [Enter]")), id="leave", variant="error")
                yield Button(Text(_("Back [Esc]")), id="back", variant="primary")

    @on(Input.Submitted, "#pin")
    def check(self, event: Input.Submitted) -> None:
        self._check(event.input)

    @on(Button.Pressed, "#leave")
    def leave(self) -> None:
        self._check(self.query_one("#pin", Input))

    def _check(self, field: Input) -> None:
        kiosk: Any = self.app
        if kiosk.check_staff_pin(field.value):
            self.dismiss(True)
        else:
            field.value = ""
            field.focus()
            self.query_one("#pin-error", Label).update(_("Wrong PIN."))

    @on(Button.Pressed, "#back")
    def action_cancel(self) -> None:
        self.dismiss(False)
