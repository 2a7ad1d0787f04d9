"""Races across the nodes of the three-node Galera test cluster (`.ci/galera`):
lanes and consoles on different nodes act on the same ticket or charge at
the same moment, and the cluster still decides each transition once.

On one server a conditional write decides because the second writer waits
for the first one's row lock. Across Galera nodes locks are local: the
second writer is aborted at certification (a deadlock, which the engine
retries) and must then find the row already changed. These tests prove
that path: spawned processes (`race._worker`, each its own interpreter,
engine and pool), one node's URL each, released together by a barrier.
The exit race is shown to fail with its condition planted away
(`_race_actions.PLANTS`); the refund plant is shown to fail when two
consoles share a node (see `test_refund_race_fails_without_its_condition`).
"""

from __future__ import annotations

import multiprocessing
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_layout, settings_for
from helpers import overlapping_claims
from race import TIMEOUT, Call, Round, _worker, call
from sqlalchemy import Select, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from test_galera import caught_up

from core import services as lk
from core.clock import FixedClock
from core.domain import Payment
from core.layout import LotLayout
from core.services import payments
from core.services.layout import load_layout
from core.services.staff import add_staff
from core.site import Site, open_site
from core.storage.models import EventRow, Stay, payments_table, stays_table

pytestmark = [pytest.mark.galera, pytest.mark.slow]

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
NODES = 3


def race_on_nodes(
    urls: Sequence[str],
    data_dir: Path,
    rounds: Sequence[Sequence[Call]],
    *,
    plants: Sequence[str] = (),
) -> list[Round]:
    """`race.race` with one URL per process: process i talks to node
    i % len(urls) only. Returns each round's outcomes in call order; a
    crash (not a `LotkeeperError`) fails the test with its traceback."""
    width = len(rounds[0])
    assert all(len(r) == width for r in rounds), "every round has one call per process"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(width)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_worker,
            args=(
                i,
                urls[i % len(urls)],
                str(data_dir),
                START.isoformat(),
                list(plants),
                {},
                [r[i] for r in rounds],
                barrier,
                results,
            ),
            daemon=True,
        )
        for i in range(width)
    ]
    for process in processes:
        process.start()
    by_process = dict(results.get(timeout=TIMEOUT) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    out = [Round([by_process[i][r] for i in range(width)]) for r in range(len(rounds))]
    crashes = [o for rnd in out for o in rnd.outcomes if o.crashed]
    assert not crashes, crashes[0].message
    return out


@pytest.fixture
def cluster(galera_urls: list[str], tmp_path: Path) -> Iterator[list[str]]:
    """A new database on the cluster, migrated through node 1; its URL on
    each node, node 1 first. Dropped afterwards."""
    name = f"lk_galera_race_{uuid.uuid4().hex[:12]}"
    engine = create_engine(galera_urls[0])
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    urls = [
        make_url(url).set(database=name).render_as_string(hide_password=False)
        for url in galera_urls
    ]
    try:
        open_site(settings_for(urls[0], tmp_path), clock=FixedClock(START)).close()
        yield urls
    finally:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


@pytest.fixture
def opened(cluster: list[str]) -> Iterator[list[Site]]:
    """Sites the test opens, closed before the database is dropped."""
    sites: list[Site] = []
    yield sites
    for site in sites:
        site.close()


def site_on(urls: list[str], node: int, data_dir: Path, opened: list[Site], site_id: str) -> Site:
    """The site `site_id` through one node, on the race's clock."""
    caught_up(urls[node])
    settings = settings_for(urls[node], data_dir)
    settings = settings.model_copy(
        update={"site": settings.site.model_copy(update={"id": site_id})}
    )
    site = open_site(settings, clock=FixedClock(START), rng=random.Random(node))
    opened.append(site)
    return site


def new_lot(
    urls: list[str], data_dir: Path, opened: list[Site], site_id: str, layout: LotLayout
) -> Site:
    site = site_on(urls, 0, data_dir, opened, site_id)
    load_layout(site, layout, source="test")
    return site


def everywhere(urls: list[str]) -> None:
    """Wait until every node has applied what the cluster has committed."""
    for url in urls:
        caught_up(url)


def count(site: Site, model: type[EventRow] | type[Stay], *where: object) -> int:
    query = select(func.count()).select_from(model).where(model.site_id == site.id, *where)  # type: ignore[arg-type]
    return int(site.db.read(lambda s: s.scalar(query)) or 0)


def rows(site: Site, query: Select[Any]) -> list[tuple[Any, ...]]:
    def read(session: Session) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in session.execute(query)]

    return site.db.read(read)


