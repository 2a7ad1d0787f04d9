"""Alembic, driven from code: `lotkeeper db upgrade` and first-start migration."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from core.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped (read once: the files do not change)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`. Safe when several processes start at
    once: SQLite serialises them with BEGIN IMMEDIATE, MySQL with GET_LOCK."""
    with engine.connect() as connection:
        is_mysql = connection.dialect.name in ("mysql", "mariadb")
        if is_mysql:
            connection.execute(text("SELECT GET_LOCK('lotkeeper_migrate', 120)"))
            connection.commit()
        try:
            current = MigrationContext.configure(connection).get_current_revision()
            # Already at the newest (every start but the first): nothing to load.
            if not (revision == "head" and current == head_revision()):
                command.upgrade(_config(connection), revision)
            connection.commit()
        finally:
            if is_mysql:
                connection.execute(text("SELECT RELEASE_LOCK('lotkeeper_migrate')"))
                connection.commit()


def require_current(engine: Engine) -> None:
    """Raise `SchemaOutOfDate` unless the database is at the newest revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        state = "has no Lotkeeper tables" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(
            "The database {state}; this Lotkeeper needs {head}. Run `lotkeeper db upgrade`.",
            state=state,
            head=head,
        )
