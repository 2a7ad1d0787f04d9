"""The touchscreen kiosk: entry, pay and exit, for drivers in a hurry.

It never ends at a shell, a traceback or a dead screen: Ctrl+C, Ctrl+Q,
Ctrl+Z and the command palette do nothing; only a staff PIN (F10) leaves.
Every blocking call (database, printer, card reader) runs in a thread worker
that reports back with `call_from_thread`; a failure becomes a message on
screen. After `idle_timeout_seconds` without a touch, any screen counts down
and returns to the start screen.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.widgets import Label

from core import services as lk
from core.devices.gate import Gate, LoggedGate
from core.domain import Account, Availability, Payment, Size, Ticket
from core.errors import LotkeeperError, NothingToPay, PaymentRequired
from core.payments.provider import PaymentStatus
from core.services.events import EventCursor
from core.site import Site
from kiosk import screens
from kiosk.i18n import _, line_text, time_text, use_language
from kiosk.widgets import size_name

if TYPE_CHECKING:
    from core.devices.printer import SlipWords

log = logging.getLogger("lotkeeper.kiosk")
T = TypeVar("T")

COUNTDOWN_SECONDS = 15
TAIL_SECONDS = 0.5
HEARTBEAT_SECONDS = 5.0
RESYNC_SECONDS = 30.0


class KioskApp(App[None]):
    CSS_PATH = Path(__file__).parent / "kiosk.tcss"
    TITLE = "Lotkeeper"
    ENABLE_COMMAND_PALETTE = False
    # Priority bindings so no screen or widget gets these keys first.
    BINDINGS = [
        Binding("ctrl+q", "nothing", show=False, priority=True),
        Binding("ctrl+c", "nothing", show=False, priority=True),
        Binding("ctrl+z", "nothing", show=False, priority=True),
        Binding("ctrl+p", "nothing", show=False, priority=True),
        Binding("f10", "staff_exit", show=False, priority=True),
    ]

    def __init__(
        self,
        site: Site,
        *,
        kiosk_id: str | None = None,
        role: str | None = None,
        printer: Any = None,
        gate: Gate | None = None,
        staff_pin: str | None = None,
        idle_clock: Callable[[], float] = time.monotonic,
        payment_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        settings = site.settings
        self.site = site
        self.kiosk_id = kiosk_id or settings.kiosk.id
        self.role = role or settings.kiosk.role
        if printer is None:
            from core.devices.printer import site_printer

            printer = site_printer(site)
        self.printer = printer
        self.gate = gate or LoggedGate()
        self.staff_pin = staff_pin or _staff_pin(site)
        self.idle_timeout = settings.kiosk.idle_timeout_seconds
        self.idle_clock = idle_clock
        # Between polls of the card reader (tests make the driver act here).
        self.payment_sleep = payment_sleep
        self.last_touch = idle_clock()
        self.availability: Availability | None = None
        self.cursor: EventCursor | None = None
        self.last_resync = 0.0
        self.pending_payment: Payment | None = None
        self.cancel_requested = False
        self.staff_exit = False
        """Left through the staff PIN (anything else that ends the app is a
        fault, and `run_unattended` starts it again)."""
        self.reader_health: lk.Component | None = None
        self.account: Account | None = None
        """The driver signed in at this kiosk; signed out whenever the kiosk
        goes back to its start screen (done, or idle)."""
        use_language(settings.kiosk.language)

    # -- facts screens read ------------------------------------------------

    @property
    def site_name(self) -> str:
        return self.site.name

    @property
    def simulated_payments(self) -> bool:
        return self.site.payments.simulated

    def describe_time(self, when: datetime | None) -> str:
        """A time in the site's zone, worded in the kiosk's language."""
        return time_text(self.site.local(when)) if when else ""

    # -- lifecycle -------------------------------------------------------------

    TALL_ROWS = 40

    def on_resize(self, event: events.Resize) -> None:
        """Bigger keys and buttons when the terminal has the room."""
        self.set_class(event.size.height >= self.TALL_ROWS, "-tall")

    def on_mount(self) -> None:
        self.push_screen(screens.StartScreen())
        self.set_interval(TAIL_SECONDS, self.follow_lot)
        self.set_interval(1.0, self.idle_tick)
        self.set_interval(HEARTBEAT_SECONDS, self.heartbeat)
        self.heartbeat()
        self.follow_lot()

    def action_nothing(self) -> None:
        """Swallow keys that would leave, suspend or open a palette."""
        self.touched()

    async def action_quit(self) -> None:
        self.action_staff_exit()

    def action_suspend_process(self) -> None:
        self.touched()

    def action_help_quit(self) -> None:
        self.touched()

    def action_staff_exit(self) -> None:
        def done(ok: bool | None) -> None:
            if ok:
                self.staff_exit = True
                self.exit()

        self.push_screen(screens.StaffPinScreen(), done)

    def check_staff_pin(self, pin: str) -> bool:
        return hmac.compare_digest(pin.encode(), self.staff_pin.encode())

    def switch_language(self) -> None:
        from kiosk.i18n import language

        use_language("es" if language() == "en" else "en")
        self.go_home(next_driver=False)

    def go_home(self, next_driver: bool = True) -> None:
        """Back to a fresh start screen (language and counts up to date),
        signing out any driver; for the next driver, in the kiosk's own
        language again."""
        self.account = None
        if next_driver:
            use_language(self.site.settings.kiosk.language)
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(screens.StartScreen())
        self.touched()

    def go_to_account(self) -> None:
        """Back to the signed-in driver's account screen (after reserving);
        to the start when nobody is signed in any more."""
        from kiosk.account import AccountHomeScreen

        if self.account is None:
            self.go_home()
            return
        while len(self.screen_stack) > 2 and not isinstance(self.screen, AccountHomeScreen):
            self.pop_screen()
        if not isinstance(self.screen, AccountHomeScreen):
            self.push_screen(AccountHomeScreen())
        self.touched()

    # -- idle timeout -------------------------------------------------------

    def touched(self) -> None:
        self.last_touch = self.idle_clock()

    def on_event(self, event: Any) -> Any:
        if type(event).__name__ in ("Key", "Click", "MouseDown"):
            self.touched()
        return super().on_event(event)

    def idle_tick(self) -> None:
        if isinstance(self.screen, screens.StartScreen):
            self.touched()
            return
        from kiosk.account import HoldScreen

        if isinstance(self.screen, screens.ReaderScreen | HoldScreen):
            self.touched()  # the reader and the hold have their own timeouts
            return
        idle = self.idle_clock() - self.last_touch
        left = int(self.idle_timeout - idle)
        text = _("Back to the start in {n} s").format(n=left) if left <= COUNTDOWN_SECONDS else ""
        countdown = self.screen.query("#countdown").results(Label)
        labels = list(countdown)
        if not labels and text:
            # Every screen shows the countdown, whether or not it made room.
            labels = [Label("", id="countdown")]
            self.screen.mount(labels[0])
        for label in labels:
            label.update(text)
        if left <= 0:
            self.go_home()

    # -- live availability --------------------------------------------------

    @work(thread=True, exclusive=True, group="lot", exit_on_error=False)
    def follow_lot(self) -> None:
        """Tail the event log; re-read the counts when anything changed, and
        from scratch every `RESYNC_SECONDS` so the screen never drifts."""
        now = time.monotonic()
        try:
            changed = self.cursor is None or now - self.last_resync > RESYNC_SECONDS
            if self.cursor is not None:
                batch = lk.events_since(self.site, self.cursor)
                self.cursor = batch.cursor
                changed = changed or bool(batch.events)
            if not changed:
                return
            snapshot = lk.snapshot(self.site)
            if self.cursor is None:
                self.cursor = snapshot.cursor
            self.last_resync = now
            from core.services.availability import summarize

            availability = summarize(snapshot.spots, snapshot.at)
        except LotkeeperError as error:
            log.warning("availability: %s", error)
            return
        self.call_from_thread(self._show_availability, availability)

    def _show_availability(self, availability: Availability) -> None:
        self.availability = availability
        if isinstance(self.screen, screens.StartScreen):
            self.screen.refresh_availability()

    # -- heartbeat ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="heartbeat", exit_on_error=False)
    def heartbeat(self) -> None:
        """Tell the attendant this kiosk is alive and how its printer and card
        reader are (asked with short timeouts, off the UI loop)."""
        self._beat(printer_trouble=None)

    def _beat(self, printer_trouble: str | None) -> None:
        from core.devices.printer import PrinterState

        if printer_trouble is not None:
            printer = lk.Component("fault", printer_trouble)
        else:
            health = self.printer.health()
            state = {PrinterState.OK: "ok", PrinterState.PAPER_LOW: "warning"}.get(
                health.state, "fault"
            )
            printer = lk.Component(state, health.detail)  # type: ignore[arg-type]
        if printer_trouble is None or self.reader_health is None:
            # (A printer fault is reported at once: the gate waits for it,
            # so the reader's last known state is used then.)
            self.reader_health = lk.reader_health(self.site)
        reader = self.reader_health
        try:
            lk.report_heartbeat(
                self.site, self.kiosk_id, self.role, {"printer": printer, "reader": reader}
            )
        except LotkeeperError as error:
            log.warning("heartbeat: %s", error)

    # -- journeys (workers) ---------------------------------------------------

    @work(thread=True, exclusive=True, group="journey", exit_on_error=False)
    def call_core(self, screen: Any, do: Callable[[], T], then: Callable[[T], None]) -> None:
        """Run `do` (a service call) off the UI loop; hand its result to
        `then` on the UI loop, or its error to `screen.failed`."""
        try:
            result = do()
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self._on(screen, then, result)

    def _on(self, screen: Any, action: Callable[..., Any], *args: Any) -> None:
        """From a worker: run `action` on the UI loop if `screen` is still
        the one showing. A late answer (the driver went home, the kiosk timed
        out) must never change the next driver's screen."""

        def apply() -> None:
            if self.screen is screen:
                action(*args)
            else:
                log.info("dropped a late result for %s", type(screen).__name__)

        self.call_from_thread(apply)

    def _fail(self, screen: Any, error: LotkeeperError) -> None:
        self._on(screen, screen.failed, error)

    @work(thread=True, exclusive=True, group="journey", exit_on_error=False)
    def take_ticket(
        self, screen: screens.KioskScreen, size: Size, plate: str | None, need: str | None = None
    ) -> None:
        try:
            ticket = lk.enter(self.site, size, plate=plate, kiosk=self.kiosk_id, need=need)
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self._admit(screen, ticket, f"entry, ticket {ticket.id}")

    def _print_ticket(self, ticket: Ticket) -> tuple[bool, str | None]:
        """Print the ticket: (printed on paper, what to tell the driver when
        its QR is shown on screen instead). On a printer fault the driver
        still gets in (the claim is made once) with the QR to photograph, and
        the attendant is told."""
        from core.devices.printer import PrinterError, TicketPrint

        job = TicketPrint(
            words=_slip_words(),
            site_name=self.site.name,
            code=ticket.code,
            short_code=ticket.short_code,
            spot_label=ticket.spot_label,
            level=ticket.level,
            size=size_name(ticket.size),
            plate=ticket.plate,
            entered=self.describe_time(ticket.entered_at),
            leave_by=self.describe_time(ticket.max_stay_until),
        )
        try:
            preview = self.printer.print_ticket(job)
        except PrinterError as error:
            # Reported at once as this kiosk's printer fault (one alert, not
            # one per heartbeat); the driver still gets in.
            self._beat(printer_trouble=f"{error}; ticket {ticket.id} shown on screen instead")
            return False, _(
                "The ticket printer is not working. Please take a photo of this code: "
                "it is your ticket."
            )
        if preview is not None:
            # The preview printer: the ticket is shown here and saved.
            return False, _(
                "Preview printer: your ticket is shown here and saved as {path}."
            ).format(path=preview)
        return True, None

    @work(thread=True, exclusive=True, group="journey", exit_on_error=False)
    def look_up(self, screen: screens.ScanScreen, code: str) -> None:
        self._show_fee(screen, code)

    def _show_fee(self, screen: screens.ScanScreen, code: str, leaving: bool = False) -> None:
        """The fee screen for a ticket (from a worker)."""
        try:
            status = lk.ticket_status(self.site, code, kiosk=self.kiosk_id)
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self._on(screen, self.switch_screen, screens.FeeScreen(code, status, leaving))

    @work(thread=True, exclusive=True, group="journey", exit_on_error=False)
    def leave(self, screen: screens.ScanScreen, code: str) -> None:
        try:
            result = lk.exit(self.site, code, kiosk=self.kiosk_id)
        except PaymentRequired:
            # Not paid (or the exit grace is over): straight into paying,
            # and out through this gate once paid.
            self._show_fee(screen, code, leaving=True)
            return
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self.gate.open(self.kiosk_id, f"exit, ticket {result.ticket_id}")
        self._on(screen, self.switch_screen, screens.GoodbyeScreen(result.spot_label))

    @work(thread=True, group="leave", exit_on_error=False)
    def leave_after_paying(self, screen: screens.ReceiptScreen, code: str) -> None:
        """Paid at the exit lane: let the car out at once."""
        try:
            result = lk.exit(self.site, code, kiosk=self.kiosk_id)
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self.gate.open(self.kiosk_id, f"exit, ticket {result.ticket_id}")
        self._on(screen, screen.gate_opened, result.spot_label)

    @work(thread=True, exclusive=True, group="journey", exit_on_error=False)
    def check_in(self, screen: screens.ScanScreen, code: str) -> None:
        try:
            ticket = lk.check_in(self.site, code, kiosk=self.kiosk_id)
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self._admit(screen, ticket, f"reservation check-in, ticket {ticket.id}")

    def _admit(self, screen: Any, ticket: Ticket, why: str) -> None:
        """After entry or check-in (from a worker): print the ticket (or show
        its QR), open the gate, show the spot."""
        printed, problem = self._print_ticket(ticket)
        self.gate.open(self.kiosk_id, why)
        self._on(screen, self.switch_screen, screens.TicketScreen(ticket, printed, problem))

    @work(thread=True, exclusive=True, group="payment", exit_on_error=False)
    def pay(
        self, screen: screens.ReaderScreen, purchase: screens.Purchase, card: str | None = None
    ) -> None:
        try:
            if purchase.reservation is not None:
                payment = lk.pay_reservation(
                    self.site, purchase.reservation.id, card=card, kiosk=self.kiosk_id
                )
            else:
                payment = lk.pay_ticket(
                    self.site, purchase.ticket_code or "", card=card, kiosk=self.kiosk_id
                )
        except NothingToPay as done:
            self._on(screen, self.switch_screen, screens.MessageScreen(_(str(done))))
            return
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        self.pending_payment = payment

        def show(update: Payment) -> None:
            self.pending_payment = update
            if self.cancel_requested and update.status is PaymentStatus.PENDING:
                # Cancel was pressed before the reader had the payment.
                self.cancel_requested = False
                self._cancel(screen, update)
            self._on(screen, screen.reader_status, update)

        try:
            final = lk.wait_for_payment(
                self.site, payment.id, on_update=show, sleep=self.payment_sleep
            )
        except LotkeeperError as error:
            # The reader could not be asked: stop its action rather than
            # leave it waiting for a card nobody will be charged for.
            self._cancel(screen, payment, quiet=True)
            self._fail(screen, error)
            return
        finally:
            self.pending_payment = None
        self._on(screen, screen.finished, final)

    @work(thread=True, group="cancel", exit_on_error=False)
    def cancel_payment(self, screen: screens.ReaderScreen) -> None:
        payment = self.pending_payment
        if payment is None:
            self.cancel_requested = True  # the paying worker cancels once it starts
            return
        if payment.status is PaymentStatus.PENDING:
            self._cancel(screen, payment)
        # The paying worker sees the cancelled state on its next poll.

    def _cancel(self, screen: Any, payment: Payment, quiet: bool = False) -> None:
        try:
            lk.cancel_payment(self.site, payment.id)
        except LotkeeperError as error:
            if not quiet:
                self._fail(screen, error)

    @work(thread=True, group="receipt", exit_on_error=False)
    def print_receipt(self, screen: Any, payment: Payment) -> None:
        from core.devices.printer import PrinterError, ReceiptPrint
        from core.tariff import format_money

        if payment.reservation_id is not None:
            self._print_reservation(screen, payment)
            return
        # The receipt as the engine words it: the fee lines as they were
        # when this payment was taken and "Already paid" for earlier ones.
        receipt = None
        with contextlib.suppress(LotkeeperError):
            receipt = lk.payment_receipt(self.site, payment.id)
        card = _card_text(payment)
        job = ReceiptPrint(
            words=_slip_words(),
            site_name=self.site.name,
            reference=(
                _("Ticket {id}").format(id=payment.stay_id)
                if payment.stay_id
                else _("Payment {id}").format(id=payment.id)
            ),
            lines=tuple(
                (line_text(line), format_money(line.amount, payment.currency))
                for line in (receipt.lines if receipt else ())
            ),
            total=format_money(payment.amount, payment.currency),
            paid_with=card,
            exit_by=self.describe_time(receipt.exit_by) if receipt else None,
            simulated=payment.simulated,
        )
        if receipt is not None:
            self._on(screen, screen.show_receipt, receipt)
        try:
            self.printer.print_receipt(job)
            text = (
                _("Please leave by {time}.").format(time=job.exit_by)
                if job.exit_by
                else _("Thank you.")
            )
        except PrinterError:
            # The payment stands; the receipt is on screen instead.
            text = _("The receipt printer is not working. Paid {total}; leave by {time}.").format(
                total=job.total, time=job.exit_by or "-"
            )
        self._on(screen, screen.receipt_done, text)

    def _print_reservation(self, screen: Any, payment: Payment) -> None:
        """The reservation's receipt: its code as a QR, the spot and window."""
        from core.devices.printer import PrinterError, ReceiptPrint
        from core.tariff import format_money

        try:
            reservation = lk.get_reservation(self.site, payment.reservation_id or 0)
        except LotkeeperError as error:
            self._fail(screen, error)
            return
        window = (
            f"{self.describe_time(reservation.starts_at)} - "
            f"{self.describe_time(reservation.ends_at)}"
        )
        job = ReceiptPrint(
            words=_slip_words(),
            site_name=self.site.name,
            reference=_("Reservation {code}").format(code=reservation.short_code),
            lines=(
                (
                    _("{size} space {spot}").format(
                        size=size_name(reservation.size), spot=reservation.spot_label
                    ),
                    "",
                ),
                (window, format_money(reservation.price, reservation.currency)),
            ),
            total=format_money(payment.amount, payment.currency),
            paid_with=_card_text(payment),
            exit_by=None,
            simulated=payment.simulated,
            code=reservation.code,
            title=_("RESERVATION"),
        )
        try:
            self.printer.print_receipt(job)
            text = _("Your reservation is printed. Show its code at the entry.")
        except PrinterError:
            text = _("The printer is not working: please take a photo of this code.")
        self._on(screen, screen.receipt_done, text, reservation)

    def raise_alert(self, what: str) -> None:
        self.run_worker(
            lambda: lk.record_device_fault(self.site, self.kiosk_id, "help", what),
            thread=True,
            exit_on_error=False,
        )