# -- the exit race ------------------------------------------------------------------


def exit_tickets(site: Site) -> list[tuple[int, str]]:
    """Two cars: one still within the grace minutes, one that paid for an
    hour on node 1's pay station. Either may leave now, once."""
    clock = site.clock
    assert isinstance(clock, FixedClock)
    clock.set(START - timedelta(hours=1))
    paid = lk.enter(site, "small", kiosk="entry-1")
    clock.set(START - timedelta(minutes=5))
    grace = lk.enter(site, "small", kiosk="entry-1")
    clock.set(START)
    paying = lk.pay_ticket(site, paid.code, kiosk="pay-1")
    assert payments.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    return [(grace.id, grace.code), (paid.id, paid.code)]


def exit_rounds(site: Site, tickets: list[tuple[int, str]]) -> list[list[Call]]:
    return [
        [call("exit", code, f"exit-{n + 1}", site_id=site.id) for n in range(NODES)]
        for _, code in tickets
    ]


def check_exits(site: Site, tickets: list[tuple[int, str]], results: list[Round]) -> None:
    for (stay, _), result in zip(tickets, results, strict=True):
        assert [o.value for o in result.won()] == [stay], result.outcomes
        assert result.errors() == {"TicketAlreadyUsed": NODES - 1}, result.outcomes
        assert all("already used" in o.message for o in result.refused())
        assert count(site, EventRow, EventRow.kind == "exit", EventRow.stay_id == stay) == 1
    assert count(site, Stay, Stay.exited_at.is_(None)) == 0
    assert lk.availability(site).free == 4


# -- the refund race ----------------------------------------------------------------


def paid_charges(site: Site, how_many: int) -> list[Payment]:
    """Charges for cars that came in an hour ago, paid by card on node 1."""
    clock = site.clock
    assert isinstance(clock, FixedClock)
    charges = []
    for _ in range(how_many):
        clock.set(START - timedelta(hours=1))
        ticket = lk.enter(site, "small")
        clock.set(START)
        paying = lk.pay_ticket(site, ticket.code, kiosk="pay-1")
        charges.append(payments.wait_for_payment(site, paying.id, sleep=lambda _: None))
    return charges


def refund_rounds(site: Site, charges: list[Payment], width: int) -> list[list[Call]]:
    staff = add_staff(site, "Sue", "supervisor", "2468")
    return [[call("refund", staff, c.id, site_id=site.id)] * width for c in charges]


def check_refunds(site: Site, charges: list[Payment], results: list[Round], width: int) -> None:
    for charge, result in zip(charges, results, strict=True):
        assert [o.value for o in result.won()] == [charge.amount], result.outcomes
        assert result.errors() == {"RefundRefused": width - 1}, result.outcomes
        P = payments_table.c
        ledger = select(P.kind, P.amount, P.refunded).where(
            P.site_id == site.id, P.stay_id == charge.stay_id
        )
        assert rows(site, ledger.order_by(P.id)) == [
            ("charge", charge.amount, charge.amount),
            ("refund", charge.amount, 0),
        ]


# -- the tests ----------------------------------------------------------------------


