"""The booth's own dialogs: a lost ticket (the charge, cash or card, then
the exit pass on the booth printer or as a QR on screen) and the shift
report (on screen, saved as CSV, printable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from core.domain import Payment
from core.payments.provider import PaymentStatus
from core.qr import qr_lines
from core.services.stays import StayStatus
from core.tariff import Quote, format_money

if TYPE_CHECKING:
    from attendant.app import AttendantApp
    from core.services.shifts import Report


class LostTicketScreen(ModalScreen[None]):
    """A car found by plate or spot: its lost-ticket charge, taken in cash
    (counted in the shift) or by card on the booth's reader; then the exit
    pass. Esc closes, or cancels a card payment under way."""

    BINDINGS = [
        Binding("c", "cash", "Cash"),
        Binding("k", "card", "Card"),
        Binding("e", "exit_pass", "Exit pass"),
        Binding("escape", "close", "Close / cancel"),
    ]

    def __init__(self, stay: StayStatus, charge: Quote) -> None:
        super().__init__()
        self.stay = stay
        self.charge = charge
        self.working = False
        self.code: str | None = None
        """The exit pass, once issued."""

    @property
    def console(self) -> AttendantApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        stay, money = self.stay, format_money(self.charge.due, self.charge.currency)
        with Vertical(id="dialog"):
            yield Label(f"Lost ticket: ticket {stay.ticket_id}", id="dialog-title")
            # Side by side, so that the exit pass's QR and the buttons fit an
            # 80x24 booth terminal together.
            with Horizontal(id="lost-body"):
                with Vertical(id="lost-info"):
                    yield Static(
                        f"Plate {stay.plate or '-'} in {stay.spot_label} ({stay.level}), "
                        f"in since {self.console.site.describe_time(stay.entered_at)}.\n"
                        + (
                            f"Lost-ticket charge: {money}."
                            if self.charge.due
                            else "Nothing is left to pay: issue the exit pass."
                        ),
                        id="charge",
                    )
                    yield Static("", id="reader")
                    with Vertical(id="buttons"):
                        due = bool(self.charge.due)
                        yield Button("Cash (c)", id="cash", variant="primary", disabled=not due)
                        yield Button("Card (k)", id="card", disabled=not due)
                        yield Button("Exit pass (e)", id="exit_pass", disabled=due)
                        yield Button("Close (Esc)", id="close")
                yield Static("", id="pass")

    def on_mount(self) -> None:
        # Enter must never take money by accident: it closes, like Esc.
        self.query_one("#close", Button).focus()

    @on(Button.Pressed)
    async def pressed(self, event: Button.Pressed) -> None:
        await self.run_action(event.button.id or "close")

    def _start(self, how: str) -> None:
        if self.working or self.code is not None:
            return
        self.working = True
        for button in self.query("#cash, #card, #exit_pass").results(Button):
            button.disabled = True
        self.query_one("#reader", Static).update(
            "Starting the card reader..." if how == "card" else "Recording..."
        )
        self.console.take_lost_ticket(self, how)

    def action_cash(self) -> None:
        if self.charge.due:
            self._start("cash")

    def action_card(self) -> None:
        if self.charge.due:
            self._start("card")

    def action_exit_pass(self) -> None:
        if not self.charge.due:
            self._start("none")

    def action_close(self) -> None:
        if self.working:
            self.console.cancel_booth_payment()
            return
        self.dismiss(None)

    def reader_status(self, payment: Payment) -> None:
        if payment.status is PaymentStatus.PENDING:
            text = payment.reader_message or "Waiting for the card reader..."
            self.query_one("#reader", Static).update(f"{text} (Esc cancels)")

    def failed(self, text: str) -> None:
        """The payment did not go through (or was refused): say so; the
        attendant may try again."""
        self.working = False
        self.query_one("#reader", Static).update(Text(text, style="bold red"))
        self.query_one("#cash", Button).disabled = not self.charge.due
        self.query_one("#card", Button).disabled = not self.charge.due
        self.query_one("#exit_pass", Button).disabled = bool(self.charge.due)

    def done(self, code: str, paid: str, printed: str | None) -> None:
        """Paid and the pass issued: printed (say where), or shown as a QR
        for the driver to photograph and scan at the exit."""
        self.working = False
        self.code = code
        self.query_one("#reader", Static).update(paid)
        if printed is not None:
            self.query_one("#pass", Static).update(printed)
        else:
            shown = Text("\n".join(qr_lines(code)), style="black on white")
            shown.append(f"\nExit pass {self.stay.ticket_id}: scan this at the exit.", style="")
            self.query_one("#pass", Static).update(shown)
        self.query_one("#close", Button).focus()


class ReportScreen(ModalScreen[None]):
    """The shift report as it was closed: saved as CSV, printable."""

    BINDINGS = [
        Binding("p", "print", "Print"),
        Binding("enter,escape", "close", "Close"),
    ]

    def __init__(self, report: Report, saved_as: Any) -> None:
        super().__init__()
        self.report = report
        self.saved_as = saved_as

    @property
    def text(self) -> str:
        rows = "\n".join(f"{label:<22} {value}" for label, value in self.report.lines())
        return f"{rows}\n\nSaved as {self.saved_as}"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # Longer than a small screen: the report scrolls, the buttons stay.
            with VerticalScroll(id="message-body"):
                yield Static(self.text, id="message")
            yield Static("", id="printed")
            with Horizontal(classes="buttons"):
                yield Button("Print (p)", id="print")
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#print")
    def action_print(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        self.query_one("#printed", Static).update("Printing...")
        console.print_report(self, self.report)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    def printed(self, text: str) -> None:
        self.query_one("#printed", Static).update(text)
