"""The attendant console: a PIN login, the live lot grid by level, the
event feed, alerts, the selected spot's detail, overrides with a reason
(supervisor-only ones ask a supervisor's PIN), and the shift.

Keyboard first (the footer lists the keys), the mouse works too. Every
engine call runs in a thread worker and reports back with
`call_from_thread`; a refusal becomes a message. The console tails the
event log every 0.5 s and re-reads the lot when anything changed, and from
scratch every 30 s, so it never drifts. It locks after `IDLE_LOCK_SECONDS`
without a key.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    Select,
    Sparkline,
    Static,
    TabbedContent,
    TabPane,
)

from attendant.booth import LostTicketScreen, ReportScreen
from attendant.widgets import (
    FEED_FILTERS,
    LEGEND,
    LotGrid,
    alert_events,
    alert_keys,
    alert_severity,
    event_alert_key,
    feed_line,
    overstay_key,
)
from core import services as lk
from core.devices.gate import Gate, LoggedGate
from core.devices.printer import Printer, PrinterError, SlipPrint, site_printer
from core.domain import Event, Payment, SpotState, SpotStatus
from core.errors import InvalidInput, LotkeeperError, NotFound
from core.services import booth, devices, overrides, shifts, staff
from core.services.availability import summarize
from core.services.events import EventCursor
from core.services.stays import StayStatus
from core.site import Site
from core.tariff import format_money

T = TypeVar("T")
TAIL_SECONDS = 0.5
RESYNC_SECONDS = 30.0
IDLE_LOCK_SECONDS = 300
FEED_LINES = 200
EVENTS_KEPT = 2000


def to_cents(text: str) -> int:
    """Money as typed at the booth ("12", "12.5", "12.50") in minor units;
    never through a float."""
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise InvalidInput(f"{text!r} is not an amount of money.") from None
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput(f"{text!r} is not an amount of money.")
    return int(amount * 100)


class MessageScreen(ModalScreen[None]):
    BINDINGS = [Binding("enter,escape", "dismiss", "OK")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # A long answer (a search) scrolls; the button stays in view.
            with VerticalScroll(id="message-body"):
                yield Static(self.text, id="message")
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        self.dismiss(None)


class KeysScreen(ModalScreen[None]):
    """Every key of the console (the footer shows only the commonest)."""

    BINDINGS = [Binding("enter,escape,question_mark,f1", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Keys", id="dialog-title")
            cells = [f"{key:>6}  {what[:26]:<26}" for key, what in self.keys]
            half = -(-len(cells) // 2)
            rows = [
                "  ".join(pair).rstrip()
                for pair in itertools.zip_longest(cells[:half], cells[half:], fillvalue="")
            ]
            with VerticalScroll(id="message-body"):
                yield Static("\n".join(rows), id="message")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        self.dismiss(None)


Check = Callable[[dict[str, str]], None]
"""Raises `InvalidInput` (its message is shown) when the answers will not do."""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few fields (always a reason for an override); Enter in the last one
    (or in any, once `ready` says the answers are enough) or OK returns
    them, Esc cancels. Answers that `check` refuses keep the form open with
    the message, so nothing typed is lost."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        fields: list[tuple[str, str, bool]],
        *,
        check: Check | None = None,
        ready: Callable[[dict[str, str]], bool] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields  # (key, placeholder, secret)
        self.check = check
        self.ready = ready

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            for key, placeholder, secret in self.fields:
                yield Input(id=f"field-{key}", placeholder=placeholder, password=secret)
            yield Label("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    @property
    def answers(self) -> dict[str, str]:
        return {key: self.query_one(f"#field-{key}", Input).value for key, _, _ in self.fields}

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1] or (self.ready is not None and self.ready(self.answers)):
            self.ok()
        else:
            inputs[inputs.index(event.input) + 1].focus()

    @on(Button.Pressed, "#ok")
    def ok(self) -> None:
        answers = self.answers
        if self.check is not None:
            try:
                self.check(answers)
            except InvalidInput as refused:
                self.query_one("#form-error", Label).update(str(refused))
                return
        self.dismiss(answers)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def check_reason(answers: dict[str, str]) -> None:
    """The overrides' own rule for a reason, asked before the form closes."""
    overrides.check_reason(answers.get("reason", ""))


class LoginScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        with Vertical(id="login"):
            yield Label("Lotkeeper attendant console", id="login-title")
            yield Input(id="name", placeholder="Name")
            yield Input(id="pin", placeholder="PIN", password=True)
            yield Label("", id="login-error")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Input.Submitted, "#name")
    def to_pin(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def sign_in(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        name, pin = self.query_one("#name", Input).value, self.query_one("#pin", Input).value
        self.query_one("#pin", Input).value = ""
        console.call_core(
            lambda: staff.staff_sign_in(console.site, name, pin),
            console.signed_in,
            on_error=lambda error: self.query_one("#login-error", Label).update(str(error)),
        )


class ConsoleScreen(Screen[None]):
    # The footer shows the commonest keys (an 80-column booth terminal
    # holds no more); `?` lists them all.
    BINDINGS = [
        Binding("question_mark,f1", "keys", "Keys", key_display="?"),
        Binding("right_square_bracket", "level(1)", "Level", key_display="]"),
        Binding("left_square_bracket", "level(-1)", "Previous level", show=False),
        Binding("g", "gate", "Open gate", show=False),
        Binding("x", "manual_exit", "Manual exit", show=False),
        Binding("w", "waive", "Waive or discount", show=False),
        Binding("m", "move", "Move car", show=False),
        Binding("o", "service", "Out of service / back", show=False),
        Binding("c", "cancel_reservation", "Cancel a reservation", show=False),
        Binding("r", "refund", "Refund", show=False),
        Binding("d", "decommission", "Decommission a kiosk", show=False),
        Binding("l", "lost", "Lost ticket", key_display="l"),
        Binding("slash", "search", "Search"),
        Binding("a", "acknowledge", "Ack alerts"),
        Binding("s", "shift", "Shift"),
        Binding("ctrl+l", "lock", "Lock"),
    ]
    GRID_KEYS = [
        ("arrows", "move in the grid"),
        ("Enter", "the selected spot"),
        ("Tab", "feed filter, find"),
    ]

    def compose(self) -> ComposeResult:
        console: AttendantApp = self.app  # type: ignore[assignment]
        yield Label("", id="who")
        yield Static("", id="counters")
        with Horizontal(id="occupancy-bar"):
            yield Label("", id="occupancy-label")
            yield Sparkline([], summary_function=max, id="occupancy")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with TabbedContent(id="levels"):
                    for index, level in enumerate(console.levels):
                        with TabPane(level, id=f"level-{index}"):
                            yield LotGrid(level, id=f"grid-{index}")
                yield Static(LEGEND, id="legend")
            with Vertical(id="right"):
                yield Static("Select a spot (arrows, Enter) for its details.", id="detail")
                yield Label("Alerts", classes="heading")
                yield Static("", id="alerts")
                with Horizontal(id="feed-bar"):
                    yield Select(
                        [(name, name) for name in FEED_FILTERS],
                        value="all",
                        allow_blank=False,
                        id="filter",
                    )
                    yield Input(placeholder="find in feed", id="find")
                yield Static("", id="feed")
        yield Footer()

    def on_mount(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.redraw()
        self.query_one("#grid-0", LotGrid).focus()

    @on(LotGrid.Selected)
    def selected(self, event: LotGrid.Selected) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.show_detail(event.spot)

    @on(Select.Changed, "#filter")
    @on(Input.Changed, "#find")
    def refilter(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.refill_feed()

    def selected_spot(self) -> SpotState | None:
        active = self.query_one(TabbedContent).active
        index = active.removeprefix("level-") if active else "0"
        return self.query_one(f"#grid-{index}", LotGrid).selected()

    # Overrides: each asks its details and a reason, then runs in a worker.
    def _ask(
        self, title: str, fields: list[tuple[str, str, bool]], then: Callable[..., Any]
    ) -> None:
        self.app.push_screen(
            FormScreen(title, [*fields, ("reason", "Reason", False)], check=check_reason), then
        )

    def action_gate(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.override(
                    lambda who: overrides.open_gate(
                        console.site, who, answer["lane"] or "exit", answer["reason"]
                    ),
                    f"Gate {answer['lane'] or 'exit'} opened.",
                    after=lambda: console.gate.open(answer["lane"] or "exit", "attendant"),
                )

        self._ask("Open a gate", [("lane", "Lane (e.g. exit-1)", False)], done)

    def _stay_of_selected(self) -> SpotState | None:
        spot = self.selected_spot()
        if spot is None or spot.ticket_id is None:
            self.app.push_screen(MessageScreen("Select a spot with a car in it first."))
            return None
        return spot

    def _car_override(
        self,
        title: str,
        fields: list[tuple[str, str, bool]],
        run: Callable[[staff.Staff, int, dict[str, str]], object],
        done: str,
        *,
        supervisor: bool = False,
    ) -> None:
        """An override on the selected spot's car: ask the fields and a
        reason, then run it. `title` and `done` may use {ticket}, {spot} and
        the answers' keys."""
        console: AttendantApp = self.app  # type: ignore[assignment]
        spot = self._stay_of_selected()
        if spot is None or spot.ticket_id is None:
            return
        ticket = spot.ticket_id

        def answered(answer: dict[str, str] | None) -> None:
            if answer:
                console.override(
                    lambda who: run(who, ticket, answer),
                    done.format(ticket=ticket, spot=spot.label, **answer),
                    supervisor=supervisor,
                )

        self._ask(title.format(ticket=ticket, spot=spot.label), fields, answered)

    def action_manual_exit(self) -> None:
        site = self.app.site  # type: ignore[attr-defined]
        self._car_override(
            "Manual exit of ticket {ticket} ({spot})",
            [],
            lambda who, ticket, a: overrides.manual_exit(site, who, ticket, a["reason"]),
            "Ticket {ticket} let out from {spot}.",
        )

    def action_waive(self) -> None:
        site = self.app.site  # type: ignore[attr-defined]

        def waive(who: staff.Staff, ticket: int, a: dict[str, str]) -> object:
            amount = a["amount"].strip()
            cents = to_cents(amount) if amount else None
            return overrides.waive_fee(site, who, ticket, a["reason"], amount=cents)

        self._car_override(
            "Waive or discount ticket {ticket}",
            [("amount", "Amount to waive (empty: all that is due)", False)],
            waive,
            "Fee of ticket {ticket} waived.",
            supervisor=True,
        )

    def action_move(self) -> None:
        site = self.app.site  # type: ignore[attr-defined]
        self._car_override(
            "Move the car on ticket {ticket} from {spot}",
            [("to", "To spot", False)],
            lambda who, ticket, a: overrides.move_car(site, who, ticket, a["to"], a["reason"]),
            "Ticket {ticket} moved to {to}.",
        )

    def action_service(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        spot = self.selected_spot()
        if spot is None:
            return
        closing = spot.status is not SpotStatus.OUT_OF_SERVICE

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.override(
                    lambda who: overrides.set_out_of_service(
                        console.site, who, spot.label, closing, answer["reason"]
                    ),
                    f"Spot {spot.label} {'closed' if closing else 'back in service'}.",
                )

        what = "out of service" if closing else "back in service"
        self._ask(f"Spot {spot.label} {what}", [], done)

    def action_cancel_reservation(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.override(
                    lambda who: overrides.cancel_reservation(
                        console.site, who, answer["code"], answer["reason"]
                    ),
                    lambda done: (
                        f"Reservation {done.reservation.short_code} cancelled; "
                        f"{done.reservation.spot_label} is free again. Refunded "
                        f"{format_money(done.refund_amount, done.reservation.currency)}."
                    ),
                )

        self._ask("Cancel a reservation", [("code", "Reservation code", False)], done)

    def action_refund(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def refund(who: staff.Staff, answer: dict[str, str]) -> object:
            number = answer["payment"].strip().lstrip("#")
            if not (number.isascii() and number.isdigit()):
                raise InvalidInput("Type the payment's number (search shows it).")
            amount = answer["amount"].strip()
            return overrides.refund(
                console.site,
                who,
                int(number),
                answer["reason"],
                amount=to_cents(amount) if amount else None,
            )

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.override(
                    lambda who: refund(who, answer),
                    lambda payment: (
                        f"Refund {payment.id}: {format_money(payment.amount, payment.currency)} "
                        + (
                            "given back."
                            if payment.succeeded
                            else f"recorded, {payment.status.value} with the provider."
                        )
                    ),
                    supervisor=True,
                )

        self._ask(
            "Refund a payment (supervisor)",
            [
                ("payment", "Payment number", False),
                ("amount", "Amount (empty: all that is left)", False),
            ],
            done,
        )

    def action_lost(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.lost_ticket(answer["plate"], answer["spot"])

        self.app.push_screen(
            FormScreen(
                "Lost ticket: find the car",
                [("plate", "Plate", False), ("spot", "or spot", False)],
                check=_plate_or_spot,
                ready=lambda a: bool(a["plate"].strip() or a["spot"].strip()),
            ),
            done,
        )

    def action_search(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                console.search(answer["text"])

        self.app.push_screen(
            FormScreen("Search", [("text", "Plate, ticket or reservation code, email", False)]),
            done,
        )

    def action_decommission(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]

        def done(answer: dict[str, str] | None) -> None:
            if answer:
                device = answer["device"].strip()
                console.override(
                    lambda who: devices.decommission_device(
                        console.site, who.actor, device, answer["reason"]
                    ),
                    f"{device} decommissioned: its alerts are gone until it reports again.",
                )

        self._ask(
            "Decommission a kiosk taken away",
            [("device", "Device id (as the alert names it)", False)],
            done,
        )

    def action_acknowledge(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.acknowledge_alerts()

    def action_shift(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.shift_action()

    def action_lock(self) -> None:
        console: AttendantApp = self.app  # type: ignore[assignment]
        console.lock()

    def action_level(self, step: int) -> None:
        """The next (or previous) level's tab, its grid focused."""
        console: AttendantApp = self.app  # type: ignore[assignment]
        tabs = self.query_one(TabbedContent)
        active = tabs.active.removeprefix("level-") if tabs.active else "0"
        index = (int(active) + step) % max(1, len(console.levels))
        tabs.active = f"level-{index}"
        self.query_one(f"#grid-{index}", LotGrid).focus()

    def action_keys(self) -> None:
        names = {"left_square_bracket": "[", "slash": "/", "ctrl+l": "Ctrl+L"}
        keys = [
            (b.key_display or names.get(b.key.split(",")[0], b.key.split(",")[0]), b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding)
        ]
        self.app.push_screen(KeysScreen([*self.GRID_KEYS, *keys]))


class AttendantApp(App[None]):
    CSS_PATH = Path(__file__).parent / "attendant.tcss"
    TITLE = "Lotkeeper attendant"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        site: Site,
        *,
        gate: Gate | None = None,
        printer: Printer | None = None,
        idle_clock: Callable[[], float] = time.monotonic,
        payment_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.site = site
        self.gate = gate or LoggedGate()
        self.printer = printer if printer is not None else site_printer(site)
        """The booth printer (exit passes, reports); `preview` saves images."""
        self.payment_sleep = payment_sleep
        self.booth_payment: int | None = None
        """A card payment under way on the booth's reader."""
        self.occupancy: list[int] = []
        """Cars inside over the last 24 h, for the sparkline."""
        self.history_read_at = float("-inf")
        self.idle_clock = idle_clock
        self.last_key = idle_clock()
        self.staff: staff.Staff | None = None
        self.shift: shifts.ShiftInfo | None = None
        """The signed-in person's open shift, as last read from the database."""
        self.spots: tuple[SpotState, ...] = ()
        self.levels: list[str] = []
        self.cursor: EventCursor | None = None
        self.last_resync = 0.0
        self.events: list[Event] = []
        self.standing: list[devices.StandingAlert] = []
        """Alerts that are states (quiet kiosks, faulty parts, holds about
        to expire), read with the lot."""
        self.acknowledged_keys: frozenset[str] = frozenset()
        """Keys of the alerts in view that someone acknowledged, on this
        console or another, read from the database with the alerts: hidden
        until their state changes (a kiosk that beats, then falls silent
        again, is a new key and a new alert)."""
        self.shown_keys: frozenset[str] = frozenset()
        """Keys of the alerts the panel shows: what `a` acknowledges."""
        self.acked_here: set[str] = set()

    # -- start, lock -----------------------------------------------------------

    def on_mount(self) -> None:
        snapshot = lk.snapshot(self.site)  # the levels must be known to lay out the grid
        self.spots, self.cursor = snapshot.spots, snapshot.cursor
        self.levels = list(dict.fromkeys(s.level for s in self.spots)) or ["Lot"]
        self.events = list(lk.recent_events(self.site, limit=200).events)
        # Read with the first alerts, so no alert acknowledged before a
        # restart shows for a moment (the standing ones come with the tail).
        self.acknowledged_keys = overrides.acknowledged_alerts(
            self.site, alert_keys((), self.spots, self.events)
        )
        self.push_screen(LoginScreen())
        self.set_interval(TAIL_SECONDS, self.follow)
        self.set_interval(1.0, self.idle_tick)

    def on_key(self) -> None:
        self.last_key = self.idle_clock()

    def idle_tick(self) -> None:
        if self.staff is not None and self.idle_clock() - self.last_key >= IDLE_LOCK_SECONDS:
            self.lock()

    def lock(self) -> None:
        self.staff = None
        self.push_screen(LoginScreen())

    def signed_in(self, who: staff.Staff) -> None:
        self.staff = who
        self.last_key = self.idle_clock()
        if isinstance(self.screen, LoginScreen):
            self.pop_screen()
        if not any(isinstance(s, ConsoleScreen) for s in self.screen_stack):
            self.push_screen(ConsoleScreen())
        self.shift = None
        self.redraw()
        self.call_core(lambda: shifts.open_shift_of(self.site, who), self._shift_read)

    def _shift_read(self, shift: shifts.ShiftInfo | None) -> None:
        self.shift = shift
        self.redraw()

    # -- workers ----------------------------------------------------------------

    @work(thread=True, group="core", exit_on_error=False)
    def call_core(
        self,
        do: Callable[[], T],
        then: Callable[[T], None],
        on_error: Callable[[LotkeeperError], None] | None = None,
    ) -> None:
        """Run an engine call off the UI loop; its result or refusal back on it."""
        try:
            result = do()
        except LotkeeperError as error:
            self.call_from_thread(on_error or self.say, error)
            return
        self.call_from_thread(then, result)

    def say(self, what: object) -> None:
        self.push_screen(MessageScreen(str(what)))

    def override(
        self,
        do: Callable[[staff.Staff], Any],
        done: str | Callable[[Any], str],
        *,
        supervisor: bool = False,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Run an override as the signed-in staff member, or (when it needs a
        supervisor and they are not one) as a supervisor who types their PIN.
        `done` is what to say afterwards, or makes it from the result."""
        who = self.staff
        if who is None:
            return

        def run(actor: staff.Staff) -> None:
            def call() -> str:
                result = do(actor)
                if after is not None:
                    after()
                return done if isinstance(done, str) else done(result)

            self.call_core(call, self.say)
            self.follow()

        if supervisor and not who.supervisor:

            def with_pin(answer: dict[str, str] | None) -> None:
                if answer:
                    self.call_core(
                        lambda: staff.staff_sign_in(self.site, answer["name"], answer["pin"]),
                        lambda boss: (
                            run(boss)
                            if boss.supervisor
                            else self.say(f"{boss.name} is not a supervisor.")
                        ),
                    )

            self.push_screen(
                FormScreen(
                    "A supervisor must approve this",
                    [("name", "Supervisor name", False), ("pin", "Supervisor PIN", True)],
                ),
                with_pin,
            )
            return
        run(who)

    # -- live view -------------------------------------------------------------

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False)
    def follow(self) -> None:
        """New events into the feed and alerts; the lot re-read when anything
        changed, and every `RESYNC_SECONDS` regardless."""
        now = time.monotonic()
        try:
            batch = lk.events_since(self.site, self.cursor or 0)
            resync = bool(batch.events) or now - self.last_resync > RESYNC_SECONDS
            snapshot = lk.snapshot(self.site) if resync else None
            standing = devices.standing_alert_list(self.site) if resync else self.standing
            acknowledged: tuple[frozenset[str], frozenset[str]] | None = None
            if resync:
                spots = snapshot.spots if snapshot is not None else self.spots
                # self.events is replaced on the UI loop, never changed in
                # place under a reader: the slice is a copy.
                seen = [*self.events[-EVENTS_KEPT:], *batch.events]
                keys = frozenset(alert_keys(standing, spots, seen))
                acknowledged = (overrides.acknowledged_alerts(self.site, keys), keys)
            # The 24 h history moves slowly: read every RESYNC_SECONDS, not on
            # every change (its last point is at most that old).
            occupancy = self.occupancy
            if now - self.history_read_at > RESYNC_SECONDS:
                occupancy = lk.occupancy_history(self.site)
                self.history_read_at = now  # only this (exclusive) worker reads it
        except LotkeeperError as error:
            self.call_from_thread(self.notify, f"Database: {error}", severity="error")
            return
        self.call_from_thread(
            self._apply,
            batch.events,
            batch.cursor,
            snapshot,
            standing,
            acknowledged,
            occupancy,
            now,
        )

    def _apply(
        self,
        events: Any,
        cursor: EventCursor,
        snapshot: Any,
        standing: list[devices.StandingAlert],
        acknowledged: tuple[frozenset[str], frozenset[str]] | None,
        occupancy: list[int],
        now: float,
    ) -> None:
        self.cursor = cursor
        self.standing = standing
        if acknowledged is not None:
            found, asked = acknowledged
            # What this console acknowledged stays hidden until a read finds
            # it (the read may have started before the acknowledgement was
            # written), or until it is out of view.
            self.acked_here = {k for k in self.acked_here if k in asked and k not in found}
            self.acknowledged_keys = found | self.acked_here
        self.occupancy = occupancy
        if events:
            self.events.extend(events)
            self.events = self.events[-EVENTS_KEPT:]
        if snapshot is not None:
            self.spots = snapshot.spots
            self.last_resync = now
        self.redraw()

    def console_screen(self) -> ConsoleScreen | None:
        screens = [s for s in self.screen_stack if isinstance(s, ConsoleScreen)]
        return screens[0] if screens else None

    def redraw(self) -> None:
        screen = self.console_screen()
        if screen is None or not screen.query(LotGrid):
            return  # not composed yet: its on_mount draws it
        who = self.staff
        heading = f"{self.site.name} | {who.name} ({who.role})" if who else self.site.name
        if who is not None and self.shift is not None:
            since = self.site.describe_time(self.shift.opened_at)
            heading += f" | shift {self.shift.id} since {since}"
        screen.query_one("#who", Label).update(heading)
        by_level: dict[str, list[SpotState]] = {level: [] for level in self.levels}
        for spot in self.spots:
            by_level.setdefault(spot.level, []).append(spot)
        for index, level in enumerate(self.levels):
            screen.query_one(f"#grid-{index}", LotGrid).show(by_level.get(level, []))
        availability = summarize(self.spots, self.site.clock.now())
        # Spots of each size (not the spots a car of that size fits: a small
        # car also fits the medium and large ones).
        sizes = availability.sizes
        screen.query_one("#counters", Static).update(
            "Free spots: "
            + ", ".join(f"{s.size.label} {s.free}/{s.total}" for s in sizes)
            + f" | inside {sum(s.occupied for s in sizes)}"
            + f" | booked {sum(s.held + s.reserved for s in sizes)}"
        )
        if self.occupancy:
            screen.query_one("#occupancy-label", Label).update(
                f"Cars inside, last 24 h: now {self.occupancy[-1]}, peak {max(self.occupancy)} "
            )
            screen.query_one("#occupancy", Sparkline).data = self.occupancy
        self.refill_feed()

    def refill_feed(self) -> None:
        """The feed (filtered, searched) and the alerts not yet acknowledged,
        newest first."""
        screen = self.console_screen()
        if screen is None:
            return
        wanted = FEED_FILTERS.get(str(screen.query_one("#filter", Select).value))
        needle = screen.query_one("#find", Input).value.strip().lower()
        feed = Text()
        # The alerts, most urgent first (then newest first): a driver at a
        # refusing lane before an overstay before a kiosk gone quiet.
        alerts: list[tuple[int, Text]] = []
        shown: set[str] = set()
        acknowledged = self.acknowledged_keys
        for standing in self.standing:
            if standing.key not in acknowledged:
                shown.add(standing.key)
                alerts.append((standing.severity, Text(standing.text, style="bold red")))
        for spot in self.spots:  # a state, read with the lot: shown while it lasts
            key = overstay_key(spot)
            if spot.status is SpotStatus.OVERSTAY and key not in acknowledged:
                shown.add(key)
                alerts.append(
                    (
                        devices.FAULT,
                        Text(
                            f"Overstay in {spot.label}: ticket {spot.ticket_id}"
                            f"{', ' + spot.plate if spot.plate else ''}",
                            style="bold red",
                        ),
                    )
                )
        today = self.site.local(self.site.clock.now()).date()

        def when(event: Event) -> str:
            at = self.site.local(event.at)
            # The feed is narrow: the time alone today, the day before it otherwise.
            return f"{at:%H:%M}" if at.date() == today else f"{at:%d %b %H:%M}"

        shown_feed = 0
        for event in reversed(self.events):
            wanted_here = wanted is None or event.kind in wanted
            if shown_feed < FEED_LINES and wanted_here and needle in event.message.lower():
                feed.append_text(feed_line(event, when(event)))
                feed.append("\n")
                shown_feed += 1
        # Alert events as far back as their acknowledgements are read.
        fresh = [e for e in alert_events(self.events) if event_alert_key(e) not in acknowledged]
        for event in fresh[:FEED_LINES]:
            shown.add(event_alert_key(event))
            alerts.append((alert_severity(event), feed_line(event, when(event))))
        self.shown_keys = frozenset(shown)
        alerts.sort(key=lambda alert: alert[0])  # stable: newest first within a severity
        panel = Text("\n").join(text for _, text in alerts)
        screen.query_one("#feed", Static).update(feed)
        screen.query_one("#alerts", Static).update(panel or Text("No alerts.", style="dim"))

    def show_detail(self, spot: SpotState) -> None:
        """The selected spot: its car (plate, ticket, since when, fee so far),
        its reservations to come, and its recent history from the feed."""
        head = f"{spot.label} ({spot.level}), {spot.size.label}: {spot.status.value}"
        history = [
            f"  {self.site.describe_time(e.at)} {e.message}"
            for e in reversed(self.events)
            if spot.label in (e.spot_label, e.data.get("from"))  # a car moved away too
        ][:5]

        def details() -> str:
            lines = [head]
            if spot.ticket_id is not None:
                status = lk.stay_status(self.site, spot.ticket_id)
                parked = self.site.clock.now() - status.entered_at
                hours, minutes = divmod(int(parked.total_seconds() // 60), 60)
                money = status.quote.currency
                lines += [
                    f"Ticket {status.ticket_id}, plate {status.plate or '-'}",
                    f"In since {self.site.describe_time(status.entered_at)}"
                    f" ({hours} h {minutes} min)",
                    f"Fee so far {format_money(status.quote.total, money)},"
                    f" due now {format_money(status.due, money)}",
                ]
            for booked in lk.reservations_on_spot(self.site, spot.spot_id):
                lines.append(
                    f"Reserved {booked.short_code}: {self.site.describe_time(booked.starts_at)}"
                    f" - {self.site.describe_time(booked.ends_at)} ({booked.state.value})"
                )
            if history:
                lines += ["Recent:", *history]
            return "\n".join(lines)

        def show(text: str) -> None:
            screen = self.console_screen()
            if screen is not None:
                screen.query_one("#detail", Static).update(text)

        self.call_core(details, show)

    def acknowledge_alerts(self) -> None:
        """The alerts shown are seen: recorded in the database (and the
        audit trail) for every console and after a restart, each until its
        state changes."""
        who = self.staff
        keys = self.shown_keys
        if who is None or not keys:
            return
        self.call_core(
            lambda: overrides.acknowledge_alerts(self.site, who, keys),
            lambda _: self._acked(keys),
        )

    def _acked(self, keys: frozenset[str]) -> None:
        self.acked_here |= keys
        self.acknowledged_keys |= keys
        self.refill_feed()

    # -- lost ticket, search, shift -----------------------------------------------

    def lost_ticket(self, plate: str, spot: str) -> None:
        """Find the car by plate or spot and open the lost-ticket dialog."""
        if self.staff is None:
            return

        def find() -> tuple[StayStatus, Any]:
            found = lk.find_stays(self.site, plate=plate or None, spot_label=spot or None)
            if not found:
                raise NotFound("No car found: check the plate or the spot.")
            return found[0], lk.lost_ticket_quote(self.site, found[0].ticket_id)

        self.call_core(find, lambda answer: self.push_screen(LostTicketScreen(*answer)))

    @work(thread=True, group="booth", exit_on_error=False)
    def take_lost_ticket(self, screen: LostTicketScreen, how: str) -> None:
        """Take the charge (`how`: "cash", "card", or "none" when nothing is
        due), then issue the exit pass and print it, all off the UI loop."""
        who, stay = self.staff, screen.stay
        if who is None:
            return
        try:
            if how == "cash":
                taken = booth.lost_ticket_cash(self.site, who, stay.ticket_id)
                paid = f"{format_money(taken, screen.charge.currency)} taken in cash."
            elif how == "card":
                payment = lk.pay_lost_ticket(self.site, stay.ticket_id, kiosk=f"booth:{who.name}")
                self.booth_payment = payment.id
                try:
                    final = lk.wait_for_payment(
                        self.site,
                        payment.id,
                        on_update=lambda p: self.call_from_thread(screen.reader_status, p),
                        sleep=self.payment_sleep,
                    )
                finally:
                    self.booth_payment = None
                if not final.succeeded:
                    why = final.message or "The payment did not go through."
                    self.call_from_thread(screen.failed, why)
                    return
                card = f" ({(final.card_brand or 'card').title()} {final.card_last4})"
                paid = (
                    f"{format_money(final.amount, final.currency)} paid by card"
                    f"{card if final.card_last4 else ''}."
                )
            else:
                paid = "Nothing was due."
            issued = booth.exit_pass(self.site, who, stay.ticket_id)
            leave_by = lk.stay_status(self.site, stay.ticket_id).paid_until
        except LotkeeperError as error:
            self.call_from_thread(screen.failed, str(error))
            return
        slip = SlipPrint(
            self.site.name,
            "EXIT PASS",
            (
                ("Ticket", str(stay.ticket_id)),
                ("Plate", stay.plate or "-"),
                ("Spot", stay.spot_label),
                ("Paid", paid.rstrip(".")),
            ),
            code=issued.code,
            short_code=issued.short_code,
            note=(
                f"Scan the QR or type the code at the exit by {self.site.describe_time(leave_by)}."
                if leave_by
                else "Scan the QR or type the code at the exit."
            ),
            name=f"pass-{stay.ticket_id}",
        )
        self.call_from_thread(screen.done, issued, paid, self._print_slip(slip, "exit pass"))

    def _print_slip(self, slip: SlipPrint, what: str) -> str | None:
        """Print on the booth printer: where it went, or None when it is only
        a preview (or failed): then the screen shows it instead."""
        try:
            saved = self.printer.print_slip(slip)
        except PrinterError as error:
            self.call_from_thread(
                self.notify, f"{error} The {what} is shown on screen.", severity="warning"
            )
            return None
        if saved is not None:
            return None
        return f"The {what} is printed on {self.printer.url}."

    def cancel_booth_payment(self) -> None:
        payment = self.booth_payment
        if payment is not None:
            self.call_core(lambda: lk.cancel_payment(self.site, payment), lambda _: None)

    @work(thread=True, group="booth", exit_on_error=False)
    def print_report(self, screen: ReportScreen, report: shifts.Report) -> None:
        slip = SlipPrint(
            self.site.name,
            report.title.upper(),
            tuple(report.lines()[1:]),  # the title is the heading
            name=f"report-{report.title.split()[1]}",
        )
        try:
            saved = self.printer.print_slip(slip)
        except PrinterError as error:
            self.call_from_thread(screen.printed, f"Not printed: {error}")
            return
        where = f"saved as {saved}" if saved is not None else f"printed on {self.printer.url}"
        self.call_from_thread(screen.printed, f"Report {where}.")

    def search(self, text: str) -> None:
        def look() -> str:
            found = booth.search(self.site, text)
            if found.empty:
                return f"Nothing found for {text!r}."
            lines: list[str] = []
            for s in found.stays:
                lines.append(
                    f"Ticket {s.ticket_id}: {s.plate or '-'} in {s.spot_label}, due "
                    f"{format_money(s.due, s.quote.currency)}"
                )
                lines += _payment_lines(lk.payments_for(self.site, stay_id=s.ticket_id))
            for r in found.reservations:
                lines.append(f"Reservation {r.short_code}: {r.spot_label}, {r.state.value}")
                lines += _payment_lines(lk.payments_for(self.site, reservation_id=r.id))
            lines += [f"Account {a[0]}: {a[1]} <{a[2]}>" for a in found.accounts]
            return "\n".join(lines)

        self.call_core(look, self.say)

    def shift_action(self) -> None:
        """Open or close the signed-in person's shift, as the database has it
        (a shift opened on another console, or before a restart, closes here)."""
        who = self.staff
        if who is None:
            return
        self.call_core(lambda: shifts.open_shift_of(self.site, who), self._ask_shift)

    def _ask_shift(self, open_now: shifts.ShiftInfo | None) -> None:
        who = self.staff
        if who is None:
            return
        self.shift = open_now
        if open_now is None:

            def opened(answer: dict[str, str] | None) -> None:
                if answer:
                    typed = answer["float"] or "0"
                    self.call_core(
                        lambda: shifts.open_shift(self.site, who, to_cents(typed)),
                        self._shift_opened,
                    )

            self.push_screen(FormScreen("Open a shift", [("float", "Cash float", False)]), opened)
            return

        def closed(answer: dict[str, str] | None) -> None:
            if answer:
                typed = answer["counted"] or "0"
                self.call_core(
                    lambda: shifts.close_shift(self.site, who, to_cents(typed)), self._report
                )

        since = self.site.describe_time(open_now.opened_at)
        self.push_screen(
            FormScreen(
                f"Close shift {open_now.id} (open since {since})",
                [("counted", "Cash counted", False)],
            ),
            closed,
        )

    def _shift_opened(self, info: shifts.ShiftInfo) -> None:
        self.shift = info
        self.redraw()
        money = format_money(info.float_amount, self.site.tariff.currency)
        self.say(f"Shift {info.id} open with a float of {money}.")

    def _report(self, report: shifts.Report) -> None:
        self.shift = None
        self.redraw()
        path = self.site.settings.paths.data_dir / "reports" / f"{report.title.split()[1]}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.csv())
        self.push_screen(ReportScreen(report, path))


def _plate_or_spot(answers: dict[str, str]) -> None:
    if not (answers["plate"].strip() or answers["spot"].strip()):
        raise InvalidInput("Type the car's plate, or the spot it is in.")


def _payment_lines(payments: list[Payment]) -> list[str]:
    """Ledger rows under a search result, with the numbers a refund asks."""
    return [
        f"  Payment {p.id}: {p.kind} {format_money(p.amount, p.currency)} "
        f"{p.method}, {p.status.value}"
        for p in payments
    ]