def run_unattended(
    open_site: Callable[[], Site],
    make_app: Callable[[Site], KioskApp],
    *,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    attempts: int | None = None,
) -> int:
    """Run the kiosk until staff leave it with the PIN. A database that
    cannot be reached at start is waited for; an app that ends on an
    unexpected error is reported (to the attendant too) and started again,
    so the lane never stays at a shell. `attempts` bounds the loop (tests)."""
    tries = 0
    while attempts is None or tries < attempts:
        tries += 1
        try:
            site = open_site()
        except LotkeeperError as error:
            report(f"lotkeeper kiosk: waiting for the database: {error}")
            sleep(5.0)
            continue
        try:
            app = make_app(site)
            app.run()
            if app.staff_exit:
                return 0
            report("lotkeeper kiosk: the app stopped on an error; starting it again")
            with contextlib.suppress(LotkeeperError):  # the database may be the error
                lk.record_device_fault(site, app.kiosk_id, "kiosk", "restarted after an error")
        finally:
            site.close()
        sleep(2.0)
    return 1


def _card_text(payment: Payment) -> str:
    if payment.card_last4:
        return f"{(payment.card_brand or _('card')).title()} **** {payment.card_last4}"
    return _("Card")


def _slip_words() -> SlipWords:
    """The printed slips' fixed words in the driver's language."""
    from core.devices.printer import SlipWords  # lazy: start-up time

    return SlipWords(
        ticket=_("PARKING TICKET"),
        keep=_("Keep this ticket. Pay before you leave."),
        spot=_("Spot {label}"),
        size=_("Size"),
        plate=_("Plate"),
        entered=_("Entered"),
        leave_by=_("Leave by"),
        receipt=_("RECEIPT"),
        total=_("Total"),
        paid_with=_("Paid with"),
        exit_by=_("Exit by"),
        simulated=_("SIMULATED PAYMENT - NO MONEY TAKEN"),
    )


def _staff_pin(site: Site) -> str:
    """The configured staff PIN, or one generated once into the data dir."""
    configured = site.settings.kiosk.staff_pin
    if configured is not None:
        return configured.get_secret_value()
    path: Path = site.settings.paths.data_dir / "kiosk-pin"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{secrets.randbelow(10**6):06d}\n")
    return path.read_text().strip()
