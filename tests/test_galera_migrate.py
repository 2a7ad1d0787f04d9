"""`lotkeeper db upgrade` on two Galera nodes at once: the guard row
(`migration_lock`) lets one in. `GET_LOCK` would have let both: it locks
one node only."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from test_galera import caught_up, cluster_database  # noqa: F401  (a fixture)

from core.storage import migrate
from core.storage.database import Database
from core.storage.models import MigrationLock

pytestmark = pytest.mark.galera


def test_an_upgrader_on_another_node_is_refused_while_one_migrates(
    cluster_database: list[str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = Database(cluster_database[0]), Database(cluster_database[1])
    original = migrate._migrate
    refusals: list[migrate.MigrationRunning] = []

    def migrate_once(connection: Connection, revision: str) -> None:
        if not refusals:
            caught_up(cluster_database[1])
            with pytest.raises(migrate.MigrationRunning) as refused:
                migrate.upgrade(second.engine, wait_seconds=0.5, sleep=lambda seconds: None)
            refusals.append(refused.value)
        original(connection, revision)

    monkeypatch.setattr(migrate, "_migrate", migrate_once)
    try:
        migrate.upgrade(first.engine)
        assert len(refusals) == 1
        caught_up(cluster_database[1])
        assert migrate.current_revision(second.engine) == migrate.head_revision()
    finally:
        first.dispose()
        second.dispose()


def test_two_nodes_taking_the_guard_at_once_never_both_get_it(
    cluster_database: list[str],  # noqa: F811
) -> None:
    nodes = [Database(url) for url in cluster_database[:2]]
    now = datetime.now(UTC)
    try:
        with nodes[0].engine.connect() as connection:
            migrate._ensure_guard(connection)
            connection.commit()
        for round_ in range(30):
            with nodes[0].engine.connect() as connection:
                connection.execute(update(MigrationLock).values(holder=None, taken_at=None))
                connection.commit()
            caught_up(cluster_database[1])
            barrier = threading.Barrier(2)
            won: list[str] = []

            def take(
                node: Database, holder: str, barrier: threading.Barrier, won: list[str]
            ) -> None:
                with node.engine.connect() as connection:
                    barrier.wait(timeout=30)
                    if migrate._attempt(connection, lambda: migrate._take(connection, holder, now)):
                        won.append(holder)

            threads = [
                threading.Thread(
                    target=take,
                    args=(node, f"node{index} round {round_}", barrier, won),
                )
                for index, node in enumerate(nodes)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert len(won) == 1, won
            caught_up(cluster_database[0])
            with nodes[0].engine.connect() as connection:
                holder = connection.execute(select(MigrationLock.holder)).scalar_one()
            assert holder == won[0]
    finally:
        for node in nodes:
            node.dispose()
