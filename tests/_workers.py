"""Code run in separate OS processes by the hammer tests (spawned, so each
has its own interpreter, engine and connection pool, like separate kiosks)."""

from __future__ import annotations

import random
import threading
import traceback
from datetime import datetime
from typing import Any

from core import services as lk
from core.clock import FixedClock
from core.config import load_settings
from core.errors import LotFull, TicketAlreadyUsed
from core.site import open_site


def open_worker_site(url: str, data_dir: str, secret: str, now_iso: str) -> Any:
    """The worker's own site, at the test's instant: the test judges the
    result with its fixed clock, so the workers must not read the wall clock."""
    settings = load_settings(
        database={"url": url, "auto_migrate": False},
        paths={"data_dir": data_dir},
        tickets={"secret": secret},
    )
    return open_site(settings, clock=FixedClock(datetime.fromisoformat(now_iso)))


def enter_many(
    url: str, data_dir: str, secret: str, now_iso: str, count: int, barrier: Any, results: Any
) -> None:
    codes: list[str] = []
    full = 0
    errors: list[str] = []
    try:
        site = open_worker_site(url, data_dir, secret, now_iso)
        barrier.wait()
        for i in range(count):
            try:
                codes.append(lk.enter(site, "small", kiosk=f"hammer-{i}").code)
            except LotFull:
                full += 1
            except Exception:
                errors.append(traceback.format_exc())
        site.close()
    except Exception:
        errors.append(traceback.format_exc())
    results.put((codes, full, errors))


def exit_all(
    url: str,
    data_dir: str,
    secret: str,
    now_iso: str,
    codes: list[str],
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    exited: list[str] = []
    used = 0
    errors: list[str] = []
    try:
        site = open_worker_site(url, data_dir, secret, now_iso)
        order = list(codes)
        random.Random(seed).shuffle(order)
        barrier.wait()
        for code in order:
            try:
                lk.exit(site, code, kiosk=f"exit-{seed}")
                exited.append(code)
            except TicketAlreadyUsed:
                used += 1
            except Exception:
                errors.append(traceback.format_exc())
        site.close()
    except Exception:
        errors.append(traceback.format_exc())
    results.put((exited, used, errors))


def first_start(data_dir: str, barrier: Any, results: Any) -> None:
    """Open the embedded default at the same moment as other processes."""
    errors: list[str] = []
    total = 0
    try:
        barrier.wait()
        site = open_site(load_settings(paths={"data_dir": data_dir}))
        total = lk.availability(site).total
        site.close()
    except Exception:
        errors.append(traceback.format_exc())
    results.put((total, errors))


class _DiesAfterApproval:
    """Wraps the site's provider: once the reader approves, it reports that to
    the test and hangs, so the ledger is never settled; the test then kills
    this process with SIGKILL, as a power cut would."""

    def __init__(self, inner: Any, events: Any) -> None:
        self._inner = inner
        self._events = events
        self.name = inner.name
        self.simulated = inner.simulated

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def poll(self, request: Any, provider_ref: str) -> Any:
        state = self._inner.poll(request, provider_ref)
        if state.status == "succeeded":
            self._events.put(("approved", provider_ref))
            threading.Event().wait()  # until killed
        return state


def pay_then_die(
    url: str,
    data_dir: str,
    secret: str,
    payments: dict[str, Any],
    now_iso: str,
    code: str,
    events: Any,
    go: Any,
) -> None:
    """Start paying `code`, wait for the test to present a card, then poll:
    the approval hangs this process until the test kills it."""
    try:
        settings = load_settings(
            database={"url": url, "auto_migrate": False},
            paths={"data_dir": data_dir},
            tickets={"secret": secret},
            payments=payments,
        )
        site = open_site(settings, clock=FixedClock(datetime.fromisoformat(now_iso)))
        site.use_payment_provider(_DiesAfterApproval(site.payments, events))
        payment = lk.pay_ticket(site, code, kiosk="pay-1")
        events.put(("started", payment.id))
        go.get(timeout=60)
        lk.poll_payment(site, payment.id)
        events.put(("settled", payment.id))  # must never happen
    except Exception:
        events.put(("error", traceback.format_exc()))


def enter_and_exit(
    url: str, data_dir: str, secret: str, now_iso: str, plate: str, barrier: Any, results: Any
) -> None:
    """A kiosk in another process: one car in (with `plate`), one car in and out."""
    errors: list[str] = []
    try:
        site = open_worker_site(url, data_dir, secret, now_iso)
        barrier.wait()
        lk.enter(site, "small", plate=plate, kiosk="lane-7")
        other = lk.enter(site, "small", kiosk="lane-7")
        lk.exit(site, other.code, kiosk="lane-7")
        site.close()
    except Exception:
        errors.append(traceback.format_exc())
    results.put(errors)
