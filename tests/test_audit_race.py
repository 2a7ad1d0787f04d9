"""Consoles appending audit rows at once, in separate OS processes, on
SQLite and MariaDB: the head's conditional UPDATE lets one writer extend
the chain from a given row; the others rerun. On a chain written before
keying, exactly one of them writes the seal."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from _audit_race import append_one, write_unkeyed
from conftest import SECRET, SiteFactory
from sqlalchemy import select

from core.services.audit import SEAL_ACTION, verify_audit
from core.storage.models import AuditRow

WRITERS = 4
pytestmark = pytest.mark.slow


def test_racing_writers_on_an_unkeyed_chain_seal_it_once(
    make_site: SiteFactory, db_url: str, tmp_path: Path
) -> None:
    site = make_site()
    write_unkeyed(site, 3)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    processes = [
        ctx.Process(
            target=append_one,
            args=(i, db_url, str(tmp_path), SECRET, site.clock.now().isoformat(), barrier, results),
            daemon=True,
        )
        for i in range(WRITERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [error for _, _, error in outcomes if error] == []
    # The seal takes row 4; the four rows 5 to 8, one each, whoever won.
    assert sorted(seq for _, seq, _ in outcomes) == [5, 6, 7, 8]
    rows = site.db.read(lambda s: [(r.seq, r.action) for r in s.scalars(select(AuditRow))])
    assert [seq for seq, _ in sorted(rows)] == list(range(1, 9))
    assert [seq for seq, action in rows if action == SEAL_ACTION] == [4]
    check = verify_audit(site)
    assert check.ok and check.rows == 8, check.problems
