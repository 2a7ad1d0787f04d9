"""The event log: written in the same transaction as each change, and tailed
by live views.

Auto-increment ids are handed out at insert time but become visible at commit,
so under concurrency event 41 can become visible after event 42. A tailer that
only asks for ``id > last`` would skip 41 for good. `EventCursor` therefore
remembers the ids it has not seen below the highest one it has, as runs, and
asks for them again on every poll until they appear, turn out to belong to
another site, or are older than the gap timeout (a rolled-back transaction
leaves a gap that never fills). Ids step by ``@@auto_increment_increment``
(the cluster size on Galera): only ids whose residue some node has been seen
using are gaps. Views also resync from `snapshot()` now and then.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement, Insert

from core.domain import Event, EventKind
from core.site import Site
from core.storage.batch import Step, id_before, rows_before
from core.storage.models import EventRow, events_table

GAP_TIMEOUT = timedelta(seconds=30)
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
class IdRun:
    """Missing ids ``first, first + step, ..., last`` (one residue class, the
    cursor's step apart), first missed at `since`."""

    first: int
    last: int
    since: datetime


@dataclass(frozen=True)
class EventCursor:
    """Where a tailer is: the highest id seen, the lower ids still missing (as
    runs), the server's id step (0 until learned) and the id residues
    (``id % step``) seen in use, with when each was last seen."""

    last_id: int = 0
    pending: tuple[IdRun, ...] = ()
    step: int = 0
    residues: tuple[tuple[int, datetime], ...] = ()

    def waiting_ids(self) -> list[int]:
        """Every id the cursor still waits for, lowest first."""
        step = self.step or 1
        return sorted(i for r in self.pending for i in range(r.first, r.last + 1, step))


@dataclass(frozen=True)
class EventBatch:
    events: tuple[Event, ...]
    cursor: EventCursor


# A run only grows for this long, so a run expires (whole) at most this much
# after its newest id was first missed; it bounds the runs to about
# GAP_TIMEOUT / RUN_SPAN per residue whatever the event rate.
RUN_SPAN = timedelta(seconds=1)
# Transactions in flight when a view starts (or when a node's ids first show
# up) hold ids at most this many steps below the newest.
IN_FLIGHT_WINDOW = 256
# Runs asked for again in one statement.
_ASK_CHUNK = 500


def id_step(session: Session) -> int:
    """The server's auto-increment step: ``@@auto_increment_increment`` on
    MySQL/MariaDB (the cluster size on Galera with
    ``wsrep_auto_increment_control``), 1 on SQLite."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        return 1
    return max(1, int(session.scalar(text("SELECT @@auto_increment_increment")) or 1))


class _Gaps:
    """The gap book of one poll: built from a cursor, changed, turned back
    into one. Pure (no database), so its rules can be driven at any rate."""

    def __init__(self, cursor: EventCursor, step: int, now: datetime) -> None:
        self.step = step
        self.now = now
        same_step = cursor.step == step
        self.runs: list[IdRun] = list(cursor.pending) if same_step else []
        if not same_step:
            # Learned the step now (or it changed): old runs are one id each.
            self.runs = [
                IdRun(i, i, r.since)
                for r in cursor.pending
                for i in range(r.first, r.last + 1, cursor.step or 1)
            ]
        self.residues: dict[int, datetime] = dict(cursor.residues) if same_step else {}
        if step == 1:
            self.residues = {0: now}
        self.open: dict[int, int] = {}
        self._reopen()

    def _reopen(self) -> None:
        # The run each residue may still grow: its newest one.
        self.open = {}
        for at, run in enumerate(self.runs):
            residue = run.first % self.step
            mine = self.open.get(residue)
            if mine is None or self.runs[mine].last < run.last:
                self.open[residue] = at

    def fill(self, found: set[int]) -> None:
        """Drop ids that showed up (for any site) from the runs."""
        if not found:
            return
        step = self.step
        runs: list[IdRun] = []
        for run in self.runs:
            hits = sorted(
                i for i in found if run.first <= i <= run.last and (i - run.first) % step == 0
            )
            start = run.first
            for hit in hits:
                if hit > start:
                    runs.append(IdRun(start, hit - step, run.since))
                start = hit + step
            if start <= run.last:
                runs.append(IdRun(start, run.last, run.since))
        self.runs = runs
        self._reopen()

    def learn(self, ids: list[int]) -> set[int]:
        """Note the residues of ids seen in use; return those not known before."""
        new = set()
        for i in ids:
            residue = i % self.step
            if residue not in self.residues:
                new.add(residue)
            self.residues[residue] = self.now
        return new

    def record(
        self, after: int, existing: list[int], before: int, residues: set[int] | None = None
    ) -> None:
        """Record as missing the ids in (after, before) that are not in
        `existing` (sorted) and whose residue is in use."""
        step = self.step
        wanted = sorted(self.residues if residues is None else residues)
        edges = [after, *(i for i in existing if after < i < before), before]
        for lo, hi in pairwise(edges):
            if hi - lo < 2:
                continue
            for residue in wanted:
                first = lo + 1 + (residue - lo - 1) % step
                last = hi - 1 - (hi - 1 - residue) % step
                if first <= last:
                    self._add(residue, first, last)

    def _add(self, residue: int, first: int, last: int) -> None:
        at = self.open.get(residue)
        if at is not None:
            run = self.runs[at]
            if run.last + self.step == first and self.now - run.since < RUN_SPAN:
                self.runs[at] = IdRun(run.first, last, run.since)
                return
        self.open[residue] = len(self.runs)
        self.runs.append(IdRun(first, last, self.now))

    def cursor(self, last_id: int, gap_timeout: timedelta) -> EventCursor:
        now = self.now
        runs = tuple(
            sorted((r for r in self.runs if now - r.since < gap_timeout), key=lambda r: r.first)
        )
        residues = tuple(sorted((k, t) for k, t in self.residues.items() if now - t < gap_timeout))
        return EventCursor(last_id, runs, self.step, residues)


def _in_runs(runs: list[IdRun], step: int) -> ColumnElement[bool]:
    def one(run: IdRun) -> ColumnElement[bool]:
        span = EventRow.id.between(run.first, run.last)
        if step == 1 or run.first == run.last:
            return span
        return and_(span, (EventRow.id - run.first) % step == 0)

    return or_(*(one(r) for r in runs))


# Ids (any site) in ``(lo, hi]``, in order; ids that showed up among runs.
IdsBetween = Callable[[int, int], list[int]]
AskRuns = Callable[[list[IdRun], int], set[int]]


def track_gaps(
    cursor: EventCursor,
    step: int,
    newest: int | None,
    now: datetime,
    gap_timeout: timedelta,
    ask: AskRuns,
    ids_between: IdsBetween,
) -> EventCursor:
    """The cursor after a poll that delivered the site's rows up to `newest`
    (None: no new row). `ask` and `ids_between` are the poll's two reads."""
    gaps = _Gaps(cursor, step, now)
    runs = gaps.runs
    found: set[int] = set()
    for start in range(0, len(runs), _ASK_CHUNK):
        found |= ask(runs[start : start + _ASK_CHUNK], step)
    gaps.fill(found)
    last = cursor.last_id
    if newest is None:
        return gaps.cursor(last, gap_timeout)
    # Ids below our newest row that exist for any site are no gap; the rest
    # are transactions not yet committed (or rolled back), but only in
    # residues some node uses: with a step of 3 and one node writing, the
    # other two thirds of the ids never come.
    existing = ids_between(last, newest)
    knew = bool(gaps.residues)
    new = gaps.learn(existing)
    if new and knew and last > 0:
        # A node whose ids this tail had not seen yet may have had ids in
        # flight below `last` too: look back a little for them.
        floor = max(0, last - IN_FLIGHT_WINDOW * step)
        gaps.record(floor, ids_between(floor, last), last + 1, new)
    gaps.record(last, existing, newest)
    return gaps.cursor(newest, gap_timeout)


def _advance(
    session: Session,
    site_id: str,
    cursor: EventCursor,
    rows: list[EventRow],
    now: datetime,
    gap_timeout: timedelta,
) -> EventBatch:
    late: list[EventRow] = []

    def ask(runs: list[IdRun], step: int) -> set[int]:
        # Ask again by primary key; an id another site committed is dropped.
        found = set()
        for row in session.scalars(select(EventRow).where(_in_runs(runs, step))):
            found.add(row.id)
            if row.site_id == site_id:
                late.append(row)
        return found

    def ids_between(lo: int, hi: int) -> list[int]:
        # Same snapshot as `rows`.
        query = select(EventRow.id).where(EventRow.id > lo, EventRow.id <= hi)
        return list(session.scalars(query.order_by(EventRow.id)))

    step = cursor.step or id_step(session)
    newest = rows[-1].id if rows else None
    moved = track_gaps(cursor, step, newest, now, gap_timeout, ask, ids_between)
    events = tuple(_event(r) for r in sorted(late + rows, key=lambda r: r.id))
    return EventBatch(events, moved)


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


def cursor_at_latest(session: Session, site_id: str, now: datetime) -> EventCursor:
    """A cursor at the site's newest event that still waits for the ids just
    below it that are not visible yet, so a snapshot misses no late commit."""
    last = session.scalar(select(func.max(EventRow.id)).where(EventRow.site_id == site_id)) or 0
    gaps = _Gaps(EventCursor(last), id_step(session), now)
    floor = max(0, last - IN_FLIGHT_WINDOW * gaps.step)
    existing = list(
        session.scalars(
            select(EventRow.id)
            .where(EventRow.id > floor, EventRow.id <= last)
            .order_by(EventRow.id)
        )
    )
    gaps.learn(existing)
    gaps.record(floor, existing, last)
    return gaps.cursor(last, GAP_TIMEOUT)
