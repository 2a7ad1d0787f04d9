"""Units of work: retries, and a database that is not there."""

from __future__ import annotations

import pytest
from pymysql.err import OperationalError as PyMySQLOperationalError
from sqlalchemy.exc import OperationalError

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
