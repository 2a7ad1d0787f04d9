"""The background worker: holds, no-shows, overstays, reminders by email
(aiosmtpd on loopback), retries when SMTP is down, kiosk silences, two
workers at once, and stopping mid-cycle. The site clock is injected: each
schedule boundary is stepped over one second at a time."""

from __future__ import annotations

import email
import email.policy
import io
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import helpers
import pytest
import zxingcpp
from aiosmtpd.controller import Controller
from conftest import SiteFactory
from PIL import Image

from core import services as lk
from core.clock import FixedClock
from core.config import SmtpSettings
from core.mail import SmtpMailer
from core.services.accounts import add_ticket_to_account
from core.services.devices import Component
from core.services.notifications import list_notifications
from core.site import Site
from core.worker import Worker


class Inbox:
    """An SMTP server's mailbox: every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for m in self.messages]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def mailer(site: Site, port: int) -> SmtpMailer:
    return SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, security="none"), site)


def with_smtp(site: Site, port: int) -> Site:
    """The same site, configured with the loopback SMTP server."""
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_seconds=2)
    site.settings = site.settings.model_copy(update={"smtp": smtp})
    return site


def worker(site: Site, port: int | None, name: str = "w1", **options: Any) -> Worker:
    send = mailer(site, port) if port is not None else None
    return Worker(site, worker_id=name, send_email=send, **options)


def qr_of(message: EmailMessage) -> str:
    (image,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(image.get_content())))
    return found.text


def test_a_reservation_reminder_goes_out_once_30_minutes_before_with_a_scannable_qr(
    site: Site, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    with_smtp(site, port)
    booked = helpers.paid_reservation(site, start_in_hours=2)
    clock.set(booked.starts_at - timedelta(minutes=30, seconds=1))
    worker(site, port).run_once()
    assert box.messages == []  # 30:01 before: not yet

    clock.advance(seconds=1)
    worker(site, port).run_once()
    worker(site, port).run_once()  # and not twice
    (message,) = box.messages
    assert str(message["Subject"]).startswith("Your parking at")
    assert booked.short_code in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<img" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    code = qr_of(message)
    assert code == booked.code
    clock.advance(minutes=20)  # check-in opens before the start
    assert lk.check_in(site, code).spot_label == booked.spot_label


def test_a_car_hears_15_minutes_before_its_max_stay_then_overstays_once(
    site: Site, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    with_smtp(site, port)
    account = lk.create_account(site, "Cy", "cy@example.com", "pass words")
    lk.add_vehicle(site, account.id, "KLX 481", "small")
    ticket = lk.enter(site, "small", plate="KLX 481")
    add_ticket_to_account(site, account.id, ticket.code)  # the driver shows it is theirs
    clock.set(ticket.max_stay_until - timedelta(minutes=15, seconds=1))
    worker(site, port).run_once()
    assert box.messages == []

    clock.advance(seconds=1)
    worker(site, port).run_once()
    assert box.subjects() == [
        f"Your parking time ends at {site.describe_time(ticket.max_stay_until)}"
    ]

    clock.set(ticket.max_stay_until)
    worker(site, port).run_once()
    worker(site, port).run_once()
    assert box.subjects()[1:] == ["Your car is past its parking time"]
    overstays = [e for e in lk.recent_events(site).events if e.kind == "overstay"]
    assert len(overstays) == 1  # the attendant's alert, once


def test_a_registered_plate_alone_brings_no_notice_of_a_strangers_stay(
    site: Site, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    """Anyone can register a plate: the notice would say where the car is."""
    box, port = inbox
    with_smtp(site, port)
    account = lk.create_account(site, "Cy", "cy@example.com", "pass words")
    lk.add_vehicle(site, account.id, "KLX 481", "small")
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.set(ticket.max_stay_until - timedelta(minutes=15))
    worker(site, port).run_once()
    clock.set(ticket.max_stay_until)
    worker(site, port).run_once()
    assert box.messages == []


def test_an_account_that_said_no_gets_no_reminder_but_still_hears_of_a_cancellation(
    site: Site, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    with_smtp(site, port)
    booked = helpers.paid_reservation(site, start_in_hours=2)
    prefs = lk.set_notification_preferences(site, booked.account_id, remind_reservation=False)
    assert not prefs.remind_reservation and prefs.notify_changes
    clock.set(booked.starts_at - timedelta(minutes=10))
    worker(site, port).run_once()
    assert box.messages == []

    lk.cancel_reservation(site, booked.id, booked.account_id)
    worker(site, port).run_once()
    assert box.subjects() == [f"Reservation {booked.short_code} was cancelled"]
    assert qr_of(box.messages[0]) == booked.code  # the code it was, for the record


def test_smtp_down_is_retried_with_backoff_then_the_attendant_is_told(
    site: Site, clock: FixedClock
) -> None:
    closed = free_port()  # nothing listens here
    with_smtp(site, closed)
    booked = helpers.paid_reservation(site, start_in_hours=2)
    held = lk.hold(
        site, booked.account_id, "small", booked.starts_at, booked.ends_at
    )  # unpaid: expires on its own
    clock.set(booked.starts_at - timedelta(minutes=29))
    report = worker(site, closed).run_once()
    assert report.errors == {} and report.done["expire_holds"] == 1  # the rest still ran
    assert lk.get_reservation(site, held.id).state.value == "expired"

    retry = site.settings.worker.retry_seconds
    for attempt in range(1, site.settings.worker.delivery_attempts):
        (notice,) = list_notifications(site)
        assert (notice.state, notice.attempts) == ("pending", attempt)
        assert "cannot reach the SMTP server" in notice.last_error
        clock.advance(seconds=retry * 2 ** (attempt - 1) - 1)
        worker(site, closed).run_once()  # a second too early: no new try
        assert list_notifications(site)[0].attempts == attempt
        clock.advance(seconds=1)
        worker(site, closed).run_once()
    (notice,) = list_notifications(site)
    assert (notice.state, notice.attempts) == ("failed", site.settings.worker.delivery_attempts)
    alerts = [e for e in lk.recent_events(site).events if "Could not send" in e.message]
    assert len(alerts) == 1 and alerts[0].data["alert"] is True


def test_two_workers_at_once_send_each_notice_once(
    make_site: SiteFactory, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    from conftest import make_layout

    box, port = inbox
    first = with_smtp(make_site(make_layout(small=6)), port)
    second = with_smtp(make_site(), port)
    booked = [helpers.paid_reservation(first, start_in_hours=2) for _ in range(5)]
    clock.set(booked[0].starts_at - timedelta(minutes=5))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(site: Site, name: str) -> None:
        try:
            start.wait()
            for _ in range(3):
                worker(site, port, name).run_once()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(first, "w1")),
        threading.Thread(target=run, args=(second, "w2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(qr_of(m) for m in box.messages) == sorted(b.code for b in booked)


def test_a_stop_mid_cycle_hands_back_the_notices_not_yet_sent(
    site: Site, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    with_smtp(site, port)
    for _ in range(3):
        helpers.paid_reservation(site, start_in_hours=2)
    clock.advance(hours=1, minutes=45)
    stop = threading.Event()
    send = mailer(site, port)

    def send_then_stop(notice: Any) -> None:
        send(notice)
        stop.set()  # SIGTERM arrives while the first email goes out

    Worker(site, worker_id="w1", send_email=send_then_stop, stop=stop).run_once()
    assert len(box.messages) == 1
    waiting = [n for n in list_notifications(site) if n.state == "pending"]
    assert len(waiting) == 2  # handed back, not lost, not leased
    worker(site, port, "w2").run_once()  # another worker takes them at once
    assert len(box.messages) == 3


def test_a_silent_kiosk_is_reported_to_the_attendant_once_per_silence(
    site: Site, clock: FixedClock
) -> None:
    parts = {"printer": Component("ok", "ready")}
    lk.report_heartbeat(site, "lane-1", "entry", parts)
    clock.advance(seconds=30)
    worker(site, None).run_once()
    assert not [e for e in lk.recent_events(site).events if "no heartbeat" in e.message]
    clock.advance(seconds=1)
    worker(site, None).run_once()
    worker(site, None).run_once()
    silent = [e for e in lk.recent_events(site).events if "no heartbeat" in e.message]
    assert len(silent) == 1 and silent[0].data["alert"] is True
    lk.report_heartbeat(site, "lane-1", "entry", parts)  # back, then quiet again
    clock.advance(minutes=5)
    worker(site, None).run_once()
    silent = [e for e in lk.recent_events(site).events if "no heartbeat" in e.message]
    assert len(silent) == 2


def test_without_smtp_a_driver_notice_is_a_log_line(
    site: Site, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    helpers.paid_reservation(site, start_in_hours=1)
    clock.advance(minutes=40)
    with caplog.at_level("INFO", logger="lotkeeper.worker"):
        worker(site, None).run_once()
    (notice,) = list_notifications(site)
    assert (notice.channel, notice.state) == ("log", "sent")
    lines = [r.getMessage() for r in caplog.records]
    assert any("no email configured" in line and "Your parking at" in line for line in lines)
    assert any(line.startswith("notice sent: reservation_soon") for line in lines)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_stops_the_worker_process_cleanly(db_url: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from conftest import SECRET

    config = tmp_path / "lotkeeper.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
        f'[paths]\ndata_dir = "{tmp_path}"\n[tickets]\nsecret = "{SECRET}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "--config", str(config), "worker", "--interval", "600"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # blocks until the worker has said it started
        lines.append(line)
        if "started" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=30)
    assert process.returncode == 0, "".join(lines) + rest
    assert "stopped" in rest


def test_the_worker_expires_holds_at_five_minutes_and_releases_no_shows_after_the_grace(
    site: Site, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    booked = helpers.paid_reservation(site, start_in_hours=1)
    held = lk.hold(site, booked.account_id, "small", booked.starts_at, booked.ends_at)
    clock.set(held.hold_expires_at - timedelta(seconds=1))
    worker(site, None).run_once()
    assert lk.get_reservation(site, held.id).state.value == "held"
    clock.advance(seconds=1)
    with caplog.at_level("INFO", logger="lotkeeper.worker"):
        worker(site, None).run_once()
    assert lk.get_reservation(site, held.id).state.value == "expired"
    assert f"hold expired: reservation {held.id}, its spot is free again" in caplog.messages

    grace = site.tariff.no_show_grace
    clock.set(booked.starts_at + grace)
    worker(site, None).run_once()
    assert lk.get_reservation(site, booked.id).state.value == "confirmed"
    clock.advance(seconds=1)
    caplog.clear()
    with caplog.at_level("INFO", logger="lotkeeper.worker"):
        worker(site, None).run_once()
    assert lk.get_reservation(site, booked.id).state.value == "no_show"
    assert f"no-show: reservation {booked.id} released" in caplog.messages


def test_with_smtp_down_one_try_per_pass_the_other_notices_wait_their_turn(
    site: Site, clock: FixedClock
) -> None:
    closed = free_port()
    with_smtp(site, closed)
    for _ in range(3):
        helpers.paid_reservation(site, start_in_hours=1)
    clock.advance(minutes=40)
    outcomes = worker(site, closed).run_once()
    assert outcomes.done["deliver_notices"] == 1  # one failed try; two handed back
    attempts = sorted(n.attempts for n in list_notifications(site))
    assert attempts == [0, 0, 1]
    assert all(n.state == "pending" for n in list_notifications(site))


def test_a_reservation_moved_at_check_in_is_told_where_its_spot_is(
    make_site: SiteFactory, clock: FixedClock, inbox: tuple[Inbox, int]
) -> None:
    from conftest import make_layout

    box, port = inbox
    site = with_smtp(make_site(make_layout(small=1, medium=1), max_stay_minutes=120), port)
    walk_in = lk.enter(site, "small")  # 1S01 until 11:00, and still there then
    booked = helpers.paid_reservation(site, start_in_hours=2)  # 1S01 from 11:00
    assert booked.spot_label == walk_in.spot_label
    clock.set(booked.starts_at)
    ticket = lk.check_in(site, booked.code)
    worker(site, port).run_once()
    moved = [m for m in box.messages if "your spot is" in str(m["Subject"])]
    assert [str(m["Subject"]) for m in moved] == [
        f"Reservation {booked.short_code}: your spot is {ticket.spot_label}"
    ]
    assert ticket.spot_label != booked.spot_label


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_starttls_with_a_login_to_a_server_of_a_private_ca(site: Site, tmp_path: Path) -> None:
    import ssl

    import trustme
    from aiosmtpd.smtp import AuthResult, LoginPassword
    from pydantic import SecretStr

    from core.mail import compose
    from core.services.notifications import DeliveryFailed, Notice, NoticeKind

    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mail", b"s3cret")
        return AuthResult(success=ok, handled=False)

    box, port = Inbox(), free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        settings = SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="starttls",
            user="mail",
            password="s3cret",  # type: ignore[arg-type]
            ca_file=ca_file,
        )
        notice = Notice(
            id=1,
            kind=NoticeKind.KIOSK_SILENT,
            subject="lane-1 0",
            channel="email",
            recipient="ops@example.com",
            payload={"device": "lane-1", "since": "09:00"},
            state="pending",
            attempts=0,
            next_attempt_at=site.clock.now(),
            sent_at=None,
            last_error="",
        )
        SmtpMailer(settings, site).send(compose(notice, site, settings.sender))
        assert box.subjects() == ["lane-1 is silent"]
        wrong = settings.model_copy(update={"password": SecretStr("guess")})
        with pytest.raises(DeliveryFailed, match="refused the login"):
            SmtpMailer(wrong, site).send(compose(notice, site, settings.sender))
        untrusted = settings.model_copy(update={"ca_file": None})
        with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):
            SmtpMailer(untrusted, site).send(compose(notice, site, settings.sender))
        assert len(box.messages) == 1
    finally:
        controller.stop()
