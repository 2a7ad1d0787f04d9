"""A walk-in's ticket added to an account at the kiosk, driven with Pilot:
scanned or typed, checked like the pay station checks it; and sign-in
failures at a kiosk count against that kiosk only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from test_kiosk import press, run_kiosk, shown
from test_kiosk_accounts import PASSWORD, sign_in, type_text

from core import services as lk
from core.site import Site
from core.storage.models import SignInThrottle
from kiosk import account as screens_account
from kiosk import screens
from kiosk.app import KioskApp


def test_a_driver_adds_a_walk_in_ticket_by_its_code_and_sees_the_stay(
    site: Site, tmp_path: Path
) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)
    ticket = lk.enter(site, "small", plate="KLX 481")
    forged = ticket.short_code[:-1] + ("B" if ticket.short_code[-1] == "A" else "A")

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await sign_in(app, pilot)
        await press(app, pilot, "f6")
        assert isinstance(app.screen, screens_account.TicketsScreen), shown(app)
        await type_text(app, pilot, forged)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.MessageScreen)
        assert "does not check out" in shown(app)
        await press(app, pilot, "enter")
        await type_text(app, pilot, ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens_account.TicketsScreen), shown(app)
        assert ticket.spot_label in shown(app) and str(ticket.id) in shown(app)

    run_kiosk(site, tmp_path, scenario)
    ada = lk.sign_in(site, "ada@example.com", PASSWORD)
    assert [s.ticket_id for s in lk.account_spots(site, ada.id).stays] == [ticket.id]
    added = [e for e in lk.recent_events(site).events if e.kind == "ticket_added"]
    assert [(e.ticket_id, e.source) for e in added] == [(ticket.id, "lane-1")]


def test_sign_in_failures_at_a_kiosk_count_against_that_kiosk(site: Site, tmp_path: Path) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f7")
        await press(app, pilot, "f1")
        await type_text(app, pilot, "ada@example.com")
        await press(app, pilot, "tab")
        await type_text(app, pilot, "not her password")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.MessageScreen)

    run_kiosk(site, tmp_path, scenario)
    clients = site.db.read(
        lambda s: s.scalars(
            select(SignInThrottle.client).where(SignInThrottle.email == "ada@example.com")
        ).all()
    )
    assert "lane-1" in clients
