"""Alembic migrations produce exactly the models' schema, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import settings_for

from core.errors import SchemaOutOfDate
from core.site import open_site
from core.storage import migrate
from core.storage.database import Database
from core.storage.models import Base


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
