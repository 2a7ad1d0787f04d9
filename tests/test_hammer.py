"""Many kiosk processes at once: the database, not Python, keeps the promises.

8 OS processes make 1,200 entries into a 500-spot lot: exactly 500 tickets,
700 refusals, no spot with two overlapping live claims, no other error. Then 8
processes exit the same 50 tickets: each exits exactly once.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _workers
import pytest
from conftest import SECRET, SiteFactory, make_layout
from helpers import overlapping_claims
from sqlalchemy import func, select

from core import services as lk
from core.site import Site
from core.storage.models import Stay

PROCESSES = 8
pytestmark = pytest.mark.slow


def run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*a, barrier, results), daemon=True) for a in args]
    for process in processes:
        process.start()
    collected = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected


def test_hammer_entries_never_overbook(make_site: SiteFactory, db_url: str, tmp_path: Path) -> None:
    site = make_site(make_layout(small=100, medium=300, large=100, levels=3))
    per_process = 1200 // PROCESSES
    now = site.clock.now().isoformat()
    results = run_processes(
        _workers.enter_many,
        [(db_url, str(tmp_path), SECRET, now, per_process) for _ in range(PROCESSES)],
    )
    errors = [e for _, _, errs in results for e in errs]
    assert errors == [], errors[0]
    codes = [c for batch, _, _ in results for c in batch]
    refused = sum(full for _, full, _ in results)
    assert len(codes) == 500 and len(set(codes)) == 500
    assert refused == 700
    assert overlapping_claims(site) == []
    spots = site.db.read(
        lambda s: s.scalar(
            select(func.count(func.distinct(Stay.spot_id))).where(Stay.exited_at.is_(None))
        )
    )
    assert spots == 500
    avail = lk.availability(site)
    assert avail.free == 0 and sum(s.occupied for s in avail.sizes) == 500
    kinds = Counter(e.kind for e in lk.events_since(site, limit=5000).events)
    assert kinds["entry"] == 500 and kinds["refused_full"] == 700


def test_hammer_each_ticket_exits_exactly_once(
    make_site: SiteFactory, db_url: str, tmp_path: Path
) -> None:
    site: Site = make_site(make_layout(small=50))
    codes = [lk.enter(site, "small").code for _ in range(50)]
    results = run_processes(
        _workers.exit_all,
        [
            (db_url, str(tmp_path), SECRET, site.clock.now().isoformat(), codes, seed)
            for seed in range(PROCESSES)
        ],
    )
    errors = [e for _, _, errs in results for e in errs]
    assert errors == [], errors[0]
    exits = Counter(code for exited, _, _ in results for code in exited)
    assert sorted(exits) == sorted(codes)
    assert set(exits.values()) == {1}
    assert sum(used for _, used, _ in results) == 50 * (PROCESSES - 1)
    assert lk.availability(site).free == 50


def test_processes_starting_together_on_a_new_embedded_default(tmp_path: Path) -> None:
    """Kiosks and the console booting at once: one migration, one secret, one
    seeded lot, and every process up."""
    from core.config import load_settings
    from core.site import open_site

    results = run_processes(_workers.first_start, [(str(tmp_path),) for _ in range(6)])
    assert [errors for _, errors in results] == [[]] * 6
    assert [total for total, _ in results] == [450] * 6
    site = open_site(load_settings(paths={"data_dir": str(tmp_path)}))
    try:
        assert [e.kind for e in lk.recent_events(site).events] == ["lot_loaded"]
        assert len(lk.snapshot(site).spots) == 450
    finally:
        site.close()
