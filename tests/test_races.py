"""Every state change decides by a conditional write of its row: one race
test per transition, on SQLite and MariaDB, each shown to fail when its
condition is removed (`plant`). The harness is `race.py`: spawned OS
processes released together by a barrier, each making one call."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import SiteFactory, make_layout
from helpers import paid_reservation
from race import Round, call, race
from sqlalchemy import func, select

from core import services as lk
from core.site import Site
from core.storage.models import EventRow, Stay

LANES = 4
pytestmark = pytest.mark.slow


def _stays_of(site: Site, reservation_id: int) -> int:
    return site.db.read(
        lambda s: s.scalar(
            select(func.count()).select_from(Stay).where(Stay.reservation_id == reservation_id)
        )
    )


def _events(site: Site, kind: str) -> int:
    return site.db.read(
        lambda s: s.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == kind))
    )


def _check_in_race(
    site: Site, db_url: str, tmp_path: Path, rounds: int, plant: str | None = None
) -> tuple[list[Round], list[int]]:
    booked = [paid_reservation(site, start_in_hours=0.25) for _ in range(rounds)]
    at = booked[0].starts_at
    results = race(
        db_url,
        tmp_path,
        [[call("check_in", b.code)] * LANES for b in booked],
        now=at,
        plant=plant,
    )
    return results, [b.id for b in booked]


def test_one_reservation_code_at_four_lanes_admits_one_car(
    make_site: SiteFactory, db_url: str, tmp_path: Path
) -> None:
    site = make_site(make_layout(small=10))
    results, ids = _check_in_race(site, db_url, tmp_path, rounds=3)
    for result, reservation_id in zip(results, ids, strict=True):
        assert len(result.won()) == 1
        assert result.errors() == {"ReservationError": LANES - 1}
        assert all("already used" in o.message for o in result.refused())
        assert _stays_of(site, reservation_id) == 1
        assert lk.get_reservation(site, reservation_id).stay_id == result.won()[0].value
    assert _events(site, "entry") == 3


@pytest.mark.mysql
def test_check_in_race_fails_without_its_condition(
    make_site: SiteFactory, db_url: str, tmp_path: Path
) -> None:
    """SQLite runs one writer at a time, so a check in Python inside the
    write would hold there; on MariaDB it admits more than one car."""
    if db_url.startswith("sqlite"):
        pytest.skip("one writer at a time: the race needs MariaDB")
    site = make_site(make_layout(small=40))
    _, ids = _check_in_race(site, db_url, tmp_path, rounds=5, plant="check_in_without_state")
    assert max(_stays_of(site, i) for i in ids) > 1
