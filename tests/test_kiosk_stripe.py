"""The pay screen driving a Stripe Terminal reader through the real stripe
SDK, over HTTP, against `FakeStripe` on 127.0.0.1: approve, decline, the
reader timing out, and the driver pressing Cancel. Between polls the test
plays the driver (tapping a card) or lets the site clock run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe._http_client
from fake_stripe import FakeStripe
from sqlalchemy import select
from test_kiosk import press, run_kiosk, settle, shown

from core import services as lk
from core.clock import FixedClock
from core.domain import Ticket
from core.payments.stripe_terminal import StripeTerminalProvider
from core.site import Site
from core.storage.models import Payment
from kiosk import screens
from kiosk.app import KioskApp

VISA = "4242424242424242"
DECLINED = "4000000000000002"


@pytest.fixture(autouse=True)
def _no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def paying(site: Site, clock: FixedClock, fake: FakeStripe) -> Ticket:
    """A ticket two hours old ($6.00), on a site whose reader is Stripe's."""
    site.use_payment_provider(
        StripeTerminalProvider(fake.api_key, fake.reader_id, api_base=fake.url)
    )
    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    return ticket


async def to_reader(app: KioskApp, pilot: Any, ticket: Ticket) -> None:
    await press(app, pilot, "f5")
    await pilot.press(*ticket.short_code)
    await press(app, pilot, "enter")
    assert isinstance(app.screen, screens.FeeScreen)
    assert "To pay now: $6.00" in shown(app)
    await pilot.press("enter")  # pay by card: straight to the real reader


def ledger(site: Site) -> list[tuple[str, int]]:
    return site.db.read(
        lambda s: [(p.status, p.amount) for p in s.scalars(select(Payment).order_by(Payment.id))]
    )


def driver(action: Callable[[], object]) -> Callable[[float], None]:
    """A `payment_sleep` that does `action` once, while the reader waits."""
    done = []

    def sleep(_: float) -> None:
        if not done:
            done.append(action())

    return sleep


def test_a_card_approved_on_the_reader_prints_the_receipt(
    site: Site, fake: FakeStripe, paying: Ticket, tmp_path: Path
) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        await to_reader(app, pilot, paying)
        await settle(app, pilot)
        assert isinstance(app.screen, screens.ReceiptScreen)
        text = shown(app)
        assert "Paid $6.00 with Visa •••• 4242" in text and "SIMULATED" not in text
        assert "leave by" in text

    run_kiosk(site, tmp_path, scenario, payment_sleep=driver(lambda: fake.present_card(VISA)))
    assert ledger(site) == [("succeeded", 600)]
    assert len(fake.successful_charges()) == 1
    assert lk.ticket_status(site, paying.code).due == 0


def test_a_declined_card_says_so_and_offers_to_try_again(
    site: Site, fake: FakeStripe, paying: Ticket, tmp_path: Path
) -> None:
    async def scenario(app: KioskApp, pilot: Any) -> None:
        await to_reader(app, pilot, paying)
        await settle(app, pilot)
        assert isinstance(app.screen, screens.DeclinedScreen)
        assert "declined" in shown(app).lower() and "Try again" in shown(app)

    run_kiosk(site, tmp_path, scenario, payment_sleep=driver(lambda: fake.present_card(DECLINED)))
    assert ledger(site) == [("failed", 600)]
    assert fake.successful_charges() == []


def test_a_reader_timeout_cancels_the_reader_action_and_says_so(
    site: Site, clock: FixedClock, fake: FakeStripe, paying: Ticket, tmp_path: Path
) -> None:
    timeout = site.settings.payments.reader_timeout_seconds

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await to_reader(app, pilot, paying)
        await settle(app, pilot)
        assert isinstance(app.screen, screens.DeclinedScreen)
        assert "timed out" in shown(app) and "not been charged" in shown(app)

    run_kiosk(
        site, tmp_path, scenario, payment_sleep=driver(lambda: clock.advance(seconds=timeout))
    )
    assert ledger(site) == [("cancelled", 600)]
    cancel = f"/v1/terminal/readers/{fake.reader_id}/cancel_action"
    assert fake.count("POST", cancel) == 1
    assert fake.authorized_charges() == []


def test_cancel_on_the_reader_screen_stops_the_reader_and_charges_nothing(
    site: Site, fake: FakeStripe, paying: Ticket, tmp_path: Path
) -> None:
    waiting, cancelled = threading.Event(), threading.Event()

    def sleep(_: float) -> None:
        # The reader is waiting for a card; the driver presses Cancel instead.
        waiting.set()
        cancelled.wait(timeout=30)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await to_reader(app, pilot, paying)
        assert await asyncio.to_thread(waiting.wait, 30)
        assert isinstance(app.screen, screens.ReaderScreen)
        await pilot.press("escape")
        cancel = app.screen.query_one("#cancel")
        for _ in range(100):  # until the key has been handled (turns, not time)
            if cancel.disabled:
                break
            await pilot.pause()
        assert cancel.disabled and "Cancelling" in shown(app)
        cancelling = [w for w in app.workers if w.group == "cancel"]
        if cancelling:  # (an empty list would mean every worker)
            await app.workers.wait_for_complete(cancelling)
        cancelled.set()
        await settle(app, pilot)
        assert isinstance(app.screen, screens.DeclinedScreen)
        assert "cancelled" in shown(app).lower()

    run_kiosk(site, tmp_path, scenario, payment_sleep=sleep)
    assert ledger(site) == [("cancelled", 600)]
    assert fake.count("POST", f"/v1/terminal/readers/{fake.reader_id}/cancel_action") == 1
    assert fake.authorized_charges() == []
