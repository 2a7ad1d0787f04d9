"""Shared fixtures: every database test runs on SQLite and on MariaDB.

MariaDB comes from LOTKEEPER_TEST_MYSQL_URL (`.ci/run` sets it and fails if
MariaDB is down); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.clock import FixedClock
from core.config import Settings, load_settings
from core.layout import LotLayout, parse_layout
from core.services import load_layout
from core.site import Site, open_site

MYSQL_URL_ENV = "LOTKEEPER_TEST_MYSQL_URL"
GALERA_URLS_ENV = "LOTKEEPER_TEST_GALERA_URLS"
SECRET = "test-secret-" + "x" * 40


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n`, `--dist loadgroup`) the slow multi-process
    tests run one after another on one worker: each spawns processes with
    connection pools of their own, and several at once would be more than a
    stock MariaDB's 151 connections, and would race for the same two cores
    they are meant to contend on. The Galera tests join them: three nodes
    on the same two cores are busy enough with one test at a time."""
    for item in items:
        if item.get_closest_marker("slow") is not None or item.get_closest_marker("galera"):
            item.add_marker(pytest.mark.xdist_group("slow"))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from the test, not from the machine running it."""
    for name in list(os.environ):
        if name.startswith("LOTKEEPER_") and name not in (MYSQL_URL_ENV, GALERA_URLS_ENV):
            monkeypatch.delenv(name)


def mysql_server_url() -> str | None:
    return os.environ.get(MYSQL_URL_ENV) or None


@pytest.fixture
def galera_urls() -> list[str]:
    """The URLs of the three-node Galera test cluster's nodes, node 1 first,
    from LOTKEEPER_TEST_GALERA_URLS (comma-separated; `.ci/run` starts the
    cluster with `.ci/galera` and sets it). Unset, the test is skipped on a
    developer's machine and fails under CI (`CI` set), where it must run."""
    urls = [url.strip() for url in os.environ.get(GALERA_URLS_ENV, "").split(",") if url.strip()]
    if not urls:
        message = f"{GALERA_URLS_ENV} is not set (.ci/run sets it; see docs/operations.md)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
    return urls


def create_mysql_database() -> str:
    """A fresh, empty database on the test server; returns its URL."""
    server = mysql_server_url()
    assert server is not None
    name = f"lk_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_mysql_database(url: str) -> None:
    server = mysql_server_url()
    assert server is not None
    name = make_url(url).database
    engine = create_engine(server)
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a new MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lotkeeper.sqlite3'}"
        return
    if mysql_server_url() is None:
        pytest.skip(f"{MYSQL_URL_ENV} is not set (.ci/run sets it)")
    url = create_mysql_database()
    try:
        yield url
    finally:
        drop_mysql_database(url)


def make_layout(small: int = 0, medium: int = 0, large: int = 0, levels: int = 1) -> LotLayout:
    """A layout with the given spot counts per size, split over `levels`."""
    data: dict[str, Any] = {"name": "Test lot", "levels": []}
    for level in range(1, levels + 1):
        rows = []
        for letter, size, count in (
            ("S", "small", small),
            ("M", "medium", medium),
            ("L", "large", large),
        ):
            share = count // levels + (1 if level <= count % levels else 0)
            if share:
                rows.append({"prefix": f"{level}{letter}", "count": share, "size": size})
        data["levels"].append({"name": f"Level {level}", "rows": rows})
    return parse_layout(data, "test layout")


def settings_for(url: str, data_dir: Path, **lot: Any) -> Settings:
    return load_settings(
        database={"url": url, "auto_migrate": True},
        paths={"data_dir": str(data_dir)},
        tickets={"secret": SECRET},
        lot=lot,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


SiteFactory = Callable[..., Site]


class MigratedTemplates:
    """One database per kind migrated once per test session; each test's
    empty database gets a copy of its schema instead of running every
    migration again (most of a MariaDB test's set-up time). The migrations
    themselves are tested on empty databases (`test_migrations.py`)."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._sqlite: Path | None = None
        self._mysql: str | None = None

    def _migrated(self, url: str) -> None:
        from core.storage import migrate
        from core.storage.database import Database

        db = Database(url)
        try:
            db.run_connected(migrate.upgrade)
        finally:
            db.dispose()

    def fill(self, url: str) -> None:
        """Give the empty database at `url` the newest schema."""
        if url.startswith("sqlite"):
            target = Path(make_url(url).database or "")
            if target.exists():
                return
            if self._sqlite is None:
                self._sqlite = self._base / "template.sqlite3"
                self._migrated(f"sqlite:///{self._sqlite}")
            shutil.copyfile(self._sqlite, target)
            return
        if self._mysql is None:
            self._mysql = create_mysql_database()
            self._migrated(self._mysql)
        source = make_url(self._mysql).database
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                if connection.execute(text("SHOW TABLES")).first() is not None:
                    return
                connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                tables = connection.execute(text(f"SHOW TABLES FROM `{source}`")).scalars()
                for table in list(tables):
                    ddl = connection.execute(text(f"SHOW CREATE TABLE `{source}`.`{table}`")).one()[
                        1
                    ]
                    connection.execute(text(ddl))
                connection.execute(
                    text(f"INSERT INTO alembic_version SELECT * FROM `{source}`.alembic_version")
                )
                connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
        finally:
            engine.dispose()

    def close(self) -> None:
        if self._mysql is not None:
            drop_mysql_database(self._mysql)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.close()


@pytest.fixture
def make_site(
    db_url: str, tmp_path: Path, clock: FixedClock, migrated_templates: MigratedTemplates
) -> Iterator[SiteFactory]:
    """Open sites on the test database (given the schema from a migrated
    template); `layout` is loaded when given."""
    opened: list[Site] = []
    migrated_templates.fill(db_url)

    def factory(layout: LotLayout | None = None, site_id: str = "demo", **lot: Any) -> Site:
        settings = settings_for(db_url, tmp_path, **lot)
        settings = settings.model_copy(
            update={"site": settings.site.model_copy(update={"id": site_id})}
        )
        site = open_site(settings, clock=clock, rng=random.Random(7))
        opened.append(site)
        if layout is not None:
            load_layout(site, layout, source="test")
        return site

    yield factory
    for site in opened:
        site.close()


@pytest.fixture
def site(make_site: SiteFactory) -> Site:
    """A small lot: 2 small, 3 medium, 1 large spots."""
    return make_site(make_layout(small=2, medium=3, large=1))
