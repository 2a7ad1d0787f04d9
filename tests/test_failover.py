"""Several database nodes: the engine uses the first healthy one, moves on a
lost connection or a node that lost its cluster (1047), never reruns a unit
of work whose connection broke mid-flight, and goes back to a preferred node
that answers again. Real MariaDB, a dead port and a loopback TCP proxy that
the tests cut and restore; the retry interval runs on an injected clock."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET
from pymysql.err import OperationalError as PyMySQLOperationalError
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.config import load_settings
from core.errors import DatabaseUnavailable
from core.site import open_site
from core.storage.database import (
    Database,
    NodeMove,
    _unreachable,
    node_failure,
    wait_for_cluster_reads,
)
from core.storage.models import EventRow

DEAD_PORT = 1  # nothing listens there: connecting fails at once with 2003

mysql_only = pytest.mark.parametrize("db_url", ["mysql"], indirect=True)


def _on_port(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _where(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class TcpProxy:
    """A loopback TCP forwarder to the test server that can be cut (every
    open connection reset, the port refusing) and restored on the same port:
    a database node that dies and comes back."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones; returns when every
        forwarding thread has finished."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads, self._threads = self._threads, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=10)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def proxy(db_url: str) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(make_url(db_url).port or 3306)
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()


def _server_id(db: Database) -> int:
    """Which TCP connection serves the unit of work (its connection id)."""
    return int(db.read(lambda s: s.execute(text("SELECT CONNECTION_ID()")).scalar_one()))


def _port(db: Database) -> int | None:
    return make_url(db.current_url).port


# -- the error classifier ---------------------------------------------------


def _raised(code: int, message: str) -> OperationalError:
    """A driver error as SQLAlchemy raises it from a statement."""
    return OperationalError("SELECT 1", {}, PyMySQLOperationalError(code, message))


@pytest.mark.parametrize(
    ("code", "moves"),
    [(2003, True), (2006, True), (2013, True), (1047, True), (1045, False), (1213, False)],
)
def test_lost_connections_and_a_node_out_of_its_cluster_are_node_failures(
    code: int, moves: bool
) -> None:
    assert node_failure(_raised(code, "message")) is moves


def test_a_node_that_lost_its_cluster_is_database_unavailable_with_a_clear_message() -> None:
    error = _raised(1047, "WSREP has not yet prepared node for application use")
    unavailable = _unreachable(error, "mysql+pymysql://lk:secret@db2:3306/lotkeeper")
    assert isinstance(unavailable, DatabaseUnavailable)
    assert "is not ready (it lost its cluster)" in str(unavailable)
    assert "db2:3306/lotkeeper" in str(unavailable)
    assert "secret" not in str(unavailable)


# -- wsrep_sync_wait --------------------------------------------------------


class _FakeCursor:
    def __init__(self, wsrep_on: str | None, executed: list[str]) -> None:
        self._row = None if wsrep_on is None else ("wsrep_on", wsrep_on)
        self._executed = executed

    def execute(self, statement: str) -> None:
        self._executed.append(statement)

    def fetchone(self) -> tuple[str, str] | None:
        return self._row

    def close(self) -> None:
        pass


class _FakeConnection:
    def __init__(self, wsrep_on: str | None) -> None:
        self.wsrep_on = wsrep_on
        self.executed: list[str] = []

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self.wsrep_on, self.executed)


@pytest.mark.parametrize(("wsrep_on", "set_it"), [("ON", True), ("OFF", False), (None, False)])
def test_reads_wait_for_the_cluster_only_on_a_galera_node(
    wsrep_on: str | None, set_it: bool
) -> None:
    connection = _FakeConnection(wsrep_on)
    assert wait_for_cluster_reads(connection) is set_it
    assert ("SET SESSION wsrep_sync_wait = 1" in connection.executed) is set_it


@pytest.mark.mysql
@mysql_only
def test_plain_mariadb_sessions_are_left_without_wsrep_sync_wait(db_url: str) -> None:
    db = Database(db_url)
    try:
        on, wait = db.read(
            lambda s: s.execute(text("SELECT @@wsrep_on, @@session.wsrep_sync_wait")).one()
        )
        assert (on, wait) == (0, 0)
    finally:
        db.dispose()


# -- moving between nodes ---------------------------------------------------


