"""Availability counts and the spot snapshot agree with what entry does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import SiteFactory, make_layout
from test_entry import claim_directly

from core import services as lk
from core.clock import FixedClock
from core.domain import ClaimKind, Size, SpotStatus
from core.errors import LotFull
from core.site import Site


def test_availability_per_size(site: Site) -> None:
    lk.enter(site, "small")
    lk.enter(site, "large")
    avail = lk.availability(site)
    rows = {s.size: (s.total, s.free, s.occupied, s.free_fitting) for s in avail.sizes}
    assert rows == {
        Size.SMALL: (2, 1, 1, 4),
        Size.MEDIUM: (3, 3, 0, 3),
        Size.LARGE: (1, 0, 1, 0),
    }
    assert avail.total == 6 and avail.free == 4


def test_counts_always_add_up(make_site: SiteFactory) -> None:
    site = make_site(make_layout(small=2, medium=1))
    claim_directly(site, ClaimKind.HOLD, timedelta(hours=1), 1, expires=timedelta(minutes=5))
    lk.enter(site, "small")
    small = lk.availability(site).for_size("small")
    assert (small.free, small.occupied, small.held) == (0, 1, 1)
    for size in lk.availability(site).sizes:
        assert (
            size.free + size.occupied + size.held + size.reserved + size.out_of_service
            == size.total
        )


def test_free_fitting_matches_entry(make_site: SiteFactory) -> None:
    site = make_site(make_layout(small=1, medium=1, large=1))
    for _ in range(3):
        assert lk.availability(site).for_size("small").can_enter
        lk.enter(site, "small")
    assert not any(s.can_enter for s in lk.availability(site).sizes)
    with pytest.raises(LotFull):
        lk.enter(site, "small")


def test_snapshot_shows_every_spot_with_its_state(site: Site) -> None:
    ticket = lk.enter(site, "medium", plate="XY 9")
    snap = lk.snapshot(site)
    assert len(snap.spots) == 6
    occupied = [s for s in snap.spots if s.status is SpotStatus.OCCUPIED]
    assert [(s.label, s.ticket_id, s.plate) for s in occupied] == [
        (ticket.spot_label, ticket.id, "XY 9")
    ]
    assert occupied[0].since == ticket.entered_at
    assert {s.status for s in snap.spots} == {SpotStatus.FREE, SpotStatus.OCCUPIED}
    labels = [s.label for s in snap.spots]
    assert labels == ["1S01", "1S02", "1M01", "1M02", "1M03", "1L01"]


def test_demo_lot_has_450_spots_on_3_levels(make_site: SiteFactory) -> None:
    from core.config import asset_path
    from core.layout import read_layout

    layout = read_layout(asset_path("lot.toml"))
    site = make_site(layout)
    snap = lk.snapshot(site)
    assert len(snap.spots) == 450
    assert sorted({s.level for s in snap.spots}) == ["Level 1", "Level 2", "Level 3"]
    assert lk.availability(site).total == 450


def test_occupancy_history_counts_the_cars_inside_at_each_instant(
    site: Site, clock: FixedClock
) -> None:
    from helpers import pay_and_exit

    first = lk.enter(site, "small")  # at 0 h
    clock.advance(hours=1)
    lk.enter(site, "small")  # at 1 h
    clock.advance(hours=1)
    pay_and_exit(site, first.code)  # at 2 h
    clock.advance(hours=2)  # now: 4 h; the second car is still in

    assert lk.occupancy_history(site, hours=4, points=5) == [1, 2, 1, 1, 1]
    # An instant exactly at an entry counts the car; at its exit, not.
    assert lk.occupancy_history(site, hours=2, points=3) == [1, 1, 1]
    assert lk.occupancy_history(site, hours=24, points=2) == [0, 1]
    # Steps that are no whole number of microseconds still end exactly at now.
    lk.enter(site, "small")
    assert lk.occupancy_history(site, hours=24, points=48)[-1] == 2
    with pytest.raises(ValueError):
        lk.occupancy_history(site, hours=24, points=1)
