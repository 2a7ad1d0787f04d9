"""Shared kiosk widgets: big touch buttons bound to a key, the live
availability panel, the on-screen keyboard, the fee breakdown and a QR."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from core.domain import Availability, Size
from core.tariff import Quote, QuoteLine, format_money
from kiosk.i18n import N_, _, line_text

KEY_NAMES = {"enter": "Enter", "escape": "Esc"}


class BigButton(Button):
    """A button a finger can hit, showing the key that presses it too
    (function keys, Enter and Esc: a keyboard-wedge scanner never sends
    those, so scanning a code can never press a button)."""

    # Touching a button must not take the focus from the field being typed
    # into (nor from the scan field): its key presses it from anywhere.
    can_focus = False

    def __init__(self, label: str, key: str, *, id: str, variant: str = "primary") -> None:
        shown = KEY_NAMES.get(key, key.upper())
        # Text, not markup: "[Enter]" is meant literally.
        super().__init__(Text(f"{label} [{shown}]"), id=id, variant=variant)  # type: ignore[arg-type]
        self.key = key


SIZE_NAMES = {
    Size.SMALL: N_("Small car"),
    Size.MEDIUM: N_("Medium car"),
    Size.LARGE: N_("Large car / van"),
}


def size_name(size: Size) -> str:
    return _(SIZE_NAMES[size])


class AvailabilityPanel(Static):
    """Free spots per size of car, as a walk-in would get them now: the
    spaces a car of that size fits in (its own size and larger), which is
    more than the spaces of that size the attendant's CLI counts."""

    def show(self, availability: Availability | None) -> None:
        if availability is None:
            self.update(_("Checking free spaces..."))
            return
        # A grid, not padded strings: a long size name (Spanish) keeps its
        # gap before the count.
        table = Table.grid(padding=(0, 3))
        table.add_column(no_wrap=True)
        table.add_column()
        for size in Size:
            free = availability.for_size(size).free_fitting
            table.add_row(
                Text(size_name(size), style="bold"),
                Text(
                    _("1 free space fits this car")
                    if free == 1
                    else _("{n} free spaces fit this car").format(n=free),
                    style="bold green",
                )
                if free
                else Text(_("FULL"), style="bold red"),
            )
        self.update(table)


NEEDS: tuple[str | None, ...] = (None, "accessible", "ev")
NEED_NAMES = {
    None: N_("Space: any"),
    "accessible": N_("Space: accessible"),
    "ev": N_("Space: EV charging"),
}


class NeedButton(BigButton):
    """The spot feature the driver asks for: each press moves on, from any
    space to an accessible one, to one with EV charging, and back. A driver
    who asks gets only a space with that feature."""

    need: str | None = None
    """None, "accessible" or "ev"."""

    def __init__(self, key: str = "f4", *, id: str = "need") -> None:
        super().__init__(_(NEED_NAMES[None]), key, id=id, variant="default")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        # The screen sees the press too (after this).
        self.need = NEEDS[(NEEDS.index(self.need) + 1) % len(NEEDS)]
        self.label = Text(f"{_(NEED_NAMES[self.need])} [{self.key.upper()}]")
        self.variant = "default" if self.need is None else "warning"


class KeyButton(Button):
    """A key of the on-screen keyboard: never takes the focus, so it types
    into the field the driver is filling in."""

    can_focus = False


class OnScreenKeyboard(Vertical):
    """Letters, digits, space and delete as big buttons; the physical
    keyboard (or a scanner) works alongside it."""

    class Pressed(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    ROWS = ("1234567890", "QWERTYUIOP", "ASDFGHJKL-", "ZXCVBNM@._")

    def __init__(self, *, id: str | None = None, extra: Iterable[str] = ()) -> None:
        super().__init__(id=id)
        self.extra = tuple(extra)

    def compose(self) -> ComposeResult:
        for row in self.ROWS:
            with Horizontal(classes="keyrow"):
                for char in row:
                    yield KeyButton(char, classes="key", id=f"key-{ord(char)}")
        with Horizontal(classes="keyrow"):
            yield KeyButton(_("Shift"), classes="key wide", id="key-shift")
            yield KeyButton(_("Space"), classes="key wide", id="key-space")
            yield KeyButton(_("Delete"), classes="key wide", id="key-delete")

    lower = False
    """Letters come out lower case (for passwords and e-mail addresses)."""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = event.button.id or ""
        if button_id == "key-shift":
            self.lower = not self.lower
            for button in self.query(".key"):
                label = str(button.label)  # type: ignore[attr-defined]
                if len(label) == 1 and label.isalpha():
                    button.label = label.lower() if self.lower else label.upper()  # type: ignore[attr-defined]
        elif button_id == "key-space":
            self.post_message(self.Pressed(" "))
        elif button_id == "key-delete":
            self.post_message(self.Pressed("\b"))
        elif button_id.startswith("key-"):
            char = chr(int(button_id[4:]))
            self.post_message(self.Pressed(char.lower() if self.lower else char))


class FeeBreakdown(Static):
    """The lines of a quote and what is due, as the driver reads them."""

    def show(self, quote: Quote, due: int, heading: str | None = None) -> None:
        """`heading` names what is priced (a reservation's size and window)."""
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(ratio=1)
        table.add_column(justify="right", no_wrap=True)
        if heading:
            table.add_row(Text(heading, "bold"), "")
        for line in quote.lines:
            table.add_row(line_text(line), Text(format_money(line.amount, quote.currency), "bold"))
        table.add_row("", "")
        table.add_row(
            Text(_("To pay now:"), "bold"),
            Text(f" {format_money(due, quote.currency)} ", "bold reverse"),
        )
        self.update(table)

    def show_paid(self, lines: Iterable[QuoteLine], currency: str, paid: int) -> None:
        """A receipt's lines ("Already paid" counts earlier payments only)
        and what this payment took."""
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(ratio=1)
        table.add_column(justify="right", no_wrap=True)
        for line in lines:
            table.add_row(line_text(line), Text(format_money(line.amount, currency), "bold"))
        table.add_row(Text(_("Paid now:"), "bold"), Text(format_money(paid, currency), "bold"))
        self.update(table)


class QrCode(Static):
    """A QR code drawn with half blocks, large enough for a phone to read."""

    code: str = ""
    """What the QR holds (the full signed code)."""

    def show(self, payload: str) -> None:
        from core.qr import qr_lines

        self.code = payload
        self.update(Text("\n".join(qr_lines(payload)), style="black on white"))


class KeyGrid(Grid):
    """A grid of big buttons."""
