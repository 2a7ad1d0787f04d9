"""The event log: written in the same transaction as each change, and tailed
by live views.

Auto-increment ids are handed out at insert time but become visible at commit,
so under concurrency event 41 can become visible after event 42. A tailer that
only asks for ``id > last`` would skip 41 for good. `EventCursor` therefore
remembers the ids it has not seen below the highest one it has, and asks for
them again on every poll until they appear, turn out to belong to another site,
or are older than the gap timeout (a rolled-back transaction leaves a gap that
never fills). Views also resync from `snapshot()` now and then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core.domain import Event, EventKind
from core.site import Site
from core.storage.models import EventRow, events_table

GAP_TIMEOUT = timedelta(seconds=30)
MAX_PENDING = 5000


def record_event(
    session: Session,
    site_id: str,
    at: datetime,
    kind: EventKind | str,
    message: str,
    *,
    source: str = "",
    spot_id: int | None = None,
    spot_label: str | None = None,
    stay_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append an event inside the caller's transaction."""
    session.execute(
        insert(events_table).values(
            site_id=site_id,
            at=at,
            kind=str(kind),
            source=source[:64],
            spot_id=spot_id,
            spot_label=spot_label,
            stay_id=stay_id,
            message=message[:255],
            data=json.dumps(data or {}, sort_keys=True, default=str),
        )
    )


def _event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        at=row.at,
        kind=row.kind,
        message=row.message,
        source=row.source,
        spot_label=row.spot_label,
        ticket_id=row.stay_id,
        data=json.loads(row.data or "{}"),
    )


@dataclass(frozen=True)
class EventCursor:
    """Where a tailer is: the highest id seen, and the lower ids still missing
    (with when each was first missed)."""

    last_id: int = 0
    pending: tuple[tuple[int, datetime], ...] = ()


@dataclass(frozen=True)
class EventBatch:
    events: tuple[Event, ...]
    cursor: EventCursor


def _advance(
    session: Session,
    site_id: str,
    cursor: EventCursor,
    rows: list[EventRow],
    now: datetime,
    gap_timeout: timedelta,
) -> EventBatch:
    pending = dict(cursor.pending)
    last = cursor.last_id
    for row in rows:
        if row.id > last + 1 and len(pending) < MAX_PENDING:
            for missing in range(last + 1, min(row.id, last + 1 + MAX_PENDING - len(pending))):
                pending[missing] = now
        last = max(last, row.id)
    late: list[EventRow] = []
    if pending:
        # By primary key across sites: an id used by another site is no gap.
        for row in session.scalars(select(EventRow).where(EventRow.id.in_(list(pending)))):
            del pending[row.id]
            if row.site_id == site_id:
                late.append(row)
    kept = tuple(sorted((i, seen) for i, seen in pending.items() if now - seen < gap_timeout))
    events = tuple(_event(r) for r in sorted(late + rows, key=lambda r: r.id))
    return EventBatch(events, EventCursor(last, kept))


def events_since(
    site: Site,
    after: int | EventCursor = 0,
    *,
    limit: int = 1000,
    gap_timeout: timedelta = GAP_TIMEOUT,
) -> EventBatch:
    """Events after `after` (an id or the cursor of the previous batch), in id
    order, including late commits below ids already delivered. Pass the
    returned cursor to the next call."""
    cursor = after if isinstance(after, EventCursor) else EventCursor(after)
    now = site.clock.now()

    def work(session: Session) -> EventBatch:
        rows = list(
            session.scalars(
                select(EventRow)
                .where(EventRow.site_id == site.id, EventRow.id > cursor.last_id)
                .order_by(EventRow.id)
                .limit(limit)
            )
        )
        return _advance(session, site.id, cursor, rows, now, gap_timeout)

    return site.db.read(work)


def recent_events(site: Site, limit: int = 50) -> EventBatch:
    """The newest `limit` events (oldest first) and a cursor to follow on from."""
    now = site.clock.now()

    def work(session: Session) -> EventBatch:
        rows = list(
            session.scalars(
                select(EventRow)
                .where(EventRow.site_id == site.id)
                .order_by(EventRow.id.desc())
                .limit(limit)
            )
        )
        rows.reverse()
        start = (
            EventCursor(rows[0].id - 1) if rows else EventCursor(latest_event_id(session, site.id))
        )
        return _advance(session, site.id, start, rows, now, GAP_TIMEOUT)

    return site.db.read(work)


def latest_event_id(session: Session, site_id: str) -> int:
    return session.scalar(select(func.max(EventRow.id)).where(EventRow.site_id == site_id)) or 0