def test_a_ticket_exited_on_three_nodes_at_once_exits_once_and_a_charge_is_refunded_once(
    cluster: list[str], tmp_path: Path, opened: list[Site]
) -> None:
    """Three exit lanes, one per node, scan the same ticket (within grace,
    then paid); three consoles, one per node, refund the same charge in
    full: one exit, two "already used"; one refund, two refused."""
    exits = new_lot(cluster, tmp_path, opened, "exits", make_layout(small=4))
    stays = exit_tickets(exits)
    refunds = new_lot(cluster, tmp_path, opened, "refunds", make_layout(small=4))
    charges = paid_charges(refunds, 2)
    rounds = exit_rounds(exits, stays) + refund_rounds(refunds, charges, NODES)
    everywhere(cluster)

    results = race_on_nodes(cluster, tmp_path, rounds)

    everywhere(cluster)
    for node in range(NODES):  # every node tells the same story
        check_exits(site_on(cluster, node, tmp_path, opened, "exits"), stays, results[:2])
        check_refunds(
            site_on(cluster, node, tmp_path, opened, "refunds"), charges, results[2:], NODES
        )


def test_exit_race_fails_without_its_condition(
    cluster: list[str], tmp_path: Path, opened: list[Site]
) -> None:
    """With `exit_twice` (the exit's UPDATE by id alone) the nodes' exits
    all win, certification or not: the retried loser reads the ticket
    already exited and writes it again. Deterministic, so asserted."""
    exits = new_lot(cluster, tmp_path, opened, "exits", make_layout(small=4))
    stays = exit_tickets(exits)
    rounds = exit_rounds(exits, stays)
    everywhere(cluster)

    results = race_on_nodes(cluster, tmp_path, rounds, plants=["exit_twice"])

    everywhere(cluster)
    with pytest.raises(AssertionError):
        check_exits(exits, stays, results)
    assert [len(r.won()) for r in results] == [NODES, NODES]


def test_refund_race_fails_without_its_condition(
    cluster: list[str], tmp_path: Path, opened: list[Site]
) -> None:
    """With `refund_beyond_the_charge` (the refund's UPDATE adds what the
    console read was left, whatever is left now) the race is lost: two
    consoles per node, so the pair on one node both add the amount they
    read (the second waits for the first one's lock, then writes on top);
    consoles on different nodes are still stopped by certification (the
    retried loser reads nothing left). Several charges, since a console
    that reads after another's commit refuses even when planted."""
    width = 2 * NODES
    refunds = new_lot(cluster, tmp_path, opened, "refunds", make_layout(small=6))
    charges = paid_charges(refunds, 6)
    rounds = refund_rounds(refunds, charges, width)
    everywhere(cluster)

    results = race_on_nodes(cluster, tmp_path, rounds, plants=["refund_beyond_the_charge"])

    everywhere(cluster)
    with pytest.raises(AssertionError):
        check_refunds(refunds, charges, results, width)


def test_cars_entering_on_three_nodes_at_once_never_outnumber_the_spots(
    cluster: list[str], tmp_path: Path, opened: list[Site]
) -> None:
    """Six entry lanes, two per node, each let a small car in per round, four
    rounds, into a lot of 3 small, 3 medium and 2 large spots (a small car
    fits all 8): exactly 8 tickets, 16 "lot full", no spot claimed twice."""
    lot = new_lot(cluster, tmp_path, opened, "hammer", make_layout(small=3, medium=3, large=2))
    width = 2 * NODES
    rounds = [[call("enter", "small", site_id=lot.id)] * width for _ in range(4)]
    everywhere(cluster)

    results = race_on_nodes(cluster, tmp_path, rounds)

    everywhere(cluster)
    entered = [o.value for r in results for o in r.won()]
    assert len(entered) == 8 and len(set(entered)) == 8
    assert sum((r.errors() for r in results), Counter()) == {"LotFull": 4 * width - 8}
    for node in range(NODES):
        site = site_on(cluster, node, tmp_path, opened, "hammer")
        assert overlapping_claims(site) == []
        T = stays_table.c
        spots = select(func.count(func.distinct(T.spot_id))).where(
            T.site_id == site.id, T.exited_at.is_(None)
        )
        assert rows(site, spots) == [(8,)]
        assert count(site, EventRow, EventRow.kind == "entry") == 8
        assert lk.availability(site).free == 0
