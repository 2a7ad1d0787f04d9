"""The claims invariant, in one place: how live claims are read and how a new
claim takes its spot. Every claim insert goes through `take_spot`.

`take_spot` is lock-then-verify: a conditional UPDATE on the spot row (still
in service, still big enough) must touch one row, which locks it until
commit; then a fresh statement inserts the claim only if no live claim
overlaps the window (INSERT ... SELECT ... WHERE NOT EXISTS). Every claim
insert holds that lock until it commits, so the check cannot be stale: on
MariaDB (READ COMMITTED) the check sees every earlier commit and no later
insert can start; on SQLite (BEGIN IMMEDIATE) writers run one at a time.
Choosing *which* spot to try may use slightly stale data (the per-process
spot list, a busy list read a moment earlier); deciding never does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from core.allocation import Interval, SpotRow, rank_spots, suits
from core.domain import ClaimKind, Size
from core.site import Site
from core.storage.batch import Outcome, Step, rows_before, send
from core.storage.database import Conflict
from core.storage.models import claims_table, spots_table, stays_table

C = claims_table.c
S = spots_table.c
T = stays_table.c

# Spots tried per pass before re-reading the lot; losing a race for one spot
# means another kiosk just took it, and the next best is usually still free.
TRIES_PER_PASS = 6


def is_live(now: datetime) -> ColumnElement[bool]:
    """A claim is live unless cancelled or an expired hold. Used by the same
    query that looks for free spots, so an expired hold is free at once."""
    return and_(C.cancelled_at.is_(None), or_(C.expires_at.is_(None), C.expires_at > now))


# Hot-path statements are built once; only their parameters change.
_LIVE = and_(C.cancelled_at.is_(None), or_(C.expires_at.is_(None), C.expires_at > bindparam("now")))
_OVERLAPS = and_(C.ends_at > bindparam("start"), C.starts_at < bindparam("end"))
# One row however full the lot: the spots a live claim makes unusable for the
# window, the spots with a live claim beside the window (for best fit), and
# the spots an overstaying car still stands in (its claim has ended, the car
# has not left: no one else can park there).
_OVERSTAYED = (
    select(func.group_concat(T.spot_id))
    .where(
        T.site_id == bindparam("site"), T.exited_at.is_(None), T.max_stay_until <= bindparam("now")
    )
    .scalar_subquery()
)
_BUSY = select(
    func.group_concat(case((_OVERLAPS, C.spot_id))),
    func.group_concat(case((~_OVERLAPS, C.spot_id))),
    _OVERSTAYED,
).where(C.site_id == bindparam("site"), C.ends_at > bindparam("now"), _LIVE)
_NEIGHBOURS = select(C.spot_id, C.starts_at, C.ends_at).where(
    C.site_id == bindparam("site"),
    C.spot_id.in_(bindparam("spots", expanding=True)),
    C.ends_at > bindparam("now"),
    _LIVE,
)
_LOCK_SPOT = (
    update(spots_table)
    .where(
        S.id == bindparam("b_spot"),
        S.site_id == bindparam("b_site"),
        S.size >= bindparam("b_size"),
        S.out_of_service.is_(False),
        S.removed.is_(False),
    )
    .values(version=S.version + 1)
)
# A driver who asked for a feature gets a spot that still has it when locked
# (a layout change may have taken it away since the spot list was read).
_LOCK_SPOT_WITH = {
    "accessible": _LOCK_SPOT.where(S.accessible.is_(True)),
    "ev": _LOCK_SPOT.where(S.ev.is_(True)),
}
# The verify half of lock-then-verify and the insert, in one statement: a
# claim row if the lock statement just before it touched the spot row and no
# live claim on the spot overlaps the window. A new statement, so on MariaDB
# (READ COMMITTED) it sees every commit made before the lock was granted.
_CLASH = select(C.id).where(
    C.site_id == bindparam("site"), C.spot_id == bindparam("spot"), _OVERLAPS, _LIVE
)
_INSERT_IF_CLEAR = insert(claims_table).from_select(
    ["site_id", "spot_id", "kind", "starts_at", "ends_at", "expires_at", "created_at"],
    select(
        bindparam("site", type_=C.site_id.type),
        bindparam("spot", type_=C.spot_id.type),
        bindparam("kind", type_=C.kind.type),
        bindparam("start", type_=C.starts_at.type),
        bindparam("end", type_=C.ends_at.type),
        bindparam("expires", type_=C.expires_at.type),
        bindparam("now", type_=C.created_at.type),
    ).where(rows_before() == 1, ~exists(_CLASH)),
)
_IN_SERVICE = select(S.id, S.label, S.level, S.size, S.accessible, S.ev).where(
    S.site_id == bindparam("site"), S.removed.is_(False), S.out_of_service.is_(False)
)


def load_in_service_spots(session: Session, site_id: str) -> tuple[SpotRow, ...]:
    """Every spot of the site that is in service (for `Site.in_service_spots`)."""
    return tuple(SpotRow(*row) for row in session.execute(_IN_SERVICE, {"site": site_id}))


def _ids(joined: str | None) -> set[int]:
    return {int(i) for i in joined.split(",")} if joined else set()


def busy_spots(
    session: Session, site_id: str, start: datetime, end: datetime, now: datetime
) -> tuple[set[int], set[int]]:
    """(spots with a live claim overlapping [start, end) or an overstaying car,
    spots with a live claim that does not overlap). Past claims and stays
    never match the index ranges, so history does not slow this down."""
    row = session.execute(_BUSY, {"site": site_id, "start": start, "end": end, "now": now}).one()
    return _ids(row[0]) | _ids(row[2]), _ids(row[1])


def spots_with_live_claims(session: Session, site_id: str, now: datetime) -> set[int]:
    """Spots that have a car, hold or reservation now or later."""
    rows = session.execute(
        select(C.spot_id).distinct().where(C.site_id == site_id, C.ends_at > now, is_live(now))
    )
    return set(rows.scalars())


def neighbour_claims(
    session: Session, site_id: str, spot_ids: Iterable[int], now: datetime
) -> dict[int, list[Interval]]:
    """The live claims on `spot_ids`, per spot; they rank spots by the gap a
    new claim would leave next to them."""
    wanted = list(spot_ids)
    by_spot: dict[int, list[Interval]] = defaultdict(list)
    if not wanted:
        return by_spot
    rows = session.execute(_NEIGHBOURS, {"site": site_id, "spots": wanted, "now": now})
    for spot_id, starts_at, ends_at in rows:
        by_spot[spot_id].append(Interval(starts_at, ends_at))
    return by_spot


@dataclass(frozen=True)
class Claimed:
    """A claim just taken, and what the steps sent with it did."""

    spot_id: int
    claim_id: int
    then: tuple[Outcome, ...] = ()


def _try_spot(
    session: Session,
    site_id: str,
    spot_id: int,
    min_size: int,
    kind: ClaimKind,
    start: datetime,
    end: datetime,
    now: datetime,
    expires_at: datetime | None,
    then: Sequence[Step],
    need: str | None = None,
) -> tuple[bool, Claimed | None]:
    """Lock the spot (in service, at least `min_size`, with `need` when
    given), insert the claim if
    no live claim overlaps the window, then run `then` (steps guarded by
    `rows_before() = 1`, so they act only if the claim went in): all in one
    round trip. Returns (the spot was locked, the claim if taken)."""
    lock = {"b_site": site_id, "b_spot": spot_id, "b_size": min_size}
    claim = {
        "site": site_id,
        "spot": spot_id,
        "kind": kind.value,
        "start": start,
        "end": end,
        "now": now,
        "expires": expires_at,
    }
    lock_spot = _LOCK_SPOT if need is None else _LOCK_SPOT_WITH[need]
    outcomes = send(session, [(lock_spot, lock), (_INSERT_IF_CLEAR, claim), *then])
    locked, inserted = outcomes[0].rows == 1, outcomes[1].new_id
    if inserted is None:
        return locked, None
    return locked, Claimed(spot_id, inserted, tuple(outcomes[2:]))


def take_spot(
    session: Session,
    site_id: str,
    spot_id: int,
    min_size: int,
    kind: ClaimKind,
    start: datetime,
    end: datetime,
    now: datetime,
    expires_at: datetime | None = None,
    then: Sequence[Step] = (),
) -> Claimed | None:
    """Claim the spot for [start, end) if it is in service, at least
    `min_size` and free for the window, or return None. The only way a claim
    is inserted. Lock-then-verify: the spot row stays locked until commit, so
    no other claim on it can be checked or inserted meanwhile. `then` are
    steps that build on the new claim (see `core.storage.batch`)."""
    _, claimed = _try_spot(
        session, site_id, spot_id, min_size, kind, start, end, now, expires_at, then
    )
    return claimed


def claim_best_spot(
    session: Session,
    site: Site,
    car: Size,
    kind: ClaimKind,
    start: datetime,
    end: datetime,
    now: datetime,
    expires_at: datetime | None = None,
    then: Callable[[SpotRow], Sequence[Step]] | None = None,
    need: str | None = None,
) -> tuple[SpotRow, Claimed] | None:
    """Claim the best-fitting free spot for [start, end): returns the spot and
    the claim, or None when no fitting spot is free for the window. With
    `need` ("accessible", "ev") only a spot with that feature; without, a
    flagged spot only when no ordinary fitting spot is free. Raises
    `Conflict` (the unit of work reruns) if every candidate tried was taken by
    another process in the meantime. `then(spot)` gives the steps to send
    with each try (see `take_spot`)."""
    for refresh in (False, True):
        spots = site.in_service_spots(session, refresh=refresh)
        busy, near = busy_spots(session, site.id, start, end, now)
        free = [s for s in spots if suits(s, car, need) and s.id not in busy]
        if free:
            break
        # Before saying "full", make sure our spot list is not stale.
    else:
        return None
    neighbours = neighbour_claims(session, site.id, (s.id for s in free if s.id in near), now)
    ranked = rank_spots(free, neighbours, car, start, end, site.rng, TRIES_PER_PASS, need)
    for spot in ranked:
        steps = then(spot) if then is not None else ()
        locked, claimed = _try_spot(
            session, site.id, spot.id, car, kind, start, end, now, expires_at, steps, need
        )
        if claimed is not None:
            return spot, claimed
        if not locked:
            site.forget_spots()  # closed, removed or shrunk: our list is stale
    raise Conflict("every candidate spot was taken meanwhile")
