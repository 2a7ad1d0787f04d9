"""Units of work: retries, and a database that is not there."""

from __future__ import annotations

import pytest
from pymysql.err import OperationalError as PyMySQLOperationalError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.config import load_settings
from core.errors import DatabaseUnavailable
from core.site import open_site
from core.storage.database import Conflict, Database, _is_retryable


def test_conflict_reruns_the_whole_unit_of_work(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.sqlite3")
    calls = []

    def work(session: object) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Conflict("lost a race")
        return "done"

    assert db.write(work) == "done"
    assert len(calls) == 3
    db.dispose()


@pytest.mark.parametrize(("code", "retry"), [(1213, True), (1205, True), (1064, False)])
def test_deadlock_and_lock_wait_timeout_are_retried(code: int, retry: bool) -> None:
    error = OperationalError("UPDATE ...", {}, PyMySQLOperationalError(code, "message"))
    assert _is_retryable(error) is retry


def test_unreachable_mariadb_is_one_clear_error(tmp_path: object) -> None:
    settings = load_settings(
        database={"url": "mysql+pymysql://root@127.0.0.1:9/lotkeeper"},
        paths={"data_dir": str(tmp_path)},
        tickets={"secret": "s" * 40},
    )
    expected = r"127\.0\.0\.1:9/lotkeeper cannot be used right now"
    with pytest.raises(DatabaseUnavailable, match=expected):
        open_site(settings)


@pytest.mark.mysql
@pytest.mark.parametrize("db_url", ["mysql"], indirect=True)
def test_real_deadlock_reruns_the_losing_unit_of_work(db_url: str) -> None:
    """Two writers lock two rows in opposite order: MariaDB kills one with
    1213; `Database.write` reruns it and both units of work complete."""
    import threading

    from sqlalchemy import text

    db = Database(db_url)
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE pair (id INT PRIMARY KEY, n INT NOT NULL)"))
        connection.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = {"first": 0, "second": 0}
    errors: list[BaseException] = []

    def writer(name: str, first: int, second: int) -> None:
        def work(session: Session) -> None:
            attempts[name] += 1
            session.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": first})
            if attempts[name] == 1:
                both_hold_one.wait()
            session.execute(text("UPDATE pair SET n = n + 1 WHERE id = :id"), {"id": second})

        try:
            db.write(work)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=("first", 1, 2)),
        threading.Thread(target=writer, args=("second", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # exactly one was rerun
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT SUM(n) FROM pair")).scalar_one() == 4
    db.dispose()
