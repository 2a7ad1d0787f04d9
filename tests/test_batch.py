"""`core.storage.batch`: chained statements behave the same on SQLite and on
MariaDB (where they travel as one multi-statement query)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DatabaseUnavailable
from core.storage.batch import id_before, rows_before, send
from core.storage.database import Database
from core.storage.models import UTCDateTime

metadata = MetaData()
parents = Table(
    "batch_parents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), unique=True),
    Column("at", UTCDateTime()),
)
children = Table(
    "batch_children",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parent_id", Integer),
    Column("note", String(20)),
)

INSERT_PARENT = insert(parents).values(name=bindparam("name"), at=bindparam("at"))
RENAME = (
    update(parents)
    .where(parents.c.name == bindparam("old"))
    .values(name=bindparam("new"), id=parents.c.id + 0)
)
CHILD_OF_NEW_PARENT = insert(children).from_select(
    ["parent_id", "note"],
    select(id_before(), bindparam("note", type_=String())).where(rows_before() == 1),
)
CHILD_IF_DONE = insert(children).from_select(
    ["parent_id", "note"],
    select(bindparam("parent", type_=Integer()), bindparam("note", type_=String())).where(
        rows_before() == 1
    ),
)
WHEN = datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Database:
    database = Database(db_url)
    metadata.create_all(database.engine)
    yield database  # type: ignore[misc]
    database.dispose()


def children_rows(db: Database) -> list[tuple[int, str]]:
    return db.read(
        lambda s: [tuple(r) for r in s.execute(select(children.c.parent_id, children.c.note))]
    )  # type: ignore[misc]


def test_a_step_builds_on_the_id_the_step_before_inserted(db: Database) -> None:
    def work(session: Session) -> list[int | None]:
        outcomes = send(
            session,
            [(INSERT_PARENT, {"name": "a", "at": WHEN}), (CHILD_OF_NEW_PARENT, {"note": "x"})],
        )
        return [o.new_id for o in outcomes]

    parent_id, child_id = db.write(work)
    assert parent_id is not None and child_id is not None
    assert children_rows(db) == [(parent_id, "x")]
    stored = db.read(lambda s: s.scalar(select(parents.c.at).where(parents.c.id == parent_id)))
    assert stored == WHEN


def test_a_step_does_nothing_when_the_step_before_touched_no_row(db: Database) -> None:
    db.write(lambda s: send(s, [(INSERT_PARENT, {"name": "a", "at": WHEN})]))

    def work(session: Session) -> list[int]:
        outcomes = send(
            session,
            [
                (RENAME, {"old": "missing", "new": "b"}),
                (CHILD_IF_DONE, {"parent": 1, "note": "skipped"}),
                (RENAME, {"old": "a", "new": "c"}),
                (CHILD_IF_DONE, {"parent": 1, "note": "written"}),
            ],
        )
        return [o.rows for o in outcomes]

    assert db.write(work) == [0, 0, 1, 1]
    assert children_rows(db) == [(1, "written")]


def test_an_error_in_a_step_stops_the_rest_and_rolls_back(db: Database) -> None:
    db.write(lambda s: send(s, [(INSERT_PARENT, {"name": "a", "at": WHEN})]))

    def work(session: Session) -> None:
        send(
            session,
            [
                (CHILD_IF_DONE, {"parent": 1, "note": "first"}),
                (INSERT_PARENT, {"name": "a", "at": WHEN}),  # duplicate name
                (CHILD_IF_DONE, {"parent": 1, "note": "after"}),
            ],
        )

    # Raised as SQLAlchemy raises it, so the unit of work treats it alike: a
    # duplicate key is a race, rerun, and reported once attempts run out.
    db.max_attempts = 2
    with pytest.raises(DatabaseUnavailable) as raised:
        db.write(work)
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert children_rows(db) == []


def test_values_are_escaped_not_pasted(db: Database) -> None:
    hostile = "x'); DROP TABLE batch_children; --"[:20]
    db.write(lambda s: send(s, [(INSERT_PARENT, {"name": hostile, "at": WHEN})]))
    assert db.read(lambda s: s.scalar(select(parents.c.name))) == hostile
    assert children_rows(db) == []  # the table is still there
