"""Walk-in entry and exit through the service layer, on SQLite and MariaDB."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from conftest import SiteFactory, make_layout
from helpers import overlapping_claims, pay_and_exit
from sqlalchemy import func, select

from core import services as lk
from core.clock import FixedClock
from core.domain import ClaimKind, Size
from core.errors import InvalidInput, LotFull
from core.layout import LotLayout
from core.services.claims import claim_best_spot, take_spot
from core.site import Site
from core.storage.models import Claim, Stay


def count(site: Site, model: type[Claim] | type[Stay]) -> int:
    return site.db.read(lambda s: s.scalar(select(func.count()).select_from(model)) or 0)


def test_entry_issues_ticket_for_a_fitting_spot(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "medium", plate=" ab-123 ", kiosk="entry-1")

    assert ticket.size is Size.MEDIUM
    assert ticket.spot_size is Size.MEDIUM
    assert ticket.spot_label.startswith("1M")
    assert ticket.level == "Level 1"
    assert ticket.plate == "AB-123"
    assert ticket.entered_at == clock.now()
    assert ticket.max_stay_until == clock.now() + timedelta(hours=24)
    assert ticket.code.startswith("LK1.K1.")
    assert ticket.short_code.startswith(f"{ticket.id}-")
    assert lk.availability(site).for_size("medium").occupied == 1


def test_best_fit_takes_smallest_fitting_size_first(site: Site) -> None:
    sizes = [lk.enter(site, "small").spot_size for _ in range(6)]
    # 2 small spots, then the 3 medium, then the large one.
    assert sizes == [Size.SMALL] * 2 + [Size.MEDIUM] * 3 + [Size.LARGE]


def test_entry_refused_when_no_fitting_spot(site: Site) -> None:
    lk.enter(site, "large")
    with pytest.raises(LotFull) as refused:
        lk.enter(site, "large")
    assert refused.value.size == "large"
    assert "full for a large car" in str(refused.value)
    # Smaller cars still get in: the medium and small spots are free.
    assert lk.enter(site, "medium").spot_size is Size.MEDIUM
    assert lk.availability(site).for_size("large").can_enter is False
    assert lk.availability(site).for_size("small").can_enter is True


def test_full_refusal_per_size_leaves_no_claim_and_records_event(site: Site) -> None:
    for _ in range(6):
        lk.enter(site, "small")
    claims_before = count(site, Claim)
    for size in ("small", "medium", "large"):
        with pytest.raises(LotFull):
            lk.enter(site, size, kiosk="entry-2")
    assert count(site, Claim) == claims_before
    refusals = [e for e in lk.recent_events(site).events if e.kind == "refused_full"]
    assert [e.data["size"] for e in refusals] == ["small", "medium", "large"]
    assert all(e.source == "entry-2" for e in refusals)


def test_exit_frees_the_spot_by_cutting_the_claim(site: Site, clock: FixedClock) -> None:
    ticket = lk.enter(site, "large")
    clock.advance(minutes=95)
    paying = lk.pay_ticket(site, ticket.code)
    assert lk.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    result = lk.exit(site, ticket.code, kiosk="exit-1")

    assert result.spot_label == ticket.spot_label
    assert result.duration_minutes == 95
    claim_end = site.db.read(lambda s: s.scalar(select(Claim.ends_at)))
    assert claim_end == clock.now()
    assert lk.enter(site, "large").spot_label == ticket.spot_label


def claim_directly(
    site: Site, kind: ClaimKind, start: timedelta, hours: float, expires: timedelta | None = None
) -> None:
    """Put a hold or reservation on the best free small spot, the way the
    reservation service (next issue) will: through claim_best_spot."""
    now = site.clock.now()
    begin, end = now + start, now + start + timedelta(hours=hours)
    expires_at = None if expires is None else now + expires

    def work(session):  # type: ignore[no-untyped-def]
        assert claim_best_spot(session, site, Size.SMALL, kind, begin, end, now, expires_at)

    site.db.write(work)


def test_reservation_beyond_the_walk_in_window_does_not_block(
    make_site: SiteFactory,
) -> None:
    site = make_site(make_layout(small=1))
    claim_directly(site, ClaimKind.RESERVATION, timedelta(hours=30), 2)
    assert lk.enter(site, "small").spot_size is Size.SMALL
    assert overlapping_claims(site) == []


def test_reservation_inside_the_walk_in_window_blocks_the_spot(
    make_site: SiteFactory,
) -> None:
    site = make_site(make_layout(small=1))
    claim_directly(site, ClaimKind.RESERVATION, timedelta(hours=10), 2)
    with pytest.raises(LotFull):
        lk.enter(site, "small")
    assert lk.availability(site).for_size("small").reserved == 1


def test_expired_hold_is_free_without_any_sweeper(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    claim_directly(site, ClaimKind.HOLD, timedelta(hours=1), 2, expires=timedelta(minutes=5))
    with pytest.raises(LotFull):
        lk.enter(site, "small")
    assert lk.availability(site).for_size("small").held == 1
    clock.advance(minutes=5)
    assert lk.enter(site, "small").spot_size is Size.SMALL
    assert overlapping_claims(site) == []


def test_max_stay_comes_from_config(make_site: SiteFactory, clock: FixedClock) -> None:
    site = make_site(make_layout(small=1), max_stay_minutes=180)
    ticket = lk.enter(site, "small")
    assert ticket.max_stay_until - ticket.entered_at == timedelta(hours=3)


def test_out_of_service_spot_is_never_allocated(make_site: SiteFactory) -> None:
    layout = make_layout(small=1, medium=1)
    site = make_site(layout)
    spots = list(layout.spots)
    spots[0] = spots[0].__class__(**{**spots[0].__dict__, "out_of_service": True})
    lk.load_layout(site, layout.__class__(layout.name, tuple(spots)))
    assert lk.enter(site, "small").spot_size is Size.MEDIUM
    with pytest.raises(LotFull):
        lk.enter(site, "small")


@pytest.mark.parametrize("size", ["huge", "", "4"])
def test_unknown_size_is_refused_and_changes_nothing(site: Site, size: str) -> None:
    with pytest.raises(InvalidInput, match="small, medium or large"):
        lk.enter(site, size)
    assert count(site, Claim) == 0


def test_bad_plate_is_refused_and_changes_nothing(site: Site) -> None:
    with pytest.raises(InvalidInput, match="licence plate"):
        lk.enter(site, "small", plate="DROP TABLE; --")
    assert count(site, Stay) == 0


def test_cars_park_and_leave_many_times_without_overlap(site: Site, clock: FixedClock) -> None:
    tickets = [lk.enter(site, "small") for _ in range(6)]
    for round_ in range(3):
        clock.advance(minutes=30)
        for ticket in tickets[round_::3]:
            pay_and_exit(site, ticket.code)
        tickets += [lk.enter(site, "small") for _ in tickets[round_::3]]
    assert overlapping_claims(site) == []
    assert lk.availability(site).free == 0


def test_best_fit_fills_the_smallest_gap_before_future_reservations(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=3))
    now = clock.now()
    for label, start in (("1S01", 30), ("1S02", 25)):
        # reserve the named spot directly, as the reservation service will

        def work(session, label=label, start=start):  # type: ignore[no-untyped-def]
            spot = next(s for s in site.in_service_spots(session) if s.label == label)
            begin = now + timedelta(hours=start)
            end = begin + timedelta(hours=2)
            kind = ClaimKind.RESERVATION
            assert take_spot(session, site.id, spot.id, Size.SMALL, kind, begin, end, now)

        site.db.write(work)
    # 1S02's reservation starts 1 h after the 24 h walk-in window: least gap.
    assert lk.enter(site, "small").spot_label == "1S02"
    assert lk.enter(site, "small").spot_label == "1S01"
    assert lk.enter(site, "small").spot_label == "1S03"
    assert overlapping_claims(site) == []


def test_take_spot_refuses_a_window_that_overlaps_a_live_claim(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site = make_site(make_layout(small=1))
    ticket = lk.enter(site, "small")
    now = clock.now()

    def work(session):  # type: ignore[no-untyped-def]
        (spot,) = site.in_service_spots(session)

        def take(size: int, begin: datetime) -> bool:
            end = begin + timedelta(hours=1)
            kind = ClaimKind.RESERVATION
            return take_spot(session, site.id, spot.id, size, kind, begin, end, now) is not None

        during_stay = take(1, now + timedelta(hours=2))
        after_stay = take(1, ticket.max_stay_until)
        too_big_after_stay = take(2, ticket.max_stay_until)
        return during_stay, after_stay, too_big_after_stay

    assert site.db.write(work) == (False, True, False)


def _with(layout: LotLayout, **changes: dict[str, object]) -> LotLayout:
    """The layout with some spots changed, by label."""
    spots = [replace(s, **changes.get(s.label, {})) for s in layout.spots]  # type: ignore[arg-type]
    return replace(layout, spots=tuple(spots))


def test_stale_spot_list_never_allocates_an_out_of_service_spot(make_site: SiteFactory) -> None:
    layout = make_layout(small=1, medium=1)
    console = make_site(layout)
    kiosk = make_site()  # another process, with its own cached spot list
    first = lk.enter(kiosk, "small")
    assert first.spot_label == "1S01"
    lk.exit(kiosk, first.code)
    lk.load_layout(console, _with(layout, **{"1S01": {"out_of_service": True}}))
    assert lk.enter(kiosk, "small").spot_label == "1M01"
    with pytest.raises(LotFull):
        lk.enter(kiosk, "small")


def test_stale_spot_list_is_refreshed_before_refusing_entry(make_site: SiteFactory) -> None:
    console = make_site(make_layout(small=1))
    kiosk = make_site()
    lk.enter(kiosk, "small")  # the kiosk now knows one spot, and it is taken
    lk.load_layout(console, make_layout(small=2))
    assert lk.enter(kiosk, "small").spot_label == "1S02"
