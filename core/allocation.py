"""Best-fit choice of a spot for a window. Pure: no database.

A driver who asks for a feature (accessible, EV) is offered only spots that
have it. A driver who does not is offered ordinary spots first and flagged
ones only after every ordinary fitting spot (of any fitting size): those spots
are kept for the drivers who need them while anything else is free.

Order within that: smallest fitting size first; then spots whose neighbouring live claims
leave the least unused time around the window (filling holes before opening
untouched spots); remaining ties in random order, so that kiosks allocating at
the same moment rarely race for the same spot.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SpotRow:
    id: int
    label: str
    level: str
    size: int
    accessible: bool = False
    ev: bool = False

    @property
    def flagged(self) -> bool:
        """Kept for drivers who ask for its feature."""
        return self.accessible or self.ev

    def has(self, need: str | None) -> bool:
        """Whether the spot suits a driver with `need` (None: any spot)."""
        if need is None:
            return True
        if need == "accessible":
            return self.accessible
        return need == "ev" and self.ev


def suits(spot: SpotRow, car_size: int, need: str | None) -> bool:
    """The spot fits the car and has what the driver asked for."""
    return spot.size >= car_size and spot.has(need)


@dataclass(frozen=True)
class Interval:
    starts_at: datetime
    ends_at: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.starts_at < end and start < self.ends_at


def gap_seconds(claims: Sequence[Interval], start: datetime, end: datetime) -> float | None:
    """Unused time the window leaves next to its nearest claims on the spot,
    or None when the spot has no live claim on either side."""
    before = [c.ends_at for c in claims if c.ends_at <= start]
    after = [c.starts_at for c in claims if c.starts_at >= end]
    if not before and not after:
        return None
    gap = 0.0
    if before:
        gap += (start - max(before)).total_seconds()
    if after:
        gap += (min(after) - end).total_seconds()
    return gap


def rank_spots(
    spots: Iterable[SpotRow],
    claims: Mapping[int, Sequence[Interval]],
    car_size: int,
    start: datetime,
    end: datetime,
    rng: random.Random,
    best: int | None = None,
    need: str | None = None,
) -> list[SpotRow]:
    """The spots free for [start, end) that fit `car_size` (and have `need`,
    when given), best first; only the `best` first ones when given (what a
    caller will actually try). Without `need`, accessible and EV spots come
    after every ordinary one."""
    # Spots grouped by how good they are: (flagged and not asked for, size,
    # 0 if it has neighbouring claims else 1, gap). Most spots have no claim
    # at all, so they cost a dict lookup each; only spots with claims get
    # their gap worked out.
    groups: dict[tuple[int, int, int, float], list[SpotRow]] = defaultdict(list)
    for spot in spots:
        if not suits(spot, car_size, need):
            continue
        last = 1 if need is None and spot.flagged else 0
        spot_claims = claims.get(spot.id)
        if not spot_claims:
            groups[(last, spot.size, 1, 0.0)].append(spot)
            continue
        if any(c.overlaps(start, end) for c in spot_claims):
            continue
        gap = gap_seconds(spot_claims, start, end)
        key = (last, spot.size, 0, gap) if gap is not None else (last, spot.size, 1, 0.0)
        groups[key].append(spot)
    # Equally good spots in random order; with `best`, only as many as needed.
    chosen: list[SpotRow] = []
    for key in sorted(groups):
        members = groups[key]
        if best is None:
            rng.shuffle(members)
            chosen.extend(members)
            continue
        chosen.extend(rng.sample(members, min(best - len(chosen), len(members))))
        if len(chosen) >= best:
            break
    return chosen
