"""Checks shared by tests: read the raw tables to judge the engine."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from core.site import Site
from core.storage.models import Claim


def overlapping_claims(site: Site) -> list[tuple[int, int]]:
    """Pairs of live claims on one spot whose windows overlap (must be none)."""
    now = site.clock.now()
    a, b = aliased(Claim), aliased(Claim)

    def live(c: type[Claim]) -> object:
        return (c.cancelled_at.is_(None)) & ((c.expires_at.is_(None)) | (c.expires_at > now))

    query = (
        select(a.id, b.id)
        .join(
            b,
            (a.spot_id == b.spot_id)
            & (a.id < b.id)
            & (a.starts_at < b.ends_at)
            & (b.starts_at < a.ends_at),
        )
        .where(a.site_id == site.id, live(a), live(b))
    )  # type: ignore[arg-type]
    return [tuple(row) for row in site.db.read(lambda s: s.execute(query).all())]  # type: ignore[misc]


def pay_and_exit(site: Site, code: str) -> None:
    """Pay what the ticket owes (simulated reader), then exit."""
    from core import services as lk

    if lk.ticket_status(site, code).due:
        paying = lk.pay_ticket(site, code)
        assert lk.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    lk.exit(site, code)


def paid_reservation(site: Site, start_in_hours: float = 26, hours: float = 2) -> Any:
    """A confirmed, paid (simulated card) reservation of a small spot for a
    new account, starting `start_in_hours` from the site's now."""
    from datetime import timedelta

    from core import services as lk

    account = lk.create_account(site, "Bea", f"bea{secrets.token_hex(3)}@example.com", "pass words")
    start = site.clock.now() + timedelta(hours=start_in_hours)
    held = lk.hold(site, account.id, "small", start, start + timedelta(hours=hours))
    payment = lk.pay_reservation(site, held.id)
    assert lk.wait_for_payment(site, payment.id, sleep=lambda _: None).succeeded
    return lk.get_reservation(site, held.id)
