"""Engines and units of work.

SQLite: writers start with ``BEGIN IMMEDIATE`` (one writer at a time, no
upgrade deadlocks), readers with a plain ``BEGIN``; WAL lets them run side by
side; a busy timeout makes a writer wait for the lock instead of failing.

MariaDB/MySQL: READ COMMITTED for writers, so a conditional UPDATE that lost a
race releases its lock at once and each statement sees the newest commits;
REPEATABLE READ for readers, so a snapshot is consistent. ``pool_pre_ping``
replaces connections the server dropped. A whole unit of work is retried on
deadlock (1213) and lock wait timeout (1205).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DatabaseUnavailable

# pymysql.constants.CLIENT.MULTI_STATEMENTS, without importing the driver for
# SQLite-only installs.
MULTI_STATEMENTS = 1 << 16

T = TypeVar("T")

MYSQL_RETRYABLE = {1205, 1213}
MYSQL_UNREACHABLE = {1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013, 2055}


def rows_touched(result: Result[Any]) -> int:
    """Rows matched by an UPDATE: the verdict of a conditional update."""
    return cast(CursorResult[Any], result).rowcount


class Conflict(Exception):
    """Raised inside a unit of work when an optimistic check lost a race; the
    whole unit of work is run again on fresh data."""


def _mysql_code(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _sqlite_busy(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def _duplicate_key(exc: BaseException) -> bool:
    """Another process inserted the same row at the same moment (a key id, a
    spot label): rerunning sees that row and does the right thing."""
    if not isinstance(exc, IntegrityError):
        return False
    return _mysql_code(exc) == 1062 or "UNIQUE constraint failed" in str(exc.orig)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, Conflict) or _sqlite_busy(exc) or _duplicate_key(exc):
        return True
    return isinstance(exc, OperationalError) and _mysql_code(exc) in MYSQL_RETRYABLE


def _unreachable(exc: DBAPIError, url: str) -> DatabaseUnavailable | None:
    code = _mysql_code(exc)
    where = make_url(url).render_as_string(hide_password=True)
    if code in MYSQL_UNREACHABLE:
        args: tuple[object, ...] = getattr(exc.orig, "args", ())
        reason = str(args[1]) if len(args) > 1 else str(exc.orig)
        return DatabaseUnavailable(
            "The database at {where} cannot be used right now: {reason}", where=where, reason=reason
        )
    if "unable to open database file" in str(exc.orig):
        return DatabaseUnavailable("The database file for {where} cannot be opened.", where=where)
    return None


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # No driver-side busy wait: SQLite's own handler sleeps in steps of up to
    # 100 ms, which starves writers under load. `Database` retries a busy
    # BEGIN IMMEDIATE itself with sub-millisecond jitter, up to the timeout.
    engine = create_engine(url, connect_args={"timeout": 0})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=0")
        # A big history must not push the hot index paths out of memory.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA mmap_size=268435456")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        if connection.get_execution_options().get("lotkeeper_read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _mysql_engine(url: str, lock_wait_timeout: int) -> Engine:
    # Multi-statement queries let `core.storage.batch.send` put a chain of
    # hot-path writes in one round trip; every value in them is escaped by
    # the driver, never pasted in. (The dialect adds FOUND_ROWS to this.)
    parsed = make_url(url)
    flags = int(parsed.query.get("client_flag", 0)) | MULTI_STATEMENTS  # type: ignore[arg-type]
    return create_engine(
        parsed.update_query_dict({"client_flag": str(flags)}),
        pool_pre_ping=True,
        pool_recycle=3600,
        # Every unit of work ends in COMMIT or ROLLBACK, and a Session or
        # Connection rolls back whatever is open when it closes; the pool's
        # extra ROLLBACK on check-in would be one more round trip per entry.
        pool_reset_on_return=None,
        isolation_level="READ COMMITTED",
        connect_args={
            "init_command": f"SET SESSION innodb_lock_wait_timeout={int(lock_wait_timeout)}",
            "connect_timeout": 5,
        },
    )


class Database:
    """Owns the engine; runs units of work with the right transaction mode."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_seconds: float = 10.0,
        lock_wait_timeout_seconds: int = 10,
        max_attempts: int = 12,
    ) -> None:
        self.url = url
        self.max_attempts = max_attempts
        self.busy_timeout = busy_timeout_seconds
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url)
            reader = self.engine.execution_options(lotkeeper_read_only=True)
        else:
            self.engine = _mysql_engine(url, lock_wait_timeout_seconds)
            reader = self.engine.execution_options(
                lotkeeper_read_only=True, isolation_level="REPEATABLE READ"
            )
        self.dialect = self.engine.dialect.name
        self._writer = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._reader = sessionmaker(bind=reader, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one read-write transaction, committed when it returns
        and rolled back when it raises. Deadlocks, lock timeouts and `Conflict`
        rerun the whole of `work` with a short, jittered back-off."""
        return self._run(self._writer, work)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one consistent read-only transaction."""
        return self._run(self._reader, work)

    def _run(self, maker: sessionmaker[Session], work: Callable[[Session], T]) -> T:
        attempt = 0
        busy_until = time.monotonic() + self.busy_timeout
        while True:
            attempt += 1
            try:
                with maker() as session, session.begin():
                    return work(session)
            except (Conflict, DBAPIError) as exc:
                if self._wait_to_retry(exc, attempt, busy_until):
                    continue
                if isinstance(exc, Conflict):
                    raise DatabaseUnavailable(
                        "The garage is very busy right now; please try again."
                    ) from exc
                if isinstance(exc, DBAPIError):
                    unavailable = _unreachable(exc, self.url)
                    if unavailable is not None:
                        raise unavailable from exc
                    if _is_retryable(exc):
                        raise DatabaseUnavailable(
                            "The database is too busy right now; please try again."
                        ) from exc
                raise

    def _wait_to_retry(self, exc: BaseException, attempt: int, busy_until: float) -> bool:
        """Sleep briefly and say yes if `exc` is worth another attempt."""
        if _sqlite_busy(exc):
            if time.monotonic() >= busy_until:
                return False
            time.sleep(random.uniform(0.0005, 0.003))
            return True
        if _is_retryable(exc) and attempt < self.max_attempts:
            time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
            return True
        return False

    def run_connected(self, work: Callable[[Engine], T]) -> T:
        """Run `work(engine)` (migrations, checks), waiting out another
        process's SQLite write lock, and turning "cannot reach the database"
        into `DatabaseUnavailable`."""
        busy_until = time.monotonic() + self.busy_timeout
        while True:
            try:
                return work(self.engine)
            except DBAPIError as exc:
                if self._wait_to_retry(exc, self.max_attempts, busy_until):
                    continue
                unavailable = _unreachable(exc, self.url)
                if unavailable is not None:
                    raise unavailable from exc
                raise

    def dispose(self) -> None:
        self.engine.dispose()
