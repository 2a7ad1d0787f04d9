"""The booth's own dialogs: a lost ticket (the charge, cash or card, then
the exit pass on the booth printer or as a QR on screen, with its short code
in large letters) and the shift report (on screen, saved as CSV, printable)."""

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
from core.services.booth import ExitPass
from core.services.stays import StayStatus
from core.tariff import Quote, format_money

if TYPE_CHECKING:
    from attendant.app import AttendantApp
    from core.services.shifts import Report


GLYPHS: dict[str, str] = {
    "0": "#### #..# #..# #..# ####",
    "1": ".#.. ##.. .#.. .#.. ###.",
    "2": ".##. #..# ..#. .#.. ####",
    "3": "###. ...# .##. ...# ###.",
    "4": "#..# #..# #### ...# ...#",
    "5": "#### #... ###. ...# ###.",
    "6": ".##. #... ###. #..# .##.",
    "7": "#### ...# ..#. .#.. .#..",
    "8": ".##. #..# .##. #..# .##.",
    "9": ".##. #..# .### ...# .##.",
    "A": ".##. #..# #### #..# #..#",
    "B": "###. #..# ###. #..# ###.",
    "C": ".### #... #... #... .###",
    "D": "###. #..# #..# #..# ###.",
    "E": "#### #... ###. #... ####",
    "F": "#### #... ###. #... #...",
    "G": ".### #... #.## #..# .###",
    "H": "#..# #..# #### #..# #..#",
    "I": "###. .#.. .#.. .#.. ###.",
    "J": "...# ...# ...# #..# .##.",
    "K": "#..# #.#. ##.. #.#. #..#",
    "L": "#... #... #... #... ####",
    "M": "#..# #### #..# #..# #..#",
    "N": "#..# ##.# #.## #..# #..#",
    "O": ".##. #..# #..# #..# .##.",
    "P": "###. #..# ###. #... #...",
    "Q": ".##. #..# #..# #.#. .#.#",
    "R": "###. #..# ###. #.#. #..#",
    "S": ".### #... .##. ...# ###.",
    "T": "###. .#.. .#.. .#.. .#..",
    "U": "#..# #..# #..# #..# .##.",
    "V": "#..# #..# #..# .##. .##.",
    "W": "#..# #..# #..# #### #..#",
    "X": "#..# #..# .##. #..# #..#",
    "Y": "#.#. #.#. .#.. .#.. .#..",
    "Z": "#### ...# .##. #... ####",
    "-": ".... .... ###. .... ....",
}
"""The letters of a short code (ticket number, "-", base32 check) drawn 4
pixels wide and 5 high, a row at a time ("#" is ink): a half-block
character is two pixels, so a letter is 3 lines tall."""

SHORT_WIDTH = 36
"""Columns the short code has beside the exit pass's QR at 80x24."""


def big_text(text: str, width: int = SHORT_WIDTH) -> list[str]:
    """`text` (characters of `GLYPHS`) in letters three lines tall, for a
    code read off the screen and typed: one band of 3 lines, or, when wider
    than `width`, a band for the ticket number and its dash and one for the
    check, a blank line between (a piece still too wide is cut into bands
    of what fits)."""
    per_line = (width + 1) // 5  # a letter is 4 columns, a space between
    if len(text) <= per_line:
        pieces = [text]
    else:
        number, dash, check = text.partition("-")
        pieces = [number + dash, check] if check else [text]
        pieces = [p[i : i + per_line] for p in pieces for i in range(0, len(p), per_line)]
    lines: list[str] = []
    for piece in pieces:
        if lines:
            lines.append("")
        rows = [[*GLYPHS[char].split(), "...."] for char in piece]
        for top in (0, 2, 4):
            lines.append(
                " ".join(
                    "".join(
                        "█" if a == b == "#" else "▀" if a == "#" else "▄" if b == "#" else " "
                        for a, b in zip(glyph[top], glyph[top + 1], strict=True)
                    )
                    for glyph in rows
                )
            )
    return lines


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
        self.issued: ExitPass | None = None
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
                    yield Static("", id="short")
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
        if self.working or self.issued is not None:
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

    def done(self, issued: ExitPass, paid: str, printed: str | None) -> None:
        """Paid and the pass issued: printed (say where), or shown as a QR
        for the driver to photograph and scan at the exit; either way its
        short code in large letters, to type at the exit (or read out)."""
        self.working = False
        self.issued = issued
        self.query_one("#reader", Static).update(paid)
        # The charge is taken: its buttons give their room to the short code.
        for button in self.query("#cash, #card, #exit_pass").results(Button):
            button.display = False
        short = Text(f"Type at the exit: {issued.short_code}\n")
        short.append("\n".join(big_text(issued.short_code)), style="bold")
        self.query_one("#short", Static).update(short)
        if printed is not None:
            self.query_one("#pass", Static).update(printed)
        else:
            shown = Text("\n".join(qr_lines(issued.code)), style="black on white")
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
