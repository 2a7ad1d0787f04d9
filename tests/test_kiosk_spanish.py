"""A Spanish-speaking driver's fees, receipts and times, driven with Pilot:
every fee line, time and engine message reads in Spanish, none in English.
UI only, so SQLite only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.table import Table
from test_kiosk import press, run_kiosk, shown, tcp_printer

from core import services as lk
from core.clock import FixedClock
from core.site import Site
from kiosk import screens
from kiosk.app import KioskApp
from kiosk.widgets import FeeBreakdown

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ENGLISH = (" on ", "Nov", "Sun", "Parking", "Overstay", "Already paid", "Lost ticket", "car)")


def fee_lines(app: KioskApp) -> list[str]:
    """The fee lines' labels on screen, each whole (as shown they wrap
    beside their amounts), without the row of what is paid or to pay."""
    table = app.screen.query_one(FeeBreakdown).content
    assert isinstance(table, Table)
    labels = [str(cell) for cell in table.columns[0].cells]
    return labels[: labels.index("")] if "" in labels else labels[:-1]


def test_a_spanish_driver_pays_a_reservation_s_overstay_and_reads_every_line_in_spanish(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from test_reservations import reserve

    booked = reserve(site, clock, start_hours=1, hours=2)  # 10:00 to 12:00 on 22 Nov
    clock.advance(minutes=56)  # checks in at 09:56
    ticket = lk.check_in(site, booked.code)
    clock.advance(hours=3, minutes=4)  # 13:00, an hour past the window

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f9")  # Español
        await press(app, pilot, "f5")
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        assert isinstance(app.screen, screens.FeeScreen)
        text = shown(app)
        assert "Entrada: 09:56 del 22 nov." in text
        assert "Su reserva terminó a las 12:00 del 22 nov." in text
        assert fee_lines(app) == [
            "Aparcamiento 1 h tras el fin de la reserva (coche pequeño), "
            "entrada a las 09:56 del 22 nov",
            "Recargo por exceso de estancia (pasado el fin de la reserva a las 12:00 del 22 nov)",
        ]
        assert [english for english in ENGLISH if english in text] == []
        await press(app, pilot, "enter")  # pay by card
        await press(app, pilot, "f1")  # approved
        assert isinstance(app.screen, screens.ReceiptScreen)
        assert fee_lines(app)[1].startswith("Recargo por exceso de estancia")
        assert [english for english in ENGLISH if english in shown(app)] == []

    run_kiosk(site, tmp_path, scenario)


def test_a_spanish_lost_ticket_receipt_says_what_was_already_paid_in_spanish(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from fake_printer import FakePrinter

    ticket = lk.enter(site, "small")  # 09:00
    clock.advance(minutes=20)
    earlier = lk.pay_ticket(site, ticket.code)
    lk.wait_for_payment(site, earlier.id, sleep=lambda _: None)  # $1.50
    clock.advance(hours=1)
    # The driver then lost the ticket; the lane takes the lost-ticket fee.
    lost = lk.pay_lost_ticket(site, ticket.id, kiosk="lane-1")
    lost = lk.wait_for_payment(site, lost.id, sleep=lambda _: None)

    with FakePrinter() as fake:

        async def scenario(app: KioskApp, pilot: Any) -> None:
            await press(app, pilot, "f9")  # Español
            await app.push_screen(screens.ReceiptScreen(lost, screens.Purchase()))
            await press(app, pilot)
            assert fee_lines(app) == [
                "Ticket perdido (aparcamiento 1 h 20 min (coche pequeño), "
                "entrada a las 09:00 del 22 nov costaría $4.50)",
                "Ya pagado",
            ]
            text = shown(app)
            assert "Pagado ahora: $23.50" in text
            assert [english for english in ENGLISH if english in text] == []

        run_kiosk(site, tmp_path, scenario, printer=tcp_printer(fake, tmp_path))
        assert fake.wait_for_cuts(1)
        printed = " ".join(fake.text().split("RECIBO")[1].split())

    assert "Ticket perdido (aparcamiento 1 h 20" in printed and "Ya pagado -$1.50" in printed
    assert "entrada a las 09:00 del 22 nov" in printed
    assert [english for english in ENGLISH if english in printed] == []


def test_a_used_ticket_says_when_it_left_in_spanish(
    site: Site, clock: FixedClock, tmp_path: Path
) -> None:
    from helpers import pay_and_exit

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    pay_and_exit(site, ticket.code)  # left at 11:00

    async def scenario(app: KioskApp, pilot: Any) -> None:
        await press(app, pilot, "f9")  # Español
        await press(app, pilot, "f6")  # leave
        await pilot.press(*ticket.short_code)
        await press(app, pilot, "enter")
        text = shown(app)
        assert "Este ticket ya se usó para salir a las 11:00 del 22 nov." in text
        assert [english for english in ENGLISH if english in text] == []

    run_kiosk(site, tmp_path, scenario)