@pytest.mark.mysql
@mysql_only
def test_a_site_whose_first_node_is_dead_runs_on_the_next_and_reports_the_move_once(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _on_port(db_url, DEAD_PORT)
    settings = load_settings(
        database={"url": dead, "failover_urls": [db_url], "auto_migrate": True},
        paths={"data_dir": str(tmp_path)},
        tickets={"secret": SECRET},
    )
    with caplog.at_level(logging.WARNING, logger="core.storage.database"):
        site = open_site(settings)
        try:
            for _ in range(3):
                assert site.db.read(lambda s: s.execute(text("SELECT 1")).scalar_one()) == 1
            events = site.db.read(
                lambda s: [
                    (e.kind, e.source, e.message)
                    for e in s.scalars(select(EventRow).where(EventRow.source == "database"))
                ]
            )
        finally:
            site.close()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database:")]
    assert len(logged) == 1
    assert logged[0].startswith(f"database: moved from {_where(dead)} to {_where(db_url)}: ")
    assert len(events) == 1
    kind, _, message = events[0]
    assert kind == "device_fault"
    assert f"moved from {_where(dead)} to {_where(db_url)}" in message


@pytest.mark.mysql
@mysql_only
def test_a_node_that_dies_is_left_at_connect_and_used_again_when_it_answers(
    db_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy is the preferred node, the server itself the failover. A
    connect-time failure moves the same unit of work on at once; the dead
    node is skipped until the retry interval has passed on the injected
    clock, then used again as soon as it answers."""
    preferred = _on_port(db_url, proxy.port)
    clock = FakeMonotonic()
    moves: list[NodeMove] = []
    db = Database(
        preferred,
        failover_urls=[db_url],
        retry_down_after_seconds=5.0,
        monotonic=clock,
        on_node_move=moves.append,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="core.storage.database"):
            _server_id(db)
            assert _port(db) == proxy.port and moves == []

            proxy.stop()
            _server_id(db)  # the pooled connection fails its ping, the reconnect is refused
            assert _port(db) == make_url(db_url).port
            assert [(m.from_node, m.to_node, m.back) for m in moves] == [
                (_where(preferred), _where(db_url), False)
            ]

            proxy.start()  # back, but not tried before the interval is over
            clock.now += 4.9
            _server_id(db)
            assert _port(db) == make_url(db_url).port

            clock.now += 0.2
            _server_id(db)
            assert _port(db) == proxy.port
            assert moves[1] == NodeMove(_where(db_url), _where(preferred), "it answers again", True)

            _server_id(db)
        logged = [r.getMessage() for r in caplog.records]
    finally:
        db.dispose()
    assert len(moves) == 2
    assert len(logged) == 2
    assert logged[0].startswith(f"database: moved from {_where(preferred)} to {_where(db_url)}")
    assert logged[1].startswith(f"database: back on {_where(preferred)} (from {_where(db_url)})")


@pytest.mark.mysql
@mysql_only
def test_a_dead_node_retried_after_the_interval_and_still_dead_is_no_new_move(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeMonotonic()
    moves: list[NodeMove] = []
    db = Database(
        _on_port(db_url, DEAD_PORT),
        failover_urls=[db_url],
        monotonic=clock,
        on_node_move=moves.append,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="core.storage.database"):
            for _ in range(3):
                _server_id(db)
                clock.now += 60
        logged = [r.getMessage() for r in caplog.records]
    finally:
        db.dispose()
    assert len(moves) == 1 and len(logged) == 1
    assert _port(db) == make_url(db_url).port


@pytest.mark.mysql
@mysql_only
def test_a_unit_of_work_cut_mid_flight_is_not_rerun_and_the_next_one_moves(
    db_url: str, proxy: TcpProxy
) -> None:
    preferred = _on_port(db_url, proxy.port)
    moves: list[NodeMove] = []
    db = Database(preferred, failover_urls=[db_url], on_node_move=moves.append)
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE tally (id INT PRIMARY KEY, n INT NOT NULL)"))
        connection.execute(text("INSERT INTO tally VALUES (1, 0)"))
    calls = []

    def work(session: Session) -> None:
        calls.append(1)
        session.execute(text("UPDATE tally SET n = n + 1 WHERE id = 1"))
        if len(calls) == 1:
            proxy.stop()  # the node dies after a statement ran
        session.execute(text("SELECT n FROM tally"))

    try:
        with pytest.raises(DatabaseUnavailable, match="cannot be used right now"):
            db.write(work)
        assert calls == [1]
        assert moves == []  # the move happens with the next unit of work

        db.write(work)
        assert calls == [1, 1]
        assert _port(db) == make_url(db_url).port
        assert [(m.from_node, m.to_node) for m in moves] == [(_where(preferred), _where(db_url))]
        assert db.read(lambda s: s.execute(text("SELECT n FROM tally")).scalar_one()) == 1
    finally:
        db.dispose()


@pytest.mark.mysql
@mysql_only
def test_every_node_down_is_one_clear_error_naming_them(db_url: str) -> None:
    first, second = _on_port(db_url, DEAD_PORT), _on_port(db_url, 9)
    db = Database(first, failover_urls=[second])
    try:
        with pytest.raises(DatabaseUnavailable) as error:
            _server_id(db)
    finally:
        db.dispose()
    assert "None of the database nodes" in str(error.value)
    assert _where(first) in str(error.value) and _where(second) in str(error.value)


@pytest.mark.mysql
@mysql_only
def test_a_move_report_that_fails_does_not_fail_the_unit_of_work(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook runs after the unit of work; its own failure is only logged."""

    def broken(_move: NodeMove) -> None:
        raise RuntimeError("no event table")

    db = Database(_on_port(db_url, DEAD_PORT), failover_urls=[db_url], on_node_move=broken)
    try:
        with caplog.at_level(logging.ERROR, logger="core.storage.database"):
            assert _server_id(db) > 0
    finally:
        db.dispose()
    assert f"could not report the move to {_where(db_url)}" in caplog.text


@mysql_only
def test_a_statement_left_unanswered_is_a_lost_node_not_a_lane_stuck_for_minutes(
    db_url: str,
) -> None:
    """A server that vanished without closing its connections answers
    nothing; the I/O timeout turns that into a lost connection (2013), the
    caller is told the database cannot be used, and the node is marked down
    so the next unit of work tries the next node. (SLEEP stands in for the
    silent server: the statement is sent and no answer comes in time.)"""
    moves: list[NodeMove] = []
    db = Database(
        db_url,
        failover_urls=[db_url],
        lock_wait_timeout_seconds=1,
        io_timeout_seconds=1,
        on_node_move=moves.append,
    )
    try:
        with pytest.raises(DatabaseUnavailable):
            db.read(lambda session: session.execute(text("SELECT SLEEP(5)")).scalar())
        # The next unit runs, on the next node.
        assert db.read(lambda session: session.execute(text("SELECT 1")).scalar()) == 1
        assert len(moves) == 1
    finally:
        db.dispose()


def test_the_io_timeout_must_outlast_lock_waits() -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="io_timeout_seconds must be longer"):
        load_settings(database={"lock_wait_timeout_seconds": 30, "io_timeout_seconds": 30})


@mysql_only
def test_a_failed_rollback_after_a_lost_connection_is_a_lost_node_not_a_raw_error(
    db_url: str,
) -> None:
    """When a node dies mid-statement (2013), the ROLLBACK that follows on
    the dead connection fails with a bare InterfaceError(0, ''); that is the
    error the unit of work sees (found by killing a Galera node under load).
    It is told as the database being unavailable, and the node is left."""
    from pymysql.err import InterfaceError as PyMySQLInterfaceError
    from sqlalchemy.exc import InterfaceError

    moves: list[NodeMove] = []
    db = Database(db_url, failover_urls=[db_url], on_node_move=moves.append)

    def cut_then_rollback_fails(session: Session) -> None:
        try:
            raise OperationalError(
                "SELECT 1", None, PyMySQLOperationalError(2013, "Lost connection")
            )
        except OperationalError:
            raise InterfaceError("ROLLBACK", None, PyMySQLInterfaceError(0, "")) from None

    try:
        with pytest.raises(DatabaseUnavailable, match="cannot be used right now"):
            db.write(cut_then_rollback_fails)
        assert db.read(lambda session: session.execute(text("SELECT 1")).scalar()) == 1
        assert len(moves) == 1
    finally:
        db.dispose()
