"""The console as the attendant sees it, pinned as SVG snapshots at 160x50:
the 450-spot demo lot's grid, and the alert panel with a device fault and a
forged ticket. Refresh with `--snapshot-update` after a deliberate change."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SiteFactory
from test_attendant import log_in, settle
from textual.widgets import Input

from attendant.app import AttendantApp
from core import services as lk
from core.config import asset_path
from core.errors import TicketError
from core.layout import read_layout
from core.services.staff import add_staff

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def console(make_site: SiteFactory) -> tuple[AttendantApp, Any]:
    site = make_site(read_layout(asset_path("lot.toml")))
    add_staff(site, "Ana", "attendant", "1357")
    return AttendantApp(site, idle_clock=lambda: 0.0), site


def signed_in() -> Any:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await settle(app, pilot)
        await log_in(app, pilot, "Ana", "1357")
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await settle(app, pilot)

    return run_before


def test_grid_of_the_demo_lot(make_site: SiteFactory, snap_compare: Any) -> None:
    app, site = console(make_site)
    for plate in ("KLX 481", "AB 123", None):
        lk.enter(site, "medium", plate=plate)
    assert snap_compare(app, terminal_size=(160, 50), run_before=signed_in())


def test_alert_panel(make_site: SiteFactory, snap_compare: Any) -> None:
    app, site = console(make_site)
    lk.record_device_fault(site, "lane-2", "printer", "paper out")
    lk.enter(site, "small")
    # (A code that is not a ticket at all: a forged one's text would differ
    # with each database's random key salt.)
    with pytest.raises(TicketError):
        lk.exit(site, "NOT-A-TICKET", kiosk="exit-1")
    assert snap_compare(app, terminal_size=(160, 50), run_before=signed_in())
