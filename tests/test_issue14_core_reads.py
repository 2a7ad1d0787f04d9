"""Issue 14: what reads show. An expired hold is "expired" with no worker
running; a 422 for a past start names the field; reports print site time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from test_api import sign_up
from test_reservations import account, window

from api.app import create_app
from core import services as lk
from core.clock import FixedClock
from core.services.reservations import ReservationState
from core.services.shifts import close_shift, day_report, open_shift
from core.services.staff import add_staff
from core.site import Site


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site, tail_seconds=0.05)) as http:
        yield http


def test_an_expired_hold_reads_as_expired_before_the_worker_tidies_it(
    site: Site, clock: FixedClock
) -> None:
    who = account(site)
    held = lk.hold(site, who, "small", *window(clock, 26, 2))
    assert held.state is ReservationState.HELD
    clock.advance(minutes=5)
    assert lk.get_reservation(site, held.id).state is ReservationState.EXPIRED
    [listed] = lk.account_reservations(site, who).items
    assert listed.state is ReservationState.EXPIRED


def test_the_api_shows_an_expired_hold_as_expired(client: TestClient, clock: FixedClock) -> None:
    _, auth = sign_up(client)
    start = clock.now() + timedelta(hours=26)
    body = {
        "car_size": "small",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
    }
    held = client.post("/reserve_spot", json=body, headers=auth).json()
    clock.advance(minutes=6)
    got = client.get(f"/reservations/{held['id']}", headers=auth)
    assert got.json()["state"] == "expired"


def test_a_past_start_is_a_422_naming_start(client: TestClient, clock: FixedClock) -> None:
    _, auth = sign_up(client)
    start = clock.now() - timedelta(hours=2)
    body = {"car_size": "small", "start": start.isoformat(), "end": clock.now().isoformat()}
    refused = client.post("/reserve_spot", json=body, headers=auth)
    assert refused.status_code == 422
    assert refused.json()["field"] == "start" and refused.json()["code"] == "invalid_input"
    body = {"car_size": "small", "start": clock.now().isoformat(), "end": start.isoformat()}
    assert client.post("/reserve_spot", json=body, headers=auth).json()["field"] == "end"


def test_reports_print_their_period_in_site_time(site: Site, clock: FixedClock) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    opened = clock.now()
    open_shift(site, ana, 0)
    clock.advance(hours=2)
    rows = dict(close_shift(site, ana, 0).lines())
    assert rows["From"] == site.describe_time(opened, year=True)
    assert rows["To"] == site.describe_time(clock.now(), year=True)
    day = dict(day_report(site, clock.now().date()).lines())
    assert day["From"].startswith("00:00 on ")
    assert "T" not in day["From"] and "+" not in day["To"]
