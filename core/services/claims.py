"""The claims invariant, in one place: how live claims are read and how a new
claim takes its spot. Every claim insert goes through `take_spot`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from core.allocation import Interval, SpotRow
from core.domain import ClaimKind
from core.storage.database import rows_touched
from core.storage.models import claims_table, spots_table

C = claims_table.c
S = spots_table.c


def is_live(now: datetime) -> ColumnElement[bool]:
    """A claim is live unless cancelled or an expired hold. Used by the same
    query that looks for free spots, so an expired hold is free at once."""
    return and_(C.cancelled_at.is_(None), or_(C.expires_at.is_(None), C.expires_at > now))


# Hot-path statements are built once; only their parameters change.
_LIVE = and_(C.cancelled_at.is_(None), or_(C.expires_at.is_(None), C.expires_at > bindparam("now")))
_HAS_NEIGHBOUR = (
    exists()
    .where(C.site_id == bindparam("site"), C.spot_id == S.id, C.ends_at > bindparam("now"), _LIVE)
    .label("has_neighbour")
)
_FREE_SPOTS = (
    select(S.id, S.label, S.level, S.size, S.version, _HAS_NEIGHBOUR)
    .where(
        S.site_id == bindparam("site"),
        S.removed.is_(False),
        S.out_of_service.is_(False),
        S.size >= bindparam("size"),
        ~exists().where(
            C.site_id == bindparam("site"),
            C.spot_id == S.id,
            C.ends_at > bindparam("start"),
            C.starts_at < bindparam("end"),
            _LIVE,
        ),
    )
    .order_by(S.size, _HAS_NEIGHBOUR.desc())
    .limit(bindparam("limit"))
)
_NEIGHBOURS = select(C.spot_id, C.starts_at, C.ends_at).where(
    C.site_id == bindparam("site"),
    C.spot_id.in_(bindparam("spots", expanding=True)),
    C.ends_at > bindparam("now"),
    _LIVE,
)
_TAKE_SPOT = (
    update(spots_table)
    .where(
        S.id == bindparam("spot"),
        S.version == bindparam("seen"),
        S.out_of_service.is_(False),
        S.removed.is_(False),
    )
    .values(version=S.version + 1)
)


def free_spots(
    session: Session,
    site_id: str,
    min_size: int,
    start: datetime,
    end: datetime,
    now: datetime,
    limit: int = 64,
) -> list[SpotRow]:
    """Spots in service, of `min_size` or larger, with no live claim
    overlapping [start, end): smallest size first and, within a size, spots
    with a neighbouring live claim first; at most `limit`. One statement, so
    each spot's version and its claims are read from the same snapshot."""
    rows = session.execute(
        _FREE_SPOTS,
        {"site": site_id, "size": min_size, "start": start, "end": end, "now": now, "limit": limit},
    )
    return [SpotRow(*row) for row in rows]


def neighbour_claims(
    session: Session, site_id: str, spots: list[SpotRow], now: datetime
) -> dict[int, list[Interval]]:
    """The live claims around the free `spots` that have any (for a walk-in:
    future reservations and holds); they rank spots by the gap they leave."""
    wanted = [spot.id for spot in spots if spot.has_neighbour]
    by_spot: dict[int, list[Interval]] = defaultdict(list)
    if not wanted:
        return by_spot
    rows = session.execute(_NEIGHBOURS, {"site": site_id, "spots": wanted, "now": now})
    for spot_id, starts_at, ends_at in rows:
        by_spot[spot_id].append(Interval(starts_at, ends_at))
    return by_spot


def live_intervals(session: Session, site_id: str, now: datetime) -> dict[int, list[Interval]]:
    """Live claims that have not ended, per spot. Past claims never match the
    (site_id, ends_at) index range, so history does not slow this down."""
    rows = session.execute(
        select(C.spot_id, C.starts_at, C.ends_at).where(
            C.site_id == site_id, C.ends_at > now, is_live(now)
        )
    )
    by_spot: dict[int, list[Interval]] = defaultdict(list)
    for spot_id, starts_at, ends_at in rows:
        by_spot[spot_id].append(Interval(starts_at, ends_at))
    return by_spot


def take_spot(session: Session, spot_id: int, version: int) -> bool:
    """Lock the spot for this transaction if nothing changed it since its
    `version` was read. True means no other claim can be added to the spot
    until we commit, and none was added since we read its claims."""
    return rows_touched(session.execute(_TAKE_SPOT, {"spot": spot_id, "seen": version})) == 1


def add_claim(
    session: Session,
    site_id: str,
    spot_id: int,
    kind: ClaimKind,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    expires_at: datetime | None = None,
) -> int:
    """Insert a claim on a spot that `take_spot` locked in this transaction."""
    result = session.execute(
        insert(claims_table).values(
            site_id=site_id,
            spot_id=spot_id,
            kind=kind.value,
            starts_at=starts_at,
            ends_at=ends_at,
            expires_at=expires_at,
            created_at=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[attr-defined]
