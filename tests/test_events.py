"""The event log and its tailer."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import SiteFactory, make_layout
from sqlalchemy import event, insert

from core import services as lk
from core.clock import FixedClock
from core.domain import EventKind
from core.services.events import (
    GAP_TIMEOUT,
    RUN_SPAN,
    EventCursor,
    IdRun,
    record_event,
    track_gaps,
)
from core.site import Site
from core.storage.models import EventRow


def write_event(site: Site, event_id: int, site_id: str | None = None) -> None:
    """Insert an event with a chosen id, as a late-committing writer would."""
    site.db.write(
        lambda s: s.execute(
            insert(EventRow).values(
                id=event_id,
                site_id=site_id or site.id,
                at=site.clock.now(),
                kind="test",
                source="",
                message=f"event {event_id}",
                data="{}",
            )
        )
    )


def test_each_change_appends_one_event_in_its_transaction(site: Site) -> None:
    start = lk.events_since(site).cursor
    ticket = lk.enter(site, "small", plate="AB1", kiosk="entry-1")
    lk.exit(site, ticket.code, kiosk="exit-1")
    events = lk.events_since(site, start).events
    assert [(e.kind, e.source, e.ticket_id, e.spot_label) for e in events] == [
        ("entry", "entry-1", ticket.id, ticket.spot_label),
        ("exit", "exit-1", ticket.id, ticket.spot_label),
    ]
    assert events[0].data == {"plate": "AB1", "size": "small", "spot_size": "small"}


def test_failed_change_leaves_no_event(site: Site) -> None:
    start = lk.events_since(site).cursor
    with pytest.raises(Exception, match="licence plate"):
        lk.enter(site, "small", plate="!!")
    assert lk.events_since(site, start).events == ()


def test_tailer_pages_through_events(site: Site) -> None:
    start = lk.events_since(site).cursor
    for _ in range(5):
        lk.enter(site, "small")
    first = lk.events_since(site, start, limit=3)
    rest = lk.events_since(site, first.cursor, limit=3)
    assert len(first.events) == 3 and len(rest.events) == 2
    assert lk.events_since(site, rest.cursor).events == ()


def test_tailer_does_not_lose_an_event_that_commits_after_a_higher_id(site: Site) -> None:
    base = lk.events_since(site).cursor.last_id
    write_event(site, base + 2)  # id base+1 is allocated but not yet committed
    first = lk.events_since(site, base)
    assert [e.id for e in first.events] == [base + 2]
    assert first.cursor.waiting_ids() == [base + 1]
    write_event(site, base + 1)  # ... and now it commits
    second = lk.events_since(site, first.cursor)
    assert [e.id for e in second.events] == [base + 1]
    assert second.cursor.pending == ()


def test_a_gap_that_never_fills_is_dropped_after_the_timeout(site: Site, clock: FixedClock) -> None:
    base = lk.events_since(site).cursor.last_id
    write_event(site, base + 2)  # base+1 was rolled back: it never appears
    batch = lk.events_since(site, base)
    clock.advance(seconds=29)
    batch = lk.events_since(site, batch.cursor)
    assert len(batch.cursor.pending) == 1
    clock.advance(seconds=2)
    assert lk.events_since(site, batch.cursor).cursor.pending == ()


def test_ids_used_by_another_site_are_not_gaps(make_site: SiteFactory) -> None:
    north = make_site(make_layout(small=1), site_id="north")
    south = make_site(make_layout(small=1), site_id="south")
    start = lk.events_since(north).cursor
    lk.enter(south, "small")
    lk.enter(north, "small")
    batch = lk.events_since(north, start)
    assert [e.kind for e in batch.events] == ["entry"]
    assert batch.cursor.pending == ()


def test_recent_events_returns_oldest_first_and_a_cursor(site: Site) -> None:
    for _ in range(3):
        lk.enter(site, "small")
    recent = lk.recent_events(site, limit=2)
    assert [e.kind for e in recent.events] == ["entry", "entry"]
    assert recent.events[0].id < recent.events[1].id
    lk.enter(site, "small")
    assert len(lk.events_since(site, recent.cursor).events) == 1


# SQLite has one writer at a time, so its ids cannot commit out of order; the
# explicit-id test above covers what the tailer sees there.
@pytest.mark.mysql
@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_out_of_order_commits_on_mariadb_are_delivered(make_site: SiteFactory) -> None:
    """Two real transactions: the first takes an id and commits last."""
    site = make_site(make_layout(small=1))
    assert not site.db.is_sqlite
    cursor = lk.events_since(site).cursor
    slow = site.db.engine.connect()
    slow_tx = slow.begin()
    slow.execute(
        insert(EventRow).values(
            site_id=site.id, at=site.clock.now(), kind="test", source="", message="slow", data="{}"
        )
    )
    site.db.write(lambda s: record_event(s, site.id, site.clock.now(), EventKind.ENTRY, "fast"))
    batch = lk.events_since(site, cursor)
    assert [e.message for e in batch.events] == ["fast"]
    assert len(batch.cursor.pending) == 1
    slow_tx.commit()
    slow.close()
    later = lk.events_since(site, batch.cursor)
    assert [e.message for e in later.events] == ["slow"]
    assert later.events[0].id < batch.events[0].id
    assert later.cursor.pending == () and later.cursor.last_id == batch.cursor.last_id


@pytest.mark.mysql
@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_mariadb_ids_stepping_by_three_are_learned_not_waited_for(
    make_site: SiteFactory,
) -> None:
    """Every connection steps ids by 3 from offset 2, as a Galera node does."""
    site = make_site(make_layout(small=4))

    def stepped(dbapi: Any, _record: Any) -> None:
        with dbapi.cursor() as c:
            c.execute("SET SESSION auto_increment_increment=3, auto_increment_offset=2")

    event.listen(site.db.engine, "connect", stepped)
    site.db.engine.dispose()
    lk.enter(site, "small")
    # A tail that starts here: the lot's first event (step 1) is behind it.
    start = lk.events_since(site).cursor.last_id
    lk.enter(site, "small")
    lk.enter(site, "small")
    batch = lk.events_since(site, start)
    assert batch.cursor.step == 3
    assert [e.kind for e in batch.events] == ["entry", "entry"]
    assert batch.events[1].id - batch.events[0].id == 3
    assert batch.cursor.pending == ()
    slow = site.db.engine.connect()
    slow_tx = slow.begin()
    slow.execute(
        insert(EventRow).values(
            site_id=site.id, at=site.clock.now(), kind="test", source="", message="slow", data="{}"
        )
    )
    site.db.write(lambda s: record_event(s, site.id, site.clock.now(), EventKind.ENTRY, "fast"))
    fast = lk.events_since(site, batch.cursor)
    assert [e.message for e in fast.events] == ["fast"]
    assert fast.cursor.waiting_ids() == [fast.events[0].id - 3]
    slow_tx.commit()
    slow.close()
    later = lk.events_since(site, fast.cursor)
    assert [e.message for e in later.events] == ["slow"]
    assert later.cursor.pending == ()


def test_snapshot_cursor_follows_on_from_the_picture(site: Site, clock: FixedClock) -> None:
    lk.enter(site, "small")
    snap = lk.snapshot(site)
    clock.advance(timedelta(minutes=1))
    ticket = lk.enter(site, "small")
    events = lk.events_since(site, snap.cursor).events
    assert [(e.kind, e.ticket_id) for e in events] == [("entry", ticket.id)]


def test_snapshot_cursor_waits_for_ids_still_in_flight(site: Site) -> None:
    base = lk.events_since(site).cursor.last_id
    write_event(site, base + 2)  # base+1 is still committing
    snap = lk.snapshot(site)
    assert snap.cursor.last_id == base + 2
    assert snap.cursor.waiting_ids() == [base + 1]
    write_event(site, base + 1)
    assert [e.id for e in lk.events_since(site, snap.cursor).events] == [base + 1]


def test_a_wide_gap_is_one_run_and_the_tail_never_stops_short(site: Site) -> None:
    base = lk.events_since(site).cursor.last_id
    write_event(site, base + 3)  # gap: base+1, base+2
    write_event(site, base + 100_000)  # a hole far wider than any cap was
    first = lk.events_since(site, base)
    assert [e.id for e in first.events] == [base + 3, base + 100_000]
    assert first.cursor.last_id == base + 100_000
    assert [(r.first, r.last) for r in first.cursor.pending] == [
        (base + 1, base + 2),
        (base + 4, base + 99_999),
    ]
    write_event(site, base + 2)
    write_event(site, base + 500)
    second = lk.events_since(site, first.cursor)
    assert [e.id for e in second.events] == [base + 2, base + 500]
    assert [(r.first, r.last) for r in second.cursor.pending] == [
        (base + 1, base + 1),
        (base + 4, base + 499),
        (base + 501, base + 99_999),
    ]


def test_ids_stepping_by_the_increment_are_not_gaps(site: Site) -> None:
    """Galera with three nodes and one writing: ids 1, 4, 7... (the cursor
    has learned a step of 3 from the server)."""
    base = lk.events_since(site).cursor.last_id
    for k in range(1, 6):
        write_event(site, base + 3 * k)
    batch = lk.events_since(site, EventCursor(base, step=3))
    assert [e.id for e in batch.events] == [base + 3 * k for k in range(1, 6)]
    assert batch.cursor.pending == ()
    # The node's own late commit is still waited for: base+18 is missing.
    write_event(site, base + 21)
    later = lk.events_since(site, batch.cursor)
    assert later.cursor.waiting_ids() == [base + 18]
    write_event(site, base + 18)
    assert [e.id for e in lk.events_since(site, later.cursor).events] == [base + 18]


def test_every_residue_in_use_is_a_possible_gap(site: Site, clock: FixedClock) -> None:
    """Galera with all three nodes writing: any id may still come."""
    base = lk.events_since(site).cursor.last_id
    base += 3 - base % 3  # residue 0 is base's, 1 and 2 follow it
    for offset in (1, 2, 3, 4, 6, 8, 9):
        write_event(site, base + offset)
    batch = lk.events_since(site, EventCursor(base, step=3))
    assert batch.cursor.waiting_ids() == [base + 5, base + 7]
    write_event(site, base + 7)
    later = lk.events_since(site, batch.cursor)
    assert [e.id for e in later.events] == [base + 7]
    assert later.cursor.waiting_ids() == [base + 5]
    clock.advance(seconds=31)  # base+5 was rolled back
    assert lk.events_since(site, later.cursor).cursor.pending == ()


def test_a_node_seen_first_is_looked_back_for(site: Site) -> None:
    """Node 3 starts writing: its id below what was delivered may be in flight."""
    base = lk.events_since(site).cursor.last_id
    base += 3 - base % 3
    write_event(site, base + 1)
    write_event(site, base + 4)
    first = lk.events_since(site, EventCursor(base, step=3))
    assert first.cursor.pending == ()
    write_event(site, base + 6)  # node 3's first id; its base+3 still commits
    second = lk.events_since(site, first.cursor)
    assert base + 3 in second.cursor.waiting_ids()
    write_event(site, base + 3)
    assert [e.id for e in lk.events_since(site, second.cursor).events] == [base + 3]


class Stream:
    """An in-memory events table for `track_gaps`: committed ids, one site,
    also kept by residue so asking for a run costs what it finds."""

    def __init__(self, step: int = 3) -> None:
        self.step = step
        self.committed: list[int] = []
        self.by_residue: dict[int, list[int]] = {}

    def commit(self, event_id: int) -> None:
        bisect.insort(self.committed, event_id)
        bisect.insort(self.by_residue.setdefault(event_id % self.step, []), event_id)

    def ids_between(self, lo: int, hi: int) -> list[int]:
        ids = self.committed
        return ids[bisect.bisect_right(ids, lo) : bisect.bisect_right(ids, hi)]

    def ask(self, runs: list[IdRun], step: int) -> set[int]:
        assert step == self.step
        found: set[int] = set()
        for run in runs:
            ids = self.by_residue.get(run.first % step, [])
            found.update(
                ids[bisect.bisect_left(ids, run.first) : bisect.bisect_right(ids, run.last)]
            )
        return found


def run_stream(
    offsets: tuple[int, ...], seconds: int, *, per_poll: int = 100, step: int = 3
) -> tuple[Stream, set[int], int, EventCursor, set[int]]:
    """10,000 events a second polled every 10 ms of injected clock, ids
    taken in turn from the nodes at `offsets`. Every 50th commits a poll late,
    every 5,000th is rolled back. Returns the stream, the delivered ids, the
    most runs the cursor held, the last cursor and the rolled-back ids."""
    stream, delivered = Stream(), set[int]()
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    cursor, next_id = EventCursor(0, step=step), 0
    late: list[int] = []
    rolled_back: set[int] = set()
    most = 0
    n = 0
    for _ in range(seconds * 100):
        for event_id in late:
            stream.commit(event_id)
        late = []
        for _ in range(per_poll):
            node = offsets[n % len(offsets)]
            next_id += 1 + (node - next_id - 1) % step
            n += 1
            if n % 5000 == 0:
                rolled_back.add(next_id)
            elif n % 50 == 0:
                late.append(next_id)
            else:
                stream.commit(next_id)

        def ask(runs: list[IdRun], step: int) -> set[int]:
            found = stream.ask(runs, step)
            assert not found & delivered, "delivered twice"
            delivered.update(found)
            return found

        rows = stream.ids_between(cursor.last_id, 10**12)[:1000]
        assert not set(rows) & delivered, "delivered twice"
        delivered.update(rows)
        cursor = track_gaps(
            cursor,
            step,
            rows[-1] if rows else None,
            clock.now(),
            GAP_TIMEOUT,
            ask,
            stream.ids_between,
        )
        most = max(most, len(cursor.pending))
        clock.advance(timedelta(milliseconds=10))
    for event_id in late:
        stream.commit(event_id)
    cursor = track_gaps(cursor, step, None, clock.now(), GAP_TIMEOUT, ask, stream.ids_between)
    return stream, delivered, most, cursor, rolled_back


@pytest.mark.parametrize("offsets", [(1,), (1, 2, 3)], ids=["one-node", "three-nodes"])
def test_ten_thousand_stepped_events_a_second_for_a_minute(offsets: tuple[int, ...]) -> None:
    stream, delivered, most, cursor, rolled_back = run_stream(offsets, 60)
    late_final = set(stream.committed) - delivered
    assert len(stream.committed) > 590_000
    assert late_final == set()  # the last poll's late commits came in too
    # Only real holes are waited for: the rolled-back ids of the last 30 s
    # (and the late ones of the last poll, not committed yet).
    assert set(cursor.waiting_ids()) - rolled_back == set()
    assert len(cursor.waiting_ids()) <= 61
    assert most <= 70


def test_a_node_that_stops_writing_costs_bounded_runs() -> None:
    """All three nodes write, then one goes on alone: the others' ids are
    waited for as runs (a few per second), forgotten 30 s after their node
    was last seen."""
    stream = Stream()
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    for event_id in (1, 2, 3):
        stream.commit(event_id)
    cursor = track_gaps(
        EventCursor(0, step=3), 3, 3, clock.now(), GAP_TIMEOUT, stream.ask, stream.ids_between
    )
    most = 0
    next_id = 4
    for _ in range(6000):  # 60 s at 10 ms, 100 ids a poll from node 1
        clock.advance(timedelta(milliseconds=10))
        for _ in range(100):
            stream.commit(next_id)
            next_id += 3
        cursor = track_gaps(
            cursor, 3, next_id - 3, clock.now(), GAP_TIMEOUT, stream.ask, stream.ids_between
        )
        most = max(most, len(cursor.pending))
    assert most <= 2 * (GAP_TIMEOUT // RUN_SPAN + 1)
    assert cursor.pending == () and [r for r, _ in cursor.residues] == [1]
