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

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement, Insert

from core.domain import Event, EventKind
from core.site import Site
from core.storage.batch import Step, id_before, rows_before
from core.storage.models import EventRow, events_table

GAP_TIMEOUT = timedelta(seconds=30)
MAX_PENDING = 5000
# Built once: the values come as parameters (every change writes one).
_INSERT_EVENT = insert(events_table)


def _event_values(
    site_id: str,
    at: datetime,
    kind: EventKind | str,
    message: str,
    source: str,
    spot_id: int | None,
    spot_label: str | None,
    stay_id: int | None,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "at": at,
        "kind": str(kind),
        "source": source[:64],
        "spot_id": spot_id,
        "spot_label": spot_label,
        "stay_id": stay_id,
        "message": message[:255],
        "data": json.dumps(data or {}, sort_keys=True, default=str),
    }


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
        _INSERT_EVENT,
        _event_values(site_id, at, kind, message, source, spot_id, spot_label, stay_id, data),
    )


_EVENT_COLUMNS = [c for c in events_table.c if c.key != "id"]


def _event_if_done(stay_id: ColumnElement[Any]) -> Insert:
    values = [
        stay_id if c.key == "stay_id" else bindparam(c.key, type_=c.type) for c in _EVENT_COLUMNS
    ]
    return insert(events_table).from_select(
        [c.key for c in _EVENT_COLUMNS], select(*values).where(rows_before() == 1)
    )


# Batch steps (`core.storage.batch`): the event is written only if the step
# before it touched one row; the second takes the id that step inserted.
_EVENT_IF_DONE = _event_if_done(bindparam("stay_id", type_=events_table.c.stay_id.type))
_EVENT_FOR_NEW_STAY = _event_if_done(id_before())


def event_step(
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
    new_stay: bool = False,
) -> Step:
    """`record_event` as a step for `core.storage.batch.send`: written only if
    the step before it touched a row. With `new_stay`, the event names the
    stay that step inserted."""
    values = _event_values(site_id, at, kind, message, source, spot_id, spot_label, stay_id, data)
    if new_stay:
        del values["stay_id"]
        return _EVENT_FOR_NEW_STAY, values
    return _EVENT_IF_DONE, values


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
    late: list[EventRow] = []
    if pending:
        # Ask again by primary key; an id another site committed is dropped.
        for row in session.scalars(select(EventRow).where(EventRow.id.in_(list(pending)))):
            del pending[row.id]
            if row.site_id == site_id:
                late.append(row)
    last = cursor.last_id
    consumed: list[EventRow] = []
    if rows:
        # Ids below our newest row that exist for any site are no gap; the
        # rest are transactions not yet committed (or rolled back). Same
        # snapshot as `rows`, so they are worth asking for on the next poll.
        existing = set(
            session.scalars(
                select(EventRow.id).where(EventRow.id > last, EventRow.id <= rows[-1].id)
            )
        )
        for row in rows:
            missing = [i for i in range(last + 1, row.id) if i not in existing]
            room = max(0, MAX_PENDING - len(pending))
            if len(missing) > room:
                if consumed:
                    break  # deliver the rest next time rather than forget a gap
                # Nothing delivered yet: keep the newest ids (the oldest are
                # the likeliest rolled back) so the tail always moves on.
                missing = missing[len(missing) - room :]
            pending.update(dict.fromkeys(missing, now))
            consumed.append(row)
            last = row.id
    kept = tuple(sorted((i, seen) for i, seen in pending.items() if now - seen < gap_timeout))
    events = tuple(_event(r) for r in sorted(late + consumed, key=lambda r: r.id))
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
        if not rows:
            return EventBatch((), cursor_at_latest(session, site.id, now))
        return _advance(session, site.id, EventCursor(rows[0].id - 1), rows, now, GAP_TIMEOUT)

    return site.db.read(work)


# Transactions in flight when a view starts hold ids just below the newest.
IN_FLIGHT_WINDOW = 256


def cursor_at_latest(session: Session, site_id: str, now: datetime) -> EventCursor:
    """A cursor at the site's newest event that still waits for the ids just
    below it that are not visible yet, so a snapshot misses no late commit."""
    last = session.scalar(select(func.max(EventRow.id)).where(EventRow.site_id == site_id)) or 0
    floor = max(0, last - IN_FLIGHT_WINDOW)
    existing = set(
        session.scalars(select(EventRow.id).where(EventRow.id > floor, EventRow.id <= last))
    )
    missing = tuple((i, now) for i in range(floor + 1, last) if i not in existing)
    return EventCursor(last, missing)
