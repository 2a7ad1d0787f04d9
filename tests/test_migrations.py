"""Alembic migrations produce exactly the models' schema, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import settings_for
from sqlalchemy import Connection, select, true, update

from core.errors import SchemaOutOfDate
from core.site import open_site
from core.storage import migrate
from core.storage.database import Database
from core.storage.models import Base, MigrationLock


def test_migrations_match_the_models(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db.engine)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    db.dispose()
    assert diff == []


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db.engine)
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    db.dispose()


def test_unmigrated_database_is_refused_with_the_fix(db_url: str, tmp_path: Path) -> None:
    settings = settings_for(db_url, tmp_path)
    settings = settings.model_copy(
        update={"database": settings.database.model_copy(update={"auto_migrate": False})}
    )
    with pytest.raises(SchemaOutOfDate, match="lotkeeper db upgrade"):
        open_site(settings)


def test_first_start_migrates_seeds_and_creates_a_secret(tmp_path: Path) -> None:
    from core import services as lk
    from core.config import load_settings

    site = open_site(load_settings(paths={"data_dir": str(tmp_path)}))
    try:
        assert lk.availability(site).total == 450
        secret = tmp_path / "ticket-secret"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert len(secret.read_text().strip()) >= 32
    finally:
        site.close()
    again = open_site(load_settings(paths={"data_dir": str(tmp_path)}))
    try:
        assert lk.availability(again).total == 450  # not seeded twice
        assert [e.kind for e in lk.recent_events(again).events] == ["lot_loaded"]
    finally:
        again.close()


# The cluster-wide guard (`migration_lock`): one upgrader at a time.


def _guard(db: Database) -> tuple[str | None, datetime | None]:
    with db.engine.connect() as connection:
        row = connection.execute(
            select(MigrationLock.holder, MigrationLock.taken_at).where(
                MigrationLock.name == migrate.GUARD
            )
        ).one()
    return row.holder, row.taken_at


def _hold(db: Database, holder: str | None, taken_at: datetime | None) -> None:
    """Another upgrader (or one that crashed) holds the guard."""
    with db.engine.connect() as connection:
        migrate._ensure_guard(connection)
        connection.execute(
            update(MigrationLock)
            .where(MigrationLock.name == migrate.GUARD)
            .values(holder=holder, taken_at=taken_at)
        )
        connection.commit()


def _second_upgrader_while_the_first_migrates(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[float], BaseException | None, str | None]:
    """Upgrader A, inside its guarded migration, starts upgrader B on its own
    engine; returns B's sleeps, what B raised, and A's holder name."""
    first, second = Database(db_url), Database(db_url)
    original = migrate._migrate
    sleeps: list[float] = []
    outcome: list[BaseException | None] = []
    seen: list[str | None] = []

    def migrate_once(connection: Connection, revision: str) -> None:
        if not seen:  # A, not B (B gets in only when the guard is broken)
            seen.append(_guard(first)[0])
            try:
                migrate.upgrade(second.engine, wait_seconds=1.0, sleep=sleeps.append)
                outcome.append(None)
            except migrate.MigrationRunning as exc:
                outcome.append(exc)
        original(connection, revision)

    monkeypatch.setattr(migrate, "_migrate", migrate_once)
    try:
        migrate.upgrade(first.engine)
        assert _guard(first)[0] is None  # released
    finally:
        first.dispose()
        second.dispose()
    return sleeps, outcome[0], seen[0]


def _check_second_was_refused(
    sleeps: list[float], error: BaseException | None, holder: str | None
) -> None:
    assert holder is not None
    assert isinstance(error, migrate.MigrationRunning)
    assert "Another `lotkeeper db upgrade` is running" in str(error)
    assert f"holder {holder}" in str(error)
    assert sleeps == [migrate.POLL_SECONDS] * 4  # waited 1 s, then refused


def _must_not_wait(seconds: float) -> None:
    pytest.fail("the upgrader waited for a guard it should have taken")


def test_a_second_upgrader_waits_then_refuses_while_the_guard_is_held(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_second_was_refused(*_second_upgrader_while_the_first_migrates(db_url, monkeypatch))


def test_the_check_catches_a_guard_without_its_condition(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plant: taking the guard whether or not it is held lets B in."""
    monkeypatch.setattr(migrate, "_guard_is_free", lambda stale_before: true())
    outcome = _second_upgrader_while_the_first_migrates(db_url, monkeypatch)
    assert outcome[1] is None  # B migrated while A held the guard
    with pytest.raises(AssertionError):
        _check_second_was_refused(*outcome)


def test_a_waiting_upgrader_goes_on_once_the_guard_is_released(db_url: str) -> None:
    db = Database(db_url)
    _hold(db, "booth pid 7 0badc0de", datetime.now(UTC))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        _hold(db, None, None)  # the other one finishes

    try:
        migrate.upgrade(db.engine, sleep=sleep)
        assert migrate.current_revision(db.engine) == migrate.head_revision()
        assert sleeps == [migrate.POLL_SECONDS]
        assert _guard(db) == (None, None)
    finally:
        db.dispose()


def test_the_guard_is_released_when_a_migration_fails(db_url: str) -> None:
    db = Database(db_url)
    try:
        with pytest.raises(Exception, match="no-such-revision"):
            migrate.upgrade(db.engine, "no-such-revision")
        assert _guard(db) == (None, None)
        migrate.upgrade(db.engine, sleep=_must_not_wait)
        assert migrate.current_revision(db.engine) == migrate.head_revision()
    finally:
        db.dispose()


def test_a_stale_holder_is_taken_over_and_a_fresh_one_is_not(db_url: str) -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    db = Database(db_url)
    try:
        fresh = now - migrate.STALE_AFTER + timedelta(seconds=1)
        _hold(db, "kiosk-2 pid 40 feedf00d", fresh)
        with pytest.raises(migrate.MigrationRunning, match=r"holder kiosk-2 pid 40 feedf00d"):
            migrate.upgrade(db.engine, wait_seconds=0, sleep=_must_not_wait, now=lambda: now)
        assert migrate.current_revision(db.engine) is None

        _hold(db, "kiosk-2 pid 40 feedf00d", now - migrate.STALE_AFTER - timedelta(seconds=1))
        migrate.upgrade(db.engine, wait_seconds=0, sleep=_must_not_wait, now=lambda: now)
        assert migrate.current_revision(db.engine) == migrate.head_revision()
        assert _guard(db) == (None, None)
    finally:
        db.dispose()
