"""The claims invariant, in one place: how live claims are read and how a new
claim takes its spot. Every claim insert goes through `take_spot`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from core.allocation import Interval, SpotRow
from core.domain import ClaimKind
from core.storage.database import rows_touched
from core.storage.models import Claim, Spot


def is_live(now: datetime) -> ColumnElement[bool]:
    """A claim is live unless cancelled or an expired hold. Used by the same
    query that looks for free spots, so an expired hold is free at once."""
    return and_(
        Claim.cancelled_at.is_(None),
        or_(Claim.expires_at.is_(None), Claim.expires_at > now),
    )


def usable_spots(session: Session, site_id: str, min_size: int) -> list[SpotRow]:
    """Spots in service of `min_size` or larger, with their versions. Read
    before the claims, so a version still current later vouches for them."""
    rows = session.execute(
        select(Spot.id, Spot.label, Spot.level, Spot.size, Spot.version).where(
            Spot.site_id == site_id,
            Spot.removed.is_(False),
            Spot.out_of_service.is_(False),
            Spot.size >= min_size,
        )
    )
    return [SpotRow(*row) for row in rows]


def live_intervals(session: Session, site_id: str, now: datetime) -> dict[int, list[Interval]]:
    """Live claims that have not ended, per spot. Past claims never match the
    (site_id, ends_at) index range, so history does not slow this down."""
    rows = session.execute(
        select(Claim.spot_id, Claim.starts_at, Claim.ends_at).where(
            Claim.site_id == site_id, Claim.ends_at > now, is_live(now)
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
        update(Spot)
        .where(
            Spot.id == spot_id,
            Spot.version == version,
            Spot.out_of_service.is_(False),
            Spot.removed.is_(False),
        )
        .values(version=Spot.version + 1)
        .execution_options(synchronize_session=False)
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
    claim = Claim(
        site_id=site_id,
        spot_id=spot_id,
        kind=kind.value,
        starts_at=starts_at,
        ends_at=ends_at,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(claim)
    session.flush()
    return claim.id
