"""The console's widgets: the lot grid (one widget per level, drawn as text
so a 5,000-spot lot stays cheap to redraw), the event feed and the alerts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from core.domain import Event, SpotState, SpotStatus
from core.services.devices import StandingAlert

# Colour *and* glyph, so the grid reads without colour too.
LOOK: dict[SpotStatus, tuple[str, str]] = {
    SpotStatus.FREE: ("·", "green"),
    SpotStatus.HELD: ("h", "yellow"),
    SpotStatus.RESERVED: ("r", "cyan"),
    SpotStatus.OCCUPIED: ("■", "bold white on blue"),
    SpotStatus.OVERSTAY: ("!", "bold white on red"),
    SpotStatus.OUT_OF_SERVICE: ("x", "grey50"),
}
LEGEND = "  ".join(
    f"{glyph} {status.value.replace('_', ' ')}" for status, (glyph, _) in LOOK.items()
)
CELL = 9  # "1A-05 ■ " plus a space


class LotGrid(Widget, can_focus=True):
    """Every spot of one level as a cell: label and state. Arrow keys move
    the selection; Enter selects (posts `Selected`)."""

    BINDINGS = [
        Binding("left", "move(-1)", show=False),
        Binding("right", "move(1)", show=False),
        Binding("up", "move_row(-1)", show=False),
        Binding("down", "move_row(1)", show=False),
        Binding("enter", "select", "Details", show=False),
    ]

    class Selected(Message):
        def __init__(self, spot: SpotState) -> None:
            super().__init__()
            self.spot = spot

    cursor: reactive[int] = reactive(0)
    """Index of the selected spot on this level."""

    def __init__(self, level: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.level = level
        self.spots: list[SpotState] = []
        self.top = 0
        """The first row drawn: the grid scrolls itself to keep the cursor
        in view, so it never grows past its pane (a small screen included)."""

    def show(self, spots: Sequence[SpotState]) -> None:
        """Replace this level's spots (in layout order) and redraw once."""
        self.spots = list(spots)
        self.cursor = min(self.cursor, max(0, len(self.spots) - 1))
        self.refresh()

    @property
    def per_row(self) -> int:
        return max(1, (self.size.width or 80) // CELL)

    def _window(self) -> range:
        """The rows that fit, moved so that the cursor's row is among them."""
        rows = max(1, self.size.height)
        cursor_row = self.cursor // self.per_row
        if cursor_row < self.top:
            self.top = cursor_row
        elif cursor_row >= self.top + rows:
            self.top = cursor_row - rows + 1
        last_row = max(0, (len(self.spots) - 1) // self.per_row)
        self.top = max(0, min(self.top, last_row - rows + 1))
        return range(self.top, min(last_row + 1, self.top + rows))

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        per_row = self.per_row
        for row in self._window():
            if text:
                text.append("\n")
            for index in range(row * per_row, min(len(self.spots), (row + 1) * per_row)):
                spot = self.spots[index]
                glyph, style = LOOK[spot.status]
                if index == self.cursor and self.has_focus:
                    style = "reverse " + style
                text.append(f"{spot.label[:6]:<6} {glyph}", style=style)
                text.append(" ")
        return text

    def selected(self) -> SpotState | None:
        return self.spots[self.cursor] if self.spots else None

    def action_move(self, step: int) -> None:
        if self.spots:
            self.cursor = (self.cursor + step) % len(self.spots)

    def action_move_row(self, step: int) -> None:
        if self.spots:
            self.cursor = min(len(self.spots) - 1, max(0, self.cursor + step * self.per_row))

    def action_select(self) -> None:
        spot = self.selected()
        if spot is not None:
            self.post_message(self.Selected(spot))

    def watch_cursor(self) -> None:
        self.refresh()


ALERT_KINDS = {
    "device_fault",
    "invalid_ticket",
    "overstay",
    "check_in_refused",
    "refused_full",
}
FEED_FILTERS = {
    "all": None,
    "entries": {"entry"},
    "exits": {"exit"},
    "payments": {"payment", "refund"},
    "overrides": {"override"},
    "alerts": ALERT_KINDS,
}


# Lower is more urgent (as `core.services.devices`' standing alerts): a
# driver stuck at a lane first, then what needs a hand soon.
ALERT_SEVERITY = {"check_in_refused": 0, "invalid_ticket": 0, "device_fault": 1, "overstay": 1}


def alert_severity(event: Event) -> int:
    if event.kind == "device_fault" and event.data.get("component") == "help":
        return 0
    return ALERT_SEVERITY.get(event.kind, 2)


def is_alert(event: Event) -> bool:
    return (event.kind in ALERT_KINDS and event.kind != "refused_full") or bool(
        event.data.get("alert")
    )


ALERT_EVENTS = 500
"""How far back (alert events, newest first) the panel reads and shows."""


def alert_events(events: Sequence[Event]) -> list[Event]:
    """The newest `ALERT_EVENTS` alert events, newest first."""
    found = []
    for event in reversed(events):
        if is_alert(event):
            found.append(event)
            if len(found) == ALERT_EVENTS:
                break
    return found


def event_alert_key(event: Event) -> str:
    """An alert event's key for `overrides.acknowledge_alerts`: it happened
    once, so its id names it."""
    return f"event:{event.id}"


def overstay_key(spot: SpotState) -> str:
    """An overstay's key: its ticket (another car overstaying is a new alert)."""
    return f"overstay:{spot.ticket_id}"


def alert_keys(
    standing: Iterable[StandingAlert], spots: Iterable[SpotState], events: Sequence[Event]
) -> list[str]:
    """The keys of every alert the panel may show: the standing alerts, the
    overstays among `spots`, the newest alert events."""
    return [
        *(alert.key for alert in standing),
        *(overstay_key(s) for s in spots if s.status is SpotStatus.OVERSTAY),
        *(event_alert_key(e) for e in alert_events(events)),
    ]


KIND_WIDTH = 16


def feed_line(event: Event, when: str) -> Text:
    """One event: time, kind and message in columns that never run into
    each other (a kind as long as the column still gets its gap)."""
    style = "bold red" if is_alert(event) else ("magenta" if event.kind == "override" else "")
    line = Text(f"{when}  ", style="dim")
    line.append(event.kind, style=style or "bold")
    line.append(" " * max(2, KIND_WIDTH + 1 - len(event.kind)))
    line.append(event.message)
    return line
