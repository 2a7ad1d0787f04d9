"""The event log and its tailer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import SiteFactory, make_layout
from sqlalchemy import insert

from core import services as lk
from core.clock import FixedClock
from core.domain import EventKind
from core.services.events import EventCursor, record_event
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
    assert [i for i, _ in first.cursor.pending] == [base + 1]
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
    assert later.cursor == EventCursor(batch.cursor.last_id)


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
    assert [i for i, _ in snap.cursor.pending] == [base + 1]
    write_event(site, base + 1)
    assert [e.id for e in lk.events_since(site, snap.cursor).events] == [base + 1]


def test_gap_cap_never_skips_a_recorded_gap_and_never_stalls(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.services import events

    monkeypatch.setattr(events, "MAX_PENDING", 3)
    base = lk.events_since(site).cursor.last_id
    write_event(site, base + 3)  # gap: base+1, base+2
    write_event(site, base + 6)  # gap: base+4, base+5
    first = lk.events_since(site, base)
    # Room for 3 gaps: the second row would need 4, so it waits.
    assert [e.id for e in first.events] == [base + 3]
    assert first.cursor.last_id == base + 3
    write_event(site, base + 1)
    write_event(site, base + 2)
    second = lk.events_since(site, first.cursor)
    assert [e.id for e in second.events] == [base + 1, base + 2, base + 6]
    assert [i for i, _ in second.cursor.pending] == [base + 4, base + 5]
    write_event(site, base + 20)  # a gap wider than the cap on its own
    third = lk.events_since(site, second.cursor)
    assert [e.id for e in third.events] == [base + 20]  # the tail moves on
    assert len(third.cursor.pending) == 3
