"""Checks shared by tests: read the raw tables to judge the engine."""

from __future__ import annotations

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
