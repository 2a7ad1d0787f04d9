"""The `lotkeeper` command. Every failure exits non-zero with one clear line;
`--debug` shows the traceback instead."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TextIO

from core.config import Settings, load_settings
from core.domain import Availability, Event, Size
from core.errors import ConfigError, LotkeeperError

EXIT_ERROR = 1


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _open(args: argparse.Namespace) -> Any:
    from core.site import open_site

    return open_site(_settings(args))


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _plain(value: Any) -> Any:
    """Dataclass fields as JSON-friendly values; sizes by name, not number."""
    if isinstance(value, Size):
        return value.label
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(_plain(data), default=_json_default, sort_keys=True) + "\n")


def _availability_table(site_name: str, when: str, avail: Availability) -> str:
    """Spots *of each size* (not the spots a car of that size fits, which is
    what the kiosk counts: a small car also fits medium and large spots)."""
    counts: list[tuple[str, int, int, int, int, int, int]] = [
        (
            f"{s.size.label} spots:",
            s.free,
            s.total,
            s.occupied,
            s.held,
            s.reserved,
            s.out_of_service,
        )
        for s in avail.sizes
    ]
    if counts:
        free, total, occupied, held, reserved, closed = (
            sum(column) for column in list(zip(*counts, strict=True))[1:]
        )
        counts.append(("all spots:", free, total, occupied, held, reserved, closed))
    label_width = max((len(c[0]) for c in counts), default=0)
    free_width = max((len(str(c[1])) for c in counts), default=0)
    total_width = max((len(str(c[2])) for c in counts), default=0)
    lines = [f"{site_name} — {when}"]
    for label, free, total, occupied, held, reserved, closed in counts:
        lines.append(
            f"{label:<{label_width}} {free:>{free_width}} free of {total:<{total_width}}  "
            f"({occupied} occupied, {held} held, {reserved} reserved, {closed} out of service)"
        )
    full = [s.size.label for s in avail.sizes if s.total and not s.can_enter]
    if avail.total == 0:
        lines.append("No spots yet: load a layout with `lotkeeper lot load assets/lot.toml`.")
    else:
        lines.append("Each line counts the spots of that size; a car also fits larger spots.")
        if full:
            lines.append("Full for: " + ", ".join(full))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    avail = services.availability(site)
    if args.json:
        _print_json(
            {
                "site": site.id,
                "name": site.name,
                "at": avail.at,
                "sizes": [asdict(s) for s in avail.sizes],
            },
            out,
        )
    else:
        out.write(_availability_table(site.name, site.describe_time(avail.at), avail) + "\n")
    return 0


def _format_event(site: Any, event: Event) -> str:
    source = f" [{event.source}]" if event.source else ""
    when = f"{site.local(event.at):%Y-%m-%d %H:%M:%S}"
    return f"{event.id:>8}  {when}  {event.kind:<15}{source} {event.message}"


def cmd_events(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    batch = services.recent_events(site, limit=args.limit)
    while True:
        for event in batch.events:
            if args.json:
                _print_json(asdict(event), out)
            else:
                out.write(_format_event(site, event) + "\n")
        out.flush()
        if not args.follow:
            return 0
        time.sleep(args.interval)
        batch = services.events_since(site, batch.cursor)


def cmd_lot_load(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    result = services.load_layout_file(site, args.file, source="cli")
    if not result.changed:
        out.write(f"Layout already loaded: {result.unchanged} spots, nothing changed.\n")
    else:
        out.write(
            f"Layout loaded: {len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.removed)} removed, {result.unchanged} unchanged.\n"
        )
    return 0


def cmd_db_upgrade(args: argparse.Namespace, out: TextIO) -> int:
    from core.storage import migrate
    from core.storage.database import Database

    settings = _settings(args)
    db = Database(
        settings.database_url,
        failover_urls=settings.database.failover_urls,
        busy_timeout_seconds=settings.database.busy_timeout_seconds,
        lock_wait_timeout_seconds=settings.database.lock_wait_timeout_seconds,
        retry_down_after_seconds=settings.database.failover_retry_seconds,
    )
    try:
        before = db.run_connected(migrate.current_revision)
        db.run_connected(migrate.upgrade)
        after = db.run_connected(migrate.current_revision)
    finally:
        db.dispose()
    if before == after:
        out.write(f"Database already at revision {after}.\n")
    else:
        out.write(f"Database upgraded from {before or 'empty'} to {after}.\n")
    return 0


def cmd_keys_rotate(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    key = services.rotate_key(_open(args), source="cli")
    out.write(f"New tickets are now signed with {key.key_id}; older keys still verify.\n")
    return 0


def cmd_keys_list(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    for key in services.list_keys(site):
        state = "active" if key.active else ("retired" if key.retired_at else "verifies")
        out.write(f"{key.key_id:<6} {state:<9} created {site.describe_time(key.created_at)}\n")
    return 0


def cmd_keys_retire(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    key = services.retire_key(_open(args), args.key_id, source="cli")
    out.write(f"{key.key_id} retired: tickets signed with it are no longer accepted.\n")
    return 0


def cmd_enter(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    ticket = services.enter(site, args.size, plate=args.plate, kiosk=args.kiosk)
    if args.json:
        _print_json(asdict(ticket), out)
    else:
        out.write(
            f"Ticket {ticket.short_code}: spot {ticket.spot_label} ({ticket.level}), "
            f"entered {site.describe_time(ticket.entered_at)}, "
            f"leave by {site.describe_time(ticket.max_stay_until)}\n"
            f"Code: {ticket.code}\n"
        )
    return 0


def cmd_exit(args: argparse.Namespace, out: TextIO) -> int:
    from core import services

    site = _open(args)
    result = services.exit(site, args.code, kiosk=args.kiosk)
    out.write(
        f"Goodbye: ticket {result.ticket_id} left {result.spot_label} after "
        f"{result.duration_minutes} minutes.\n"
    )
    return 0


def cmd_payments_reconcile(args: argparse.Namespace, out: TextIO) -> int:
    from datetime import timedelta

    from core import services
    from core.tariff import format_money

    site = _open(args)
    older = None if args.older_than is None else timedelta(minutes=args.older_than)
    report = services.reconcile(site, older_than=older)
    for payment in report.settled:
        out.write(
            f"payment {payment.id}: {payment.kind} of "
            f"{format_money(payment.amount, payment.currency)} -> {payment.status}\n"
        )
    for payment_id in report.still_pending:
        out.write(f"payment {payment_id}: still in progress at the provider\n")
    for error in report.errors:
        out.write(f"{error}\n")
    out.write(
        f"Checked {report.checked} pending payment(s): {len(report.settled)} settled, "
        f"{len(report.still_pending)} still pending, {len(report.errors)} unreachable.\n"
    )
    return EXIT_ERROR if report.errors else 0


def cmd_kiosk(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from kiosk.app import KioskApp, run_unattended
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError("the kiosk app is not installed ({reason})", reason=exc) from None

    settings = _settings(args)  # a bad config is one clear line, before any screen

    def open_site() -> Any:
        from core.site import open_site

        return open_site(settings)

    return run_unattended(
        open_site, lambda site: KioskApp(site, kiosk_id=args.kiosk_id, role=args.role)
    )


def cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    import logging
    import signal
    import threading

    from core.worker import Worker, job_status

    site = _open(args)
    if args.status:
        jobs = job_status(site)
        if not jobs:
            out.write("No runs yet: start `lotkeeper worker` (or `--once`).\n")
        for job in jobs:
            ran = site.describe_time(job.last_run_at) if job.last_run_at else "never"
            held = f", taken by {job.lease_owner}" if job.lease_owner else ""
            out.write(f"{job.name:<18} last run {ran}: {job.last_result or '-'}{held}\n")
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("lotkeeper.worker").setLevel(logging.INFO)
    send_email = None
    if site.settings.smtp.configured:
        from core.mail import SmtpMailer

        send_email = SmtpMailer(site.settings.smtp, site)
    else:
        logging.getLogger("lotkeeper.worker").warning(
            "no SMTP server configured (smtp.host): driver notices are logged, not emailed"
        )
    stop = threading.Event()
    worker = Worker(site, worker_id=args.worker_id, send_email=send_email, stop=stop)
    if args.once:
        report = worker.run_once()
        return EXIT_ERROR if report.errors else 0

    def stopping(signum: int, frame: object) -> None:
        stop.set()  # finish the action under way, then leave

    before = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run(args.interval)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return 0


def cmd_api(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from api.app import serve
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError("the API is not installed ({reason})", reason=exc) from None

    site = _open(args)
    # X-Forwarded-For is read by the API from `api.trusted_proxies` only.
    serve(site, args.host, args.port)
    return 0


def cmd_attendant(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from attendant.app import AttendantApp
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError("the attendant console is not installed ({reason})", reason=exc) from None

    AttendantApp(_open(args)).run()
    return 0


def _ask_pin(prompt: str) -> str:
    """A PIN from the terminal without echo, or a line of standard input
    when it is not a terminal (scripts)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def cmd_staff_add(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.staff import add_staff, check_pin

    pin = _ask_pin("PIN (4-12 digits): ")
    check_pin(pin)
    if _ask_pin("The same PIN again: ") != pin:
        raise ConfigError("the two PINs differ; nothing was changed")
    staff = add_staff(_open(args), args.name, args.role, pin)
    out.write(f"{staff.name} can now sign in to the console as {staff.role}.\n")
    return 0


def cmd_staff_list(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.staff import list_staff

    site = _open(args)
    for staff in list_staff(site):
        state = f"disabled {site.describe_time(staff.disabled_at)}" if staff.disabled_at else ""
        out.write(f"{staff.name:<24} {staff.role:<11} {state}\n".rstrip() + "\n")
    return 0


def cmd_staff_disable(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.shifts import open_shift_of
    from core.services.staff import disable_staff

    site = _open(args)
    staff = disable_staff(site, args.name, reason=args.reason or "")
    out.write(f"{staff.name} can no longer sign in.\n")
    # Disabling leaves the shift open: its cash is still to be counted, by a
    # supervisor (docs/attendant.md, "Shifts and reports").
    shift = open_shift_of(site, staff)
    if shift is not None:
        out.write(
            f"Shift {shift.id} of {staff.name} (open since "
            f"{site.describe_time(shift.opened_at)}) is still open: a supervisor closes it "
            f"with `lotkeeper shift close {shift.id} --counted AMOUNT --supervisor NAME`.\n"
        )
    return 0


def _signed_in(site: Any, name: str, *, supervisor: bool = False) -> Any:
    """The staff member `name`, signed in with their PIN (asked as for
    `staff add`): the same check, throttle and audit as at the console."""
    from core.services.staff import staff_sign_in

    who = staff_sign_in(site, name, _ask_pin(f"{name}'s PIN: "))
    if supervisor and not who.supervisor:
        raise ConfigError("{name} is not a supervisor; nothing was changed", name=who.name)
    return who


def cmd_device_list(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.devices import device_health

    site = _open(args)
    found = device_health(site)
    if not found:
        out.write("No device has reported yet.\n")
    for device in found:
        faulty = [
            f"{name}: {part.detail or part.state}"
            for name, part in device.components.items()
            if part.state == "fault"
        ]
        state = "SILENT" if device.silent else ("FAULT " + "; ".join(faulty) if faulty else "ok")
        out.write(
            f"{device.device_id:<16} {device.role:<9} last heartbeat "
            f"{site.describe_time(device.last_seen_at)}  {state}\n"
        )
    return 0


def cmd_device_decommission(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.devices import decommission_device

    site = _open(args)
    who = _signed_in(site, args.staff)
    gone = decommission_device(site, who.actor, args.device_id, args.reason)
    out.write(
        f"{gone.device_id} decommissioned (last heartbeat "
        f"{site.describe_time(gone.last_seen_at)}): its alerts are gone until it reports again.\n"
    )
    return 0


def _money_arg(text: str, what: str) -> int:
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        amount = Decimal(-1)
    if not text.strip().lstrip("$").isascii() or amount < 0 or amount != round(amount, 2):
        raise ConfigError(
            "{what} takes an amount of money such as 99.50, not {text!r}", what=what, text=text
        )
    return int(amount * 100)


def cmd_shift_list(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.shifts import list_shifts
    from core.tariff import format_money

    site = _open(args)
    found = list_shifts(site, open_only=args.open, limit=args.limit)
    if not found:
        out.write("No open shifts.\n" if args.open else "No shifts yet.\n")
    money = site.tariff.currency
    for shift in found:
        opened = f"opened {site.describe_time(shift.opened_at)}"
        if shift.closed_at is None:
            state = "OPEN"
        else:
            counted = format_money(shift.counted_amount or 0, money)
            state = f"closed {site.describe_time(shift.closed_at)}, counted {counted}"
        out.write(
            f"{shift.id:>6}  {shift.staff_name:<20} {opened}, float "
            f"{format_money(shift.float_amount, money)}, {state}\n"
        )
    return 0


def _write_report(report: Any, out: TextIO, as_csv: bool) -> None:
    if as_csv:
        out.write(report.csv())
        return
    width = max(len(label) for label, _ in report.lines())
    for label, value in report.lines():
        out.write(f"{label:<{width}}  {value}\n")


def cmd_shift_close(args: argparse.Namespace, out: TextIO) -> int:
    from core.services.shifts import close_shift_by_id

    counted = _money_arg(args.counted, "--counted")
    site = _open(args)
    who = _signed_in(site, args.supervisor, supervisor=True)
    report = close_shift_by_id(site, who, args.shift_id, counted)
    _write_report(report, out, args.csv)
    return 0


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from datetime import date

    from core.services.shifts import day_report

    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        raise ConfigError("--day takes a date as YYYY-MM-DD, not {day!r}", day=args.day) from None
    report = day_report(_open(args), day)
    _write_report(report, out, args.csv)
    return 0


def cmd_audit_verify(args: argparse.Namespace, out: TextIO) -> int:
    import hmac
    import re

    from core.services.audit import audit_row_mac, verify_audit

    expected: list[tuple[int, str]] = []
    for text in args.expect or []:
        # ASCII only: int() would also read other scripts' digits.
        match = re.fullmatch(r"([0-9]{1,18}):([0-9a-f]{8,64})", text.strip().lower())
        if match is None:
            raise ConfigError(
                "--expect takes ROW:MAC as printed on a report, not {text!r}", text=text
            )
        expected.append((int(match[1]), match[2]))
    site = _open(args)
    check = verify_audit(site)
    failed = not check.ok
    if check.ok:
        out.write(f"audit trail intact: {check.problem}\n")
    else:
        out.write(f"audit trail BROKEN: {len(check.problems)} problem(s) in {check.rows} rows\n")
        for problem in check.problems:
            out.write(f"  {problem.description}\n")
        if any(
            p.kind == "changed" and p.seq == 1 and p.last >= check.rows > 1 for p in check.problems
        ):
            out.write(
                "No row matches the site key: if they were not all edited, check that "
                "this is the site's secret (tickets.secret, or the ticket secret file).\n"
            )
    for seq, mac in expected:
        found = audit_row_mac(site, seq)
        if found is not None and hmac.compare_digest(found[: len(mac)], mac):
            out.write(f"row {seq} matches the paper ({mac})\n")
        else:
            failed = True
            shown = found[: len(mac)] if found is not None else "no such row"
            out.write(f"row {seq} DIFFERS from the paper: {mac} printed, {shown} now\n")
    return EXIT_ERROR if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lotkeeper", description="Lotkeeper parking garage: operator commands."
    )
    parser.add_argument("--config", help="TOML config file (default: $LOTKEEPER_CONFIG, else none)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., int], help_text: str, under: Any = commands) -> Any:
        command = under.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    status = add("status", cmd_status, "show free and taken spots per size")
    status.add_argument("--json", action="store_true")

    events = add("events", cmd_events, "show the event log (entries, exits, refusals, ...)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--limit", type=int, default=50, help="how many recent events first")
    events.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)

    lot = commands.add_parser("lot", help="lot layout").add_subparsers(dest="lot", required=True)
    load = add("load", cmd_lot_load, "load or update the lot layout from a TOML file", lot)
    load.add_argument("file")

    db = commands.add_parser("db", help="database").add_subparsers(dest="db", required=True)
    add("upgrade", cmd_db_upgrade, "create or migrate the database schema", db)

    keys = commands.add_parser("keys", help="ticket signing keys").add_subparsers(
        dest="keys", required=True
    )
    add("rotate", cmd_keys_rotate, "sign new tickets with a fresh key", keys)
    add("list", cmd_keys_list, "list signing keys", keys)
    retire = add("retire", cmd_keys_retire, "stop accepting tickets signed with a key", keys)
    retire.add_argument("key_id")

    payments = commands.add_parser("payments", help="the payment ledger").add_subparsers(
        dest="payments", required=True
    )
    reconcile = add(
        "reconcile",
        cmd_payments_reconcile,
        "settle payments left pending by a crash from what the provider says",
        payments,
    )
    reconcile.add_argument(
        "--older-than",
        type=float,
        metavar="MINUTES",
        help="only attempts older than this (default: twice the reader timeout)",
    )

    staff = commands.add_parser("staff", help="console staff").add_subparsers(
        dest="staff", required=True
    )
    staff_add = add("add", cmd_staff_add, "add an attendant or supervisor (PIN asked twice)", staff)
    staff_add.add_argument("--name", required=True)
    staff_add.add_argument("--role", required=True, choices=["attendant", "supervisor"])
    add("list", cmd_staff_list, "list staff", staff)
    staff_disable = add("disable", cmd_staff_disable, "stop a staff member signing in", staff)
    staff_disable.add_argument("name")
    staff_disable.add_argument("--reason")

    shift = commands.add_parser("shift", help="booth shifts").add_subparsers(
        dest="shift", required=True
    )
    shift_list = add("list", cmd_shift_list, "list shifts, newest first", shift)
    shift_list.add_argument("--open", action="store_true", help="only the open ones")
    shift_list.add_argument("--limit", type=int, default=50)
    shift_close = add(
        "close",
        cmd_shift_close,
        "a supervisor closes a shift (whoever opened it) with the cash counted; prints its report",
        shift,
    )
    shift_close.add_argument("shift_id", type=int, help="the shift's number (shift list)")
    shift_close.add_argument("--counted", required=True, help="cash counted in the drawer, 99.50")
    shift_close.add_argument(
        "--supervisor", required=True, help="your name; your PIN is asked (or read from stdin)"
    )
    shift_close.add_argument("--csv", action="store_true", help="the report as CSV")

    device = commands.add_parser("device", help="kiosks and their health").add_subparsers(
        dest="device", required=True
    )
    add("list", cmd_device_list, "every device that reported: last heartbeat, faults", device)
    decommission = add(
        "decommission",
        cmd_device_decommission,
        "forget a kiosk taken away (silent for 30 s at least): its alerts go",
        device,
    )
    decommission.add_argument("device_id")
    decommission.add_argument("--staff", required=True, help="your name; your PIN is asked")
    decommission.add_argument("--reason", required=True, help="why (a few words)")

    report = add("report", cmd_report, "a day's figures: entries, exits, revenue, overrides")
    report.add_argument("--day", required=True, help="site-local date, YYYY-MM-DD")
    report.add_argument("--csv", action="store_true", help="as CSV")

    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit", required=True
    )
    verify = add(
        "verify",
        cmd_audit_verify,
        "check the audit trail's keyed chain; name every broken row",
        audit,
    )
    verify.add_argument(
        "--expect",
        action="append",
        metavar="ROW:MAC",
        help="the audit head printed on a report (e.g. 42:3f2a9c0e1b7d4a55): check it still holds",
    )

    add("attendant", cmd_attendant, "run the attendant console (lot grid, feed, overrides)")

    api = add("api", cmd_api, "serve the remote API for drivers (HTTP and WebSocket)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)

    worker = add(
        "worker",
        cmd_worker,
        "run the background jobs: holds, no-shows, overstays, reminders, reconciler",
    )
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.add_argument("--interval", type=float, help="seconds between passes")
    worker.add_argument("--worker-id", help="name in the logs and job leases (host:pid)")
    worker.add_argument("--status", action="store_true", help="show the jobs' last runs")

    kiosk = add("kiosk", cmd_kiosk, "run the touchscreen kiosk (entry, pay, exit)")
    kiosk.add_argument("--role", choices=["entry", "pay", "exit", "combined"])
    kiosk.add_argument("--kiosk-id")

    enter = add("enter", cmd_enter, "admit a walk-in and print its ticket (operator use)")
    enter.add_argument("--size", default="medium", help="small, medium or large")
    enter.add_argument("--plate")
    enter.add_argument("--kiosk", default="cli")
    enter.add_argument("--json", action="store_true")

    leave = add("exit", cmd_exit, "let a car out with its ticket code (operator use)")
    leave.add_argument("code", help="full code from the QR, or the short code")
    leave.add_argument("--kiosk", default="cli")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args, out)
        return code
    except LotkeeperError as error:
        if args.debug:
            raise
        print(f"lotkeeper: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # one clear line for anything unexpected
        if args.debug:
            raise
        print(
            f"lotkeeper: unexpected {type(error).__name__}: {error} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
