"""What the lot looks like now: per-size counts and the state of every spot.

A spot's state at `now`, first match wins:
- out_of_service: marked so;
- occupied: a live stay claim covers now;
- overstay: a car is still in it after its claim ended (counted as occupied);
- held / reserved: a live hold / reservation overlaps the walk-in window
  [now, now + max stay), so a walk-in cannot have it;
- free: free for a walk-in now, exactly as `enter()` would see it.
So free + occupied + held + reserved + out_of_service = total, per size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.domain import Availability, ClaimKind, Size, SizeAvailability, SpotState, SpotStatus
from core.services.claims import is_live
from core.services.events import EventCursor, cursor_at_latest
from core.site import Site
from core.storage.models import Claim, Spot, Stay


@dataclass(frozen=True)
class LotSnapshot:
    """Every spot's state at `at`, and the event cursor to tail from."""

    at: datetime
    spots: tuple[SpotState, ...]
    cursor: EventCursor


def _spot_states(session: Session, site: Site, now: datetime) -> list[SpotState]:
    window_end = now + site.max_stay
    claims = session.execute(
        select(Claim.spot_id, Claim.kind, Claim.starts_at, Claim.ends_at, Stay.id, Stay.plate)
        .outerjoin(Stay, Stay.claim_id == Claim.id)
        .where(
            Claim.site_id == site.id,
            Claim.ends_at > now,
            Claim.starts_at < window_end,
            is_live(now),
        )
    ).all()
    by_spot = defaultdict(list)
    for claim in claims:
        by_spot[claim.spot_id].append(claim)
    overstays = {
        row.spot_id: row
        for row in session.execute(
            select(Stay.spot_id, Stay.id, Stay.plate, Stay.entered_at).where(
                Stay.site_id == site.id, Stay.exited_at.is_(None), Stay.max_stay_until <= now
            )
        )
    }
    spots = session.execute(
        select(Spot)
        .where(Spot.site_id == site.id, Spot.removed.is_(False))
        .order_by(Spot.level_order, Spot.position, Spot.label)
    ).scalars()
    states = []
    for spot in spots:
        status, ticket_id, plate, since = SpotStatus.FREE, None, None, None
        spot_claims = by_spot.get(spot.id, [])
        stay = next(
            (c for c in spot_claims if c.kind == ClaimKind.STAY and c.starts_at <= now), None
        )
        overstay = overstays.get(spot.id)
        if spot.out_of_service:
            status = SpotStatus.OUT_OF_SERVICE
        elif overstay is not None:
            status, ticket_id, plate, since = (
                SpotStatus.OVERSTAY,
                overstay.id,
                overstay.plate,
                overstay.entered_at,
            )
        elif stay is not None:
            status, ticket_id, plate, since = (
                SpotStatus.OCCUPIED,
                stay.id,
                stay.plate,
                stay.starts_at,
            )
        elif any(c.kind == ClaimKind.HOLD for c in spot_claims):
            status = SpotStatus.HELD
        elif spot_claims:
            status = SpotStatus.RESERVED
            since = min(c.starts_at for c in spot_claims)
        states.append(
            SpotState(
                spot_id=spot.id,
                label=spot.label,
                level=spot.level,
                size=Size(spot.size),
                accessible=spot.accessible,
                ev=spot.ev,
                status=status,
                ticket_id=ticket_id,
                plate=plate,
                since=since,
            )
        )
    return states


def snapshot(site: Site) -> LotSnapshot:
    """All spot states in one consistent read, with a cursor for
    `events_since` so a view can follow on from exactly this picture."""
    now = site.clock.now()

    def work(session: Session) -> LotSnapshot:
        cursor = cursor_at_latest(session, site.id, now)
        return LotSnapshot(now, tuple(_spot_states(session, site, now)), cursor)

    return site.db.read(work)


def summarize(states: list[SpotState] | tuple[SpotState, ...], at: datetime) -> Availability:
    counts: dict[Size, dict[SpotStatus, int]] = {size: defaultdict(int) for size in Size}
    free_accessible: dict[Size, int] = defaultdict(int)
    free_ev: dict[Size, int] = defaultdict(int)
    for state in states:
        counts[state.size][state.status] += 1
        if state.status is SpotStatus.FREE:
            free_accessible[state.size] += state.accessible
            free_ev[state.size] += state.ev
    sizes = []
    for size in Size:
        count = counts[size]
        fitting = sum(counts[s][SpotStatus.FREE] for s in Size if s >= size)
        sizes.append(
            SizeAvailability(
                size=size,
                total=sum(count.values()),
                free=count[SpotStatus.FREE],
                occupied=count[SpotStatus.OCCUPIED] + count[SpotStatus.OVERSTAY],
                held=count[SpotStatus.HELD],
                reserved=count[SpotStatus.RESERVED],
                out_of_service=count[SpotStatus.OUT_OF_SERVICE],
                free_fitting=fitting,
                free_fitting_accessible=sum(free_accessible[s] for s in Size if s >= size),
                free_fitting_ev=sum(free_ev[s] for s in Size if s >= size),
            )
        )
    return Availability(at, tuple(sizes))


def availability(site: Site) -> Availability:
    """Per size: total, free now for a walk-in, occupied, held, reserved and
    out of service, plus how many free spots a car of that size could use."""
    now = site.clock.now()
    return site.db.read(lambda session: summarize(_spot_states(session, site, now), now))


def occupancy_history(
    site: Site, hours: int = 24, points: int = 48, at: datetime | None = None
) -> list[int]:
    """How many cars were inside at `points` evenly spaced instants over the
    last `hours`, oldest first, the last one being now (the console's
    sparkline). One pass over the stays that overlap the period."""
    if hours <= 0 or points < 2:
        raise ValueError("hours must be positive and points at least 2")
    now = at or site.clock.now()
    start = now - timedelta(hours=hours)
    rows = site.db.read(
        lambda s: s.execute(
            select(Stay.entered_at, Stay.exited_at).where(
                Stay.site_id == site.id,
                Stay.entered_at <= now,
                (Stay.exited_at.is_(None)) | (Stay.exited_at > start),
            )
        ).all()
    )
    # +1 when a car enters, -1 when it leaves; an instant counts a car that
    # entered at or before it and had not yet left.
    changes = sorted(
        [(entered, 1) for entered, _ in rows]
        + [(exited, -1) for _, exited in rows if exited is not None and exited <= now]
    )
    history, inside, index = [], 0, 0
    for i in range(points):
        instant = start + (now - start) * i / (points - 1)  # the last one is now, exactly
        while index < len(changes) and changes[index][0] <= instant:
            inside += changes[index][1]
            index += 1
        history.append(inside)
    return history
