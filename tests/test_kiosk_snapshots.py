"""What drivers see, pinned as SVG snapshots (pytest-textual-snapshot) at
80x24: the start screen, a ticket just issued, the fee to pay, and a full
size. Times come from the fixed clock; the printer is the preview one.
After a deliberate change: `pytest tests/test_kiosk_snapshots.py
--snapshot-update`, then look at the new SVGs before committing them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SiteFactory, make_layout
from test_kiosk import settle
from textual.widgets import Input

from core import services as lk
from core.clock import FixedClock
from core.devices.gate import LoggedGate
from core.devices.printer import open_printer
from core.domain import Size, Ticket
from core.site import Site
from kiosk import screens
from kiosk.app import KioskApp

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def kiosk(site: Site, tmp_path: Path) -> KioskApp:
    return KioskApp(
        site,
        kiosk_id="lane-1",
        staff_pin="2468",
        printer=open_printer("preview", tmp_path / "printed"),
        gate=LoggedGate(),
        idle_clock=lambda: 0.0,
    )


def showing(make_screen: Any = None, keys: tuple[str, ...] = ()) -> Any:
    """A `run_before` that opens a screen or presses keys, and waits until
    the screen is still."""

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await settle(app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(app, pilot)
        if make_screen is not None:
            await app.push_screen(make_screen())
            await settle(app, pilot)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await settle(app, pilot)

    return run_before


def test_start_screen(site: Site, tmp_path: Path, snap_compare: Any) -> None:
    lk.enter(site, "medium")
    assert snap_compare(kiosk(site, tmp_path), run_before=showing())


def test_ticket_issued_screen(
    site: Site, clock: FixedClock, tmp_path: Path, snap_compare: Any
) -> None:
    now = clock.now()
    ticket = Ticket(
        id=1042,
        code="LK1.K1.1042.1795338000.ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
        short_code="1042-KX7PQ2",
        spot_label="2M-14",
        level="Level 2",
        size=Size.MEDIUM,
        spot_size=Size.MEDIUM,
        plate="KLX 481",
        entered_at=now,
        max_stay_until=now + timedelta(hours=24),
    )
    app = kiosk(site, tmp_path)
    assert snap_compare(app, run_before=showing(lambda: screens.TicketScreen(ticket, True, None)))


def test_fee_screen(site: Site, clock: FixedClock, tmp_path: Path, snap_compare: Any) -> None:
    ticket = lk.enter(site, "small", plate="KLX 481")
    clock.advance(hours=2, minutes=40)
    status = lk.ticket_status(site, ticket.code)
    app = kiosk(site, tmp_path)
    assert snap_compare(app, run_before=showing(lambda: screens.FeeScreen(ticket.code, status)))


def test_lot_full_screen(make_site: SiteFactory, tmp_path: Path, snap_compare: Any) -> None:
    site = make_site(make_layout(small=1))
    lk.enter(site, "small")
    app = kiosk(site, tmp_path)
    assert snap_compare(app, run_before=showing(keys=("f1", "f2")))
