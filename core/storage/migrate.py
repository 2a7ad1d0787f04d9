"""Alembic, driven from code: `lotkeeper db upgrade` and first-start migration.

One upgrader at a time, on any node of a cluster: `upgrade` takes a guard,
the row `schema` of `migration_lock`, by a conditional UPDATE that must touch
one row and commit (on Galera two nodes writing that row at once cannot both
commit: certification aborts one). `GET_LOCK` is not used: on Galera it
locks one node only. A second upgrader polls the guard and refuses after
`wait_seconds` with the holder's name and since when. The guard is released
in `finally`; a holder that crashed is taken over `STALE_AFTER` after it took
the guard, so a migration must not run longer than that.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, Connection, Engine, Table, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from core.errors import LotkeeperError, SchemaOutOfDate
from core.storage.database import rows_touched
from core.storage.models import MigrationLock

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

GUARD = "schema"
STALE_AFTER = timedelta(minutes=15)
"""A guard taken longer ago than this belongs to an upgrader that crashed."""
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.25

log = logging.getLogger(__name__)
_lock = cast(Table, MigrationLock.__table__)


class MigrationRunning(LotkeeperError):
    code = "migration_running"


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
    # A reader (plain BEGIN on SQLite): it does not queue behind a migration.
    with engine.connect().execution_options(lotkeeper_read_only=True) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _transient(exc: DBAPIError) -> bool:
    """Lost a race for the guard row: SQLite busy, a MySQL deadlock or a
    Galera certification failure (1213), a duplicate insert (1062)."""
    code = getattr(exc.orig, "args", (None,))[0]
    return code in (1062, 1213) or "database is locked" in str(exc.orig)


def _attempt(connection: Connection, step: Callable[[], Any]) -> Any:
    """Run `step` in its own committed transaction; None if it lost a race."""
    try:
        result = step()
        connection.commit()
        return result
    except DBAPIError as exc:
        connection.rollback()
        if not _transient(exc):
            raise
        return None


def _ensure_guard(connection: Connection) -> bool:
    # IF NOT EXISTS: two first upgraders may create it at once (on Galera,
    # DDL replicates to every node in total order).
    connection.execute(CreateTable(_lock, if_not_exists=True))
    connection.execute(
        insert(_lock)
        .values(name=GUARD)
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
    )
    return True


def _guard_is_free(stale_before: datetime) -> ColumnElement[bool]:
    return or_(_lock.c.holder.is_(None), _lock.c.taken_at < stale_before)


def _take(connection: Connection, holder: str, now: datetime) -> bool:
    result = connection.execute(
        update(_lock)
        .where(_lock.c.name == GUARD, _guard_is_free(now - STALE_AFTER))
        .values(holder=holder, taken_at=now)
    )
    return rows_touched(result) == 1


def _release(connection: Connection, holder: str) -> bool:
    connection.execute(
        update(_lock)
        .where(_lock.c.name == GUARD, _lock.c.holder == holder)
        .values(holder=None, taken_at=None)
    )
    return True


def _migrate(connection: Connection, revision: str) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    if not (revision == "head" and current == head_revision()):
        command.upgrade(_config(connection), revision)
    connection.commit()


def upgrade(
    engine: Engine,
    revision: str = "head",
    *,
    wait_seconds: float = WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _utcnow,
) -> None:
    """Bring the schema to `revision`, holding the cluster-wide guard (see
    the module docstring). Safe when several processes start at once: the
    others wait for the first, then find nothing to do. Raises
    `MigrationRunning` if the guard stays taken for `wait_seconds`."""
    if revision == "head" and current_revision(engine) == head_revision():
        return  # every start but the first: no guard, nothing to load
    holder = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
    with engine.connect() as connection:
        waited = 0.0
        while True:
            if _attempt(connection, lambda: _ensure_guard(connection)) and _attempt(
                connection, lambda: _take(connection, holder, now())
            ):
                break
            if waited >= wait_seconds:
                row = connection.execute(select(_lock).where(_lock.c.name == GUARD)).first()
                connection.rollback()
                raise MigrationRunning(
                    "Another `lotkeeper db upgrade` is running (holder {holder}, since "
                    "{since}); waited {waited:.0f} s. A crashed upgrader's guard is taken "
                    "over {stale:.0f} minutes after it was taken.",
                    holder=row.holder if row else "unknown",
                    since=row.taken_at.isoformat() if row and row.taken_at else "unknown",
                    waited=waited,
                    stale=STALE_AFTER.total_seconds() / 60,
                )
            sleep(POLL_SECONDS)
            waited += POLL_SECONDS
        try:
            _migrate(connection, revision)
        finally:
            connection.rollback()
            for _ in range(20):
                if _attempt(connection, lambda: _release(connection, holder)):
                    break
                sleep(POLL_SECONDS)
            else:
                log.warning("migration guard not released; it goes stale in %s", STALE_AFTER)


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
