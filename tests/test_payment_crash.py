"""A paying kiosk killed with SIGKILL after the reader approved and before
the ledger was settled: the reconciler finishes it, with exactly one
successful payment and the stay paid. Run with the simulated reader and
with Stripe Terminal (the real SDK against the loopback fake), on SQLite and
MariaDB. Also: a whole Stripe Terminal payment through the services."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _workers import pay_then_die
from conftest import SECRET, SiteFactory, make_layout
from fake_stripe import FakeStripe
from sqlalchemy import func, select

from core import services as lk
from core.clock import FixedClock
from core.payments.provider import PaymentStatus
from core.payments.stripe_terminal import StripeTerminalProvider
from core.site import Site
from core.storage.models import Payment as PaymentRow
from core.storage.models import SimulatedCharge, Stay

DECLINED = "4000000000000002"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


def stripe_settings(fake: FakeStripe) -> dict[str, Any]:
    return {
        "provider": "stripe-terminal",
        "stripe_api_key": fake.api_key,
        "stripe_reader_id": fake.reader_id,
        "stripe_api_base": fake.url,
    }


def use_stripe(site: Site, fake: FakeStripe) -> None:
    site.use_payment_provider(
        StripeTerminalProvider(fake.api_key, fake.reader_id, api_base=fake.url)
    )


def ledger(site: Site) -> list[tuple[str, str, int]]:
    rows = site.db.read(
        lambda s: s.execute(
            select(PaymentRow.kind, PaymentRow.status, PaymentRow.amount).order_by(PaymentRow.id)
        ).all()
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["simulated", "stripe-terminal"])
def test_kill_9_after_approval_is_settled_once_by_the_reconciler(
    provider: str,
    make_site: SiteFactory,
    db_url: str,
    tmp_path: Path,
    clock: FixedClock,
    fake: FakeStripe,
) -> None:
    site = make_site(make_layout(small=2))
    settings: dict[str, Any] = {}
    if provider == "stripe-terminal":
        use_stripe(site, fake)
        settings = stripe_settings(fake)
    ticket = lk.enter(site, "small")
    clock.advance(hours=1)

    ctx = multiprocessing.get_context("spawn")
    events, go = ctx.Queue(), ctx.Queue()
    kiosk = ctx.Process(
        target=pay_then_die,
        args=(db_url, str(tmp_path), SECRET, settings, clock.now().isoformat(), ticket.code),
        kwargs={"events": events, "go": go},
    )
    kiosk.start()
    try:
        kind, detail = events.get(timeout=60)
        assert kind == "started", detail
        if provider == "stripe-terminal":
            fake.present_card()  # the driver taps
        go.put("poll")
        kind, detail = events.get(timeout=60)
        assert kind == "approved", detail
    finally:
        os.kill(kiosk.pid or 0, signal.SIGKILL)
        kiosk.join(timeout=30)
    assert kiosk.exitcode == -signal.SIGKILL
    assert ledger(site) == [("charge", "pending", 300)]

    clock.advance(minutes=10)
    report = lk.reconcile(site)
    assert [p.status for p in report.settled] == [PaymentStatus.SUCCEEDED]
    assert ledger(site) == [("charge", "succeeded", 300)]
    paid = site.db.read(lambda s: s.scalar(select(Stay.paid_amount).where(Stay.id == ticket.id)))
    assert paid == 300
    if provider == "stripe-terminal":
        assert len(fake.successful_charges()) == 1
        assert len(fake.payment_intents) == 1
    else:
        charges = site.db.read(
            lambda s: s.scalar(select(func.count()).select_from(SimulatedCharge))
        )
        assert charges == 1
    assert lk.reconcile(site).checked == 0
    lk.exit(site, ticket.code)


def test_a_stripe_terminal_payment_through_the_services(
    site: Site, clock: FixedClock, fake: FakeStripe
) -> None:
    use_stripe(site, fake)
    ticket = lk.enter(site, "medium")
    clock.advance(hours=2)
    declined = lk.pay_ticket(site, ticket.code, kiosk="pay-1")
    assert declined.status is PaymentStatus.PENDING and not declined.simulated
    fake.present_card(DECLINED)
    failed = lk.poll_payment(site, declined.id)
    assert (failed.status, failed.failure_code) == (PaymentStatus.FAILED, "card_declined")

    payment = lk.pay_ticket(site, ticket.code, kiosk="pay-1")
    assert "card" in (lk.poll_payment(site, payment.id).reader_message or "")
    fake.present_card()
    done = lk.poll_payment(site, payment.id)
    assert (done.status, done.amount, done.card_brand, done.card_last4) == (
        PaymentStatus.SUCCEEDED,
        800,
        "visa",
        "4242",
    )
    assert len(fake.successful_charges()) == 1
    lk.exit(site, ticket.code)

    refund = lk.refund_payment(site, done.id, 300, reason="slow exit barrier")
    assert refund.status is PaymentStatus.SUCCEEDED
    assert [r["amount"] for r in fake.refunds.values()] == [300]
