"""Engines and units of work.

SQLite: writers start with ``BEGIN IMMEDIATE`` (one writer at a time, no
upgrade deadlocks), readers with a plain ``BEGIN``; WAL lets them run side by
side; a busy timeout makes a writer wait for the lock instead of failing.

MariaDB/MySQL: READ COMMITTED for writers, so a conditional UPDATE that lost a
race releases its lock at once and each statement sees the newest commits;
REPEATABLE READ for readers, so a snapshot is consistent. ``pool_pre_ping``
replaces connections the server dropped. A whole unit of work is retried on
deadlock (1213) and lock wait timeout (1205).

Several nodes (a Galera cluster): `Database` keeps one engine per node and
runs each unit of work on the first node, in the configured order, that is
not marked down. A node is marked down when connecting to it fails, or a unit
of work on it fails, with a lost connection (2002, 2003, 2006, 2013) or
"node not ready" (1047, a node that lost its cluster's quorum). A connect-time
failure is tried again at once on the next node: no statement was sent. A
unit of work whose connection broke after it began is never rerun (its
COMMIT may have happened): the caller gets `DatabaseUnavailable` and the
*next* unit of work goes to the next node. A down node is tried again
`retry_down_after` seconds later, and the engine goes back to an earlier
(preferred) node as soon as it answers, so a site's writes gather on its
first node again (fewer certification conflicts). Each move is logged once
and passed to `on_node_move`. On a Galera node each session sets
``wsrep_sync_wait = 1``: its reads wait until the node has applied every
commit the cluster had when the read began.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core.errors import DatabaseUnavailable

# pymysql.constants.CLIENT.MULTI_STATEMENTS, without importing the driver for
# SQLite-only installs.
MULTI_STATEMENTS = 1 << 16

T = TypeVar("T")

log = logging.getLogger(__name__)

MYSQL_RETRYABLE = {1205, 1213}
MYSQL_UNREACHABLE = {1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013, 2055}
MYSQL_NODE_NOT_READY = 1047
# The node, not the request, is at fault: another node may well answer.
# (Access denied or an unknown database would be the same on every node.)
MYSQL_NODE_FAILURE = {2002, 2003, 2006, 2013, 2055, MYSQL_NODE_NOT_READY}
RETRY_DOWN_AFTER_SECONDS = 5.0


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


def _where(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def node_failure(exc: BaseException) -> bool:
    """True when `exc` says the node is gone or not part of its cluster
    (lost connection, 1047), so that another node should be used."""
    return isinstance(exc, DBAPIError) and _mysql_code(exc) in MYSQL_NODE_FAILURE


def failure_behind(exc: DBAPIError) -> DBAPIError:
    """The node failure behind `exc`, or `exc`. A statement cut off (2013)
    is often followed by a ROLLBACK on the dead connection, which fails with
    a bare InterfaceError(0, ''): the error that reaches the unit of work is
    that one, with the lost connection only in its context."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, DBAPIError) and node_failure(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _unreachable(exc: DBAPIError, url: str) -> DatabaseUnavailable | None:
    code = _mysql_code(exc)
    where = _where(url)
    if code == MYSQL_NODE_NOT_READY:
        return DatabaseUnavailable(
            "The database node at {where} is not ready (it lost its cluster); "
            "please try again in a moment.",
            where=where,
        )
    if code in MYSQL_UNREACHABLE:
        return DatabaseUnavailable(
            "The database at {where} cannot be used right now: {reason}",
            where=where,
            reason=_reason(exc),
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


def wait_for_cluster_reads(dbapi_connection: Any) -> bool:
    """On a Galera node (``wsrep_on`` is ON), make this session's reads wait
    for the cluster's newest commits (``wsrep_sync_wait = 1``): a code or a
    spot decided on one node is seen by a read on another. Plain MariaDB and
    MySQL (no such variable) are left alone. Returns whether it was set."""
    cursor = dbapi_connection.cursor()
    try:
        # SHOW VARIABLES, not SELECT @@wsrep_on: MySQL and TiDB have no such
        # variable, and an empty answer is simpler than an error.
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        galera = row is not None and str(row[1]).upper() in ("ON", "1")
        if galera:
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
        return galera
    finally:
        cursor.close()


def _mysql_engine(url: str, lock_wait_timeout: int, io_timeout: float | None = None) -> Engine:
    # Multi-statement queries let `core.storage.batch.send` put a chain of
    # hot-path writes in one round trip; every value in them is escaped by
    # the driver, never pasted in. (The dialect adds FOUND_ROWS to this.)
    parsed = make_url(url)
    flags = int(parsed.query.get("client_flag", 0)) | MULTI_STATEMENTS  # type: ignore[arg-type]
    engine = create_engine(
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
            # A statement unanswered this long is a lost connection (2013),
            # so a vanished server moves the engine to the next node.
            **({"read_timeout": io_timeout, "write_timeout": io_timeout} if io_timeout else {}),
        },
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        wait_for_cluster_reads(dbapi_connection)

    return engine


@dataclass(frozen=True)
class NodeMove:
    """The engine moved from one database node to another. Both URLs are
    shown without their passwords."""

    from_node: str
    to_node: str
    reason: str
    """Why: what the node left said, or that a preferred node answers again."""
    back: bool
    """True when returning to a preferred (earlier) node that recovered."""


class _Node:
    def __init__(self, url: str, engine: Engine, reader: Engine) -> None:
        self.url = url
        self.where = _where(url)
        self.engine = engine
        self.reader = reader
        self.down_until: float | None = None
        self.down_reason = ""


class Database:
    """Owns the engines (one per node); runs units of work with the right
    transaction mode on the node in use."""

    def __init__(
        self,
        url: str,
        *,
        failover_urls: Sequence[str] = (),
        busy_timeout_seconds: float = 10.0,
        lock_wait_timeout_seconds: int = 10,
        io_timeout_seconds: float | None = None,
        max_attempts: int = 12,
        retry_down_after_seconds: float = RETRY_DOWN_AFTER_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        on_node_move: Callable[[NodeMove], None] | None = None,
    ) -> None:
        self.url = url
        """The first (preferred) node's URL."""
        self.max_attempts = max_attempts
        self.busy_timeout = busy_timeout_seconds
        self.retry_down_after = retry_down_after_seconds
        self.on_node_move = on_node_move
        """Called once per move, after the unit of work that made it (not
        inside it), so it may run units of work of its own (an event)."""
        self._monotonic = monotonic
        if url.startswith("sqlite"):
            if failover_urls:
                raise ValueError("failover URLs need a MariaDB/MySQL database")
            engine = _sqlite_engine(url)
            nodes = [_Node(url, engine, engine.execution_options(lotkeeper_read_only=True))]
        else:
            nodes = []
            for node_url in (url, *failover_urls):
                engine = _mysql_engine(node_url, lock_wait_timeout_seconds, io_timeout_seconds)
                reader = engine.execution_options(
                    lotkeeper_read_only=True, isolation_level="REPEATABLE READ"
                )
                nodes.append(_Node(node_url, engine, reader))
        self._nodes = nodes
        self._current = nodes[0]
        self._lock = threading.Lock()
        self._moves: list[NodeMove] = []
        self._delivering = threading.local()
        self.dialect = nodes[0].engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def engine(self) -> Engine:
        """The engine of the node in use."""
        return self._current.engine

    @property
    def current_url(self) -> str:
        """The URL of the node in use (with its password)."""
        return self._current.url

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one read-write transaction, committed when it returns
        and rolled back when it raises. Deadlocks, lock timeouts and `Conflict`
        rerun the whole of `work` with a short, jittered back-off."""
        return self._run(False, work)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one consistent read-only transaction."""
        return self._run(True, work)

    def _run(self, read_only: bool, work: Callable[[Session], T]) -> T:
        try:
            return self._attempts(read_only, work)
        finally:
            if self._moves:
                self._deliver_moves()

    def _attempts(self, read_only: bool, work: Callable[[Session], T]) -> T:
        attempt = 0
        busy_until = time.monotonic() + self.busy_timeout
        while True:
            attempt += 1
            try:
                node, connection = self._connect(read_only)
            except DBAPIError as exc:
                # SQLite: a new connection's PRAGMAs meet another process's
                # lock (first start of several processes): wait it out too.
                if self._wait_to_retry(exc, attempt, busy_until):
                    continue
                raise
            try:
                with (
                    connection,
                    Session(bind=connection, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    return work(session)
            except (Conflict, DBAPIError) as exc:
                if self._wait_to_retry(exc, attempt, busy_until):
                    continue
                if isinstance(exc, Conflict):
                    raise DatabaseUnavailable(
                        "The garage is very busy right now; please try again."
                    ) from exc
                cause = failure_behind(exc)
                if node_failure(cause):
                    # Never rerun: the COMMIT may have reached the node.
                    self._mark_down(node, cause)
                unavailable = _unreachable(cause, node.url)
                if unavailable is not None:
                    raise unavailable from exc
                if exc.connection_invalidated:
                    self._mark_down(node, exc)
                    raise DatabaseUnavailable(
                        "The connection to the database at {where} was lost; please try again.",
                        where=_where(node.url),
                    ) from exc
                if _is_retryable(exc):
                    raise DatabaseUnavailable(
                        "The database is too busy right now; please try again."
                    ) from exc
                raise

    def _candidates(self) -> list[_Node]:
        """Nodes to try: those not down (or due for a retry) in the configured
        order, then the ones marked down, in case one is back already."""
        now = self._monotonic()
        usable = [n for n in self._nodes if n.down_until is None or now >= n.down_until]
        return usable + [n for n in self._nodes if n not in usable]

    def _connect(self, read_only: bool) -> tuple[_Node, Connection]:
        """A connection to the first node that accepts one. A connect-time
        failure sent no statement, so the next node is tried at once."""
        failed: list[tuple[_Node, DBAPIError]] = []
        for node in self._candidates():
            try:
                connection = (node.reader if read_only else node.engine).connect()
            except DBAPIError as exc:
                if len(self._nodes) == 1 or not node_failure(exc):
                    unavailable = _unreachable(exc, node.url)
                    if unavailable is not None:
                        raise unavailable from exc
                    raise
                self._mark_down(node, exc)
                failed.append((node, exc))
                continue
            self._arrive(node)
            return node, connection
        last = failed[-1][1]
        raise DatabaseUnavailable(
            "None of the database nodes ({where}) can be used right now: {reason}",
            where=", ".join(n.where for n, _ in failed),
            reason=_reason(last),
        ) from last

    def _mark_down(self, node: _Node, exc: DBAPIError) -> None:
        if len(self._nodes) == 1:
            return
        with self._lock:
            node.down_until = self._monotonic() + self.retry_down_after
            node.down_reason = _reason(exc)
        # Its pooled connections are as dead as the one that failed.
        node.engine.dispose()

    def _arrive(self, node: _Node) -> None:
        if node is self._current and node.down_until is None:
            return
        with self._lock:
            node.down_until = None
            left = self._current
            if node is left:
                return
            self._current = node
            back = self._nodes.index(node) < self._nodes.index(left)
            reason = (
                "it answers again"
                if back and left.down_until is None
                else left.down_reason or "it stopped answering"
            )
            move = NodeMove(left.where, node.where, reason, back)
            self._moves.append(move)
        if back and left.down_until is None:
            log.warning("database: back on %s (from %s): %s", node.where, left.where, reason)
        else:
            log.warning("database: moved from %s to %s: %s", left.where, node.where, reason)

    def _deliver_moves(self) -> None:
        if self.on_node_move is None or getattr(self._delivering, "active", False):
            return
        with self._lock:
            moves, self._moves = self._moves, []
        self._delivering.active = True
        try:
            for move in moves:
                try:
                    self.on_node_move(move)
                except Exception:
                    log.exception("database: could not report the move to %s", move.to_node)
        finally:
            self._delivering.active = False

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
        """Run `work(engine)` (migrations, checks) on the first node that
        answers, waiting out another process's SQLite write lock, and turning
        "cannot reach the database" into `DatabaseUnavailable`."""
        busy_until = time.monotonic() + self.busy_timeout
        while True:
            try:
                node, connection = self._connect(read_only=False)
            except DBAPIError as exc:
                if self._wait_to_retry(exc, self.max_attempts, busy_until):
                    continue
                raise
            connection.close()
            try:
                return work(node.engine)
            except DBAPIError as exc:
                if self._wait_to_retry(exc, self.max_attempts, busy_until):
                    continue
                if node_failure(exc):
                    self._mark_down(node, exc)
                unavailable = _unreachable(exc, node.url)
                if unavailable is not None:
                    raise unavailable from exc
                raise
            finally:
                if self._moves:
                    self._deliver_moves()

    def dispose(self) -> None:
        for node in self._nodes:
            node.engine.dispose()


def _reason(exc: DBAPIError) -> str:
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    return str(args[1]) if len(args) > 1 else str(exc.orig)
