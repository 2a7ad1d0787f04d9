"""Accessible and EV spots: given to drivers who ask for them, and to others
only when no ordinary fitting spot is free (walk-ins and reservations)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import SiteFactory

from core import services as lk
from core.clock import FixedClock
from core.domain import Need, Size
from core.errors import InvalidInput, LotFull, ReservationError
from core.layout import LotLayout, parse_layout
from core.site import Site

PASSWORD = "correct horse battery"


def flagged_layout() -> LotLayout:
    """Level 1: an accessible medium spot, an EV medium spot, two ordinary
    medium spots and one ordinary large spot."""
    spots: list[dict[str, Any]] = [
        {"label": "1A", "size": "medium", "accessible": True},
        {"label": "1E", "size": "medium", "ev": True},
        {"label": "1M1", "size": "medium"},
        {"label": "1M2", "size": "medium"},
        {"label": "1L1", "size": "large"},
    ]
    data = {"name": "Test lot", "levels": [{"name": "Level 1", "spots": spots}]}
    return parse_layout(data, "test layout")


@pytest.fixture
def lot(make_site: SiteFactory) -> Site:
    return make_site(flagged_layout())


def test_walk_ins_get_ordinary_spots_of_any_fitting_size_before_flagged_ones(lot: Site) -> None:
    labels = [lk.enter(lot, "medium").spot_label for _ in range(3)]
    # Both ordinary medium spots, then the large one: still not a flagged spot.
    assert sorted(labels[:2]) == ["1M1", "1M2"] and labels[2] == "1L1"
    # Only now, with no ordinary spot left, do flagged spots go to walk-ins.
    assert {lk.enter(lot, "medium").spot_label for _ in range(2)} == {"1A", "1E"}
    with pytest.raises(LotFull) as full:
        lk.enter(lot, "medium")
    assert full.value.need is None


def test_a_driver_who_asks_gets_only_a_spot_with_that_feature(lot: Site) -> None:
    assert lk.enter(lot, "medium", need="accessible").spot_label == "1A"
    assert lk.enter(lot, "small", need=Need.EV).spot_label == "1E"
    with pytest.raises(LotFull) as refused:
        lk.enter(lot, "medium", need="accessible", kiosk="entry-1")
    assert refused.value.size == "medium"
    assert refused.value.need == "accessible"
    assert str(refused.value) == "Sorry, no accessible spot is free for a medium car right now."
    event = next(e for e in lk.recent_events(lot).events if e.kind == "refused_full")
    assert event.data["need"] == "accessible"
    # Ordinary spots are still free, and a driver who does not ask gets one.
    assert lk.enter(lot, "medium").spot_label in ("1M1", "1M2")


def test_a_car_too_large_for_every_flagged_spot_is_refused_naming_the_need(lot: Site) -> None:
    with pytest.raises(LotFull, match="no EV charging spot is free for a large car"):
        lk.enter(lot, "large", need="ev")


def test_an_unknown_need_is_invalid_input(lot: Site, clock: FixedClock) -> None:
    with pytest.raises(InvalidInput):
        lk.enter(lot, "medium", need="valet")
    start = clock.now() + timedelta(hours=2)
    who = lk.create_account(lot, "Ada", "ada@example.com", PASSWORD).id
    with pytest.raises(InvalidInput):
        lk.hold(lot, who, "medium", start, start + timedelta(hours=1), need="VIP")
    assert lk.enter(lot, "medium", need="").spot_label in ("1M1", "1M2")  # blank: no need


def test_reservations_keep_flagged_spots_for_those_who_ask(lot: Site, clock: FixedClock) -> None:
    who = lk.create_account(lot, "Ada", "ada@example.com", PASSWORD).id
    start = clock.now() + timedelta(hours=2)
    end = start + timedelta(hours=1)
    asked = lk.hold(lot, who, "medium", start, end, need="accessible")
    assert asked.spot_label == "1A" and asked.need is Need.ACCESSIBLE
    assert lk.get_reservation(lot, asked.id).need is Need.ACCESSIBLE
    plain = [lk.hold(lot, who, "medium", start, end).spot_label for _ in range(3)]
    assert "1E" not in plain and lk.hold(lot, who, "medium", start, end).spot_label == "1E"
    with pytest.raises(ReservationError) as refused:
        lk.hold(lot, who, "medium", start, end, need="ev")
    assert refused.value.code == "no_spot"
    assert "no EV charging spot for a medium car" in str(refused.value)


def test_a_reservation_checking_in_past_an_overstayer_gets_a_spot_with_its_need(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    spots: list[dict[str, Any]] = [
        {"label": "1A1", "size": "medium", "accessible": True},
        {"label": "1A2", "size": "large", "accessible": True},
        {"label": "1M1", "size": "medium"},
    ]
    lot = make_site(parse_layout({"name": "T", "levels": [{"name": "L1", "spots": spots}]}, "t"))
    who = lk.create_account(lot, "Ada", "ada@example.com", PASSWORD).id
    walk_in = lk.enter(lot, "medium", need="accessible")
    assert walk_in.spot_label == "1A1"
    # Reserved to start as the walk-in's window ends: best fit is 1A1 itself.
    start = walk_in.max_stay_until
    held = lk.hold(lot, who, "medium", start, start + timedelta(hours=1), need="accessible")
    assert held.spot_label == "1A1"
    payment = lk.pay_reservation(lot, held.id)
    lk.wait_for_payment(lot, payment.id, sleep=lambda _: None)
    clock.advance(hours=24)  # the walk-in overstays in 1A1
    ticket = lk.check_in(lot, held.code)
    # Not the free ordinary 1M1: the driver asked for an accessible spot.
    assert ticket.spot_label == "1A2"


def test_availability_counts_free_flagged_spots_per_fitting_size(lot: Site) -> None:
    medium = lk.availability(lot).for_size(Size.MEDIUM)
    assert (medium.free_fitting, medium.free_fitting_accessible, medium.free_fitting_ev) == (
        5,
        1,
        1,
    )
    assert lk.availability(lot).for_size("large").free_fitting_accessible == 0
    lk.enter(lot, "medium", need="accessible")
    medium = lk.availability(lot).for_size(Size.MEDIUM)
    assert not medium.can_enter_with("accessible") and medium.can_enter_with("ev")
