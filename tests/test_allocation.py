"""Best-fit ranking on its own."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from core.allocation import Interval, SpotRow, gap_seconds, rank_spots

NOW = datetime(2026, 11, 22, 9, tzinfo=UTC)
END = NOW + timedelta(hours=2)


def spot(id_: int, size: int) -> SpotRow:
    return SpotRow(id_, f"S{id_}", "L1", size)


def hours(a: float, b: float) -> Interval:
    return Interval(NOW + timedelta(hours=a), NOW + timedelta(hours=b))


def test_smallest_fitting_size_first() -> None:
    ranked = rank_spots([spot(1, 3), spot(2, 2), spot(3, 1)], {}, 2, NOW, END, random.Random(1))
    assert [s.id for s in ranked] == [2, 1]


def test_overlapping_spots_are_excluded() -> None:
    claims = {1: [hours(1, 3)], 2: [hours(2, 4)]}
    ranked = rank_spots([spot(1, 1), spot(2, 1)], claims, 1, NOW, END, random.Random(1))
    assert [s.id for s in ranked] == [2]  # [2, 4) touches [0, 2) but does not overlap


def test_least_gap_first_then_untouched_spots() -> None:
    claims = {1: [hours(6, 8)], 2: [hours(3, 5)]}
    ranked = rank_spots([spot(3, 1), spot(1, 1), spot(2, 1)], claims, 1, NOW, END, random.Random(1))
    assert [s.id for s in ranked] == [2, 1, 3]


def test_gap_counts_both_sides() -> None:
    assert gap_seconds([hours(-1, 0), hours(3, 4)], NOW, END) == 3600
    assert gap_seconds([], NOW, END) is None


def test_ties_are_spread_between_kiosks() -> None:
    spots = [spot(i, 1) for i in range(20)]
    firsts = {rank_spots(spots, {}, 1, NOW, END, random.Random(seed))[0].id for seed in range(10)}
    assert len(firsts) > 5


def test_flagged_spots_rank_after_every_ordinary_fitting_spot() -> None:
    spots = [
        SpotRow(1, "A", "L1", 1, accessible=True),
        SpotRow(2, "E", "L1", 1, ev=True),
        SpotRow(3, "M", "L1", 2),
        SpotRow(4, "L", "L1", 3),
    ]
    ranked = rank_spots(spots, {}, 1, NOW, END, random.Random(1))
    assert [s.id for s in ranked][:2] == [3, 4]
    assert {s.id for s in ranked[2:]} == {1, 2}


def test_a_need_ranks_only_spots_with_that_feature() -> None:
    spots = [
        SpotRow(1, "A", "L1", 3, accessible=True),
        SpotRow(2, "A2", "L1", 1, accessible=True),
        SpotRow(3, "E", "L1", 1, ev=True),
        SpotRow(4, "M", "L1", 1),
    ]
    ranked = rank_spots(spots, {}, 1, NOW, END, random.Random(1), need="accessible")
    assert [s.id for s in ranked] == [2, 1]
    assert [s.id for s in rank_spots(spots, {}, 1, NOW, END, random.Random(1), need="ev")] == [3]
