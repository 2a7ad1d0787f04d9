"""The claims invariant, in one place: how live claims are read and how a new
claim takes its spot. Every claim insert goes through `take_spot`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, insert, literal, or_, select, update
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


def _overlapping(site_id: str, spot_id: Any, start: datetime, end: datetime, now: datetime) -> Any:
    return exists().where(
        C.site_id == site_id,
        C.spot_id == spot_id,
        C.ends_at > start,
        C.starts_at < end,
        is_live(now),
    )


def neighbour_claims(
    session: Session, site_id: str, start: datetime, end: datetime, now: datetime
) -> dict[int, list[Interval]]:
    """Live claims that touch no window spot but sit before or after it (for
    a walk-in: future reservations and holds); they rank spots by the gap
    they would leave."""
    rows = session.execute(
        select(C.spot_id, C.starts_at, C.ends_at).where(
            C.site_id == site_id,
            C.ends_at > now,
            is_live(now),
            or_(C.starts_at >= end, C.ends_at <= start),
        )
    )
    by_spot: dict[int, list[Interval]] = defaultdict(list)
    for spot_id, starts_at, ends_at in rows:
        by_spot[spot_id].append(Interval(starts_at, ends_at))
    return by_spot


def free_spots(
    session: Session,
    site_id: str,
    min_size: int,
    start: datetime,
    end: datetime,
    now: datetime,
    prefer: Collection[int] = (),
    limit: int = 64,
) -> list[SpotRow]:
    """Spots in service, of `min_size` or larger, with no live claim
    overlapping [start, end): smallest size first and, within a size, the
    spots in `prefer` first; at most `limit`. One statement, so each spot's
    version and its claims are read from the same snapshot."""
    preferred = case((S.id.in_(list(prefer)), 0), else_=1) if prefer else literal(1)
    rows = session.execute(
        select(S.id, S.label, S.level, S.size, S.version)
        .where(
            S.site_id == site_id,
            S.removed.is_(False),
            S.out_of_service.is_(False),
            S.size >= min_size,
            ~_overlapping(site_id, S.id, start, end, now),
        )
        .order_by(S.size, preferred)
        .limit(limit)
    )
    return [SpotRow(*row) for row in rows]


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
    result = session.execute(
        update(spots_table)
        .where(
            S.id == spot_id,
            S.version == version,
            S.out_of_service.is_(False),
            S.removed.is_(False),
        )
        .values(version=S.version + 1)
    )
    return rows_touched(result) == 1


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
