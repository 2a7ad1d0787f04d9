"""Entry/exit throughput and enter() latency, against a ceiling measured in
the same run on the same database. Prints figures; it passes or fails nothing.

For SQLite and MariaDB, with 1 and 8 processes:
  ours     each process loops enter(small) + exit(code) on the demo lot;
           ops/s counts both calls; p50/p99 are enter() latencies.
  ceiling  the same processes, same engine and transaction runner, each
           running a bare one-row conditional UPDATE ... WHERE transaction on
           a random row of a 450-row table.
  ratio    ours / ceiling (target on MariaDB with 8 processes: >= 0.5, and
           p99 enter() <= 25 ms).
Then, single process: enter() latency with N past stays in the history
against an empty history (target: ratio <= 1.5).

    python bench/entry_throughput.py [--seconds 5] [--history 1000000]
        [--mysql-url mysql+pymysql://root@127.0.0.1/test] [--only sqlite|mysql]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from core import services as lk
from core.config import asset_path, load_settings
from core.layout import read_layout
from core.site import Site, open_site
from core.storage.models import Claim, Stay

SECRET = "bench-secret-" + "b" * 40
CEILING_ROWS = 450


def open_bench_site(url: str, data_dir: str) -> Site:
    settings = load_settings(
        database={"url": url, "auto_migrate": True},
        paths={"data_dir": data_dir},
        tickets={"secret": SECRET},
    )
    return open_site(settings)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ours_worker(url: str, data_dir: str, seconds: float, barrier: Any, out: Any) -> None:
    site = open_bench_site(url, data_dir)
    latencies: list[float] = []
    ops = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        ticket = lk.enter(site, "small", kiosk="bench")
        latencies.append(time.perf_counter() - started)
        lk.exit(site, ticket.code, kiosk="bench")
        ops += 2
    out.put((ops, latencies))
    site.close()


def ceiling_worker(url: str, data_dir: str, seconds: float, barrier: Any, out: Any) -> None:
    site = open_bench_site(url, data_dir)
    statement = text("UPDATE bench_ceiling SET n = n + 1 WHERE id = :id AND n >= 0")
    rng = random.Random()
    ops = 0
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        # Through the same unit-of-work runner (BEGIN IMMEDIATE, retries) as enter().
        row = {"id": rng.randrange(CEILING_ROWS)}
        site.db.write(lambda session, row=row: session.execute(statement, row))
        ops += 1
    out.put((ops, []))
    site.close()


def run(
    worker: Any, processes: int, url: str, data_dir: str, seconds: float
) -> tuple[float, list[float]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(url, data_dir, seconds, barrier, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    ops = sum(r[0] for r in results)
    return ops / elapsed, [lat for r in results for lat in r[1]]


def prepare(url: str, data_dir: str) -> Site:
    site = open_bench_site(url, data_dir)
    lk.load_layout(site, read_layout(asset_path("lot.toml")))
    with site.db.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bench_ceiling"))
        connection.execute(
            text("CREATE TABLE bench_ceiling (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        )
        connection.execute(
            text("INSERT INTO bench_ceiling (id, n) VALUES (:id, 0)"),
            [{"id": i} for i in range(CEILING_ROWS)],
        )
    return site


def add_history(site: Site, count: int) -> None:
    """`count` finished stays over the past years, spread over every spot."""
    spot_ids = [s.spot_id for s in lk.snapshot(site).spots]
    base = datetime.now(UTC) - timedelta(days=3 * 365)
    with site.db.engine.begin() as connection:
        start_id = (
            connection.execute(text("SELECT COALESCE(MAX(id), 0) FROM claims")).scalar_one() + 1
        )
    batch = 20_000
    for offset in range(0, count, batch):
        claims, stays = [], []
        for i in range(offset, min(count, offset + batch)):
            began = base + timedelta(minutes=i)
            ended = began + timedelta(minutes=90)
            spot = spot_ids[i % len(spot_ids)]
            claims.append(
                {
                    "id": start_id + i,
                    "site_id": site.id,
                    "spot_id": spot,
                    "kind": "stay",
                    "starts_at": began,
                    "ends_at": ended,
                    "expires_at": None,
                    "cancelled_at": None,
                    "created_at": began,
                }
            )
            stays.append(
                {
                    "site_id": site.id,
                    "claim_id": start_id + i,
                    "spot_id": spot,
                    "car_size": 1,
                    "plate": None,
                    "key_id": "K1",
                    "entered_at": began,
                    "max_stay_until": began + timedelta(hours=24),
                    "entry_kiosk": "history",
                    "exited_at": ended,
                    "exit_kiosk": "history",
                }
            )
        with site.db.engine.begin() as connection:
            connection.execute(insert(Claim), claims)
            connection.execute(insert(Stay), stays)


def enter_latency(site: Site, rounds: int) -> list[float]:
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        ticket = lk.enter(site, "small")
        latencies.append(time.perf_counter() - started)
        lk.exit(site, ticket.code)
    return latencies


def new_database(kind: str, mysql_url: str, workdir: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"
        return f"sqlite:///{path}", lambda: None
    name = f"lk_bench_{uuid.uuid4().hex[:8]}"
    server = create_engine(mysql_url)
    with server.begin() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}`"))

    def drop() -> None:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))

    return make_url(mysql_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--mysql-url", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--only", choices=["sqlite", "mysql"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lotkeeper-bench-"))
    kinds = [args.only] if args.only else ["sqlite", "mysql"]

    print(
        f"{'database':<8} {'procs':>5} {'ours ops/s':>11} {'ceiling tx/s':>13} {'ratio':>6} "
        f"{'enter p50 ms':>13} {'enter p99 ms':>13}"
    )
    for kind in kinds:
        for processes in (1, 8):
            url, drop = new_database(kind, args.mysql_url, workdir)
            try:
                prepare(url, str(workdir)).close()
                ceiling, _ = run(ceiling_worker, processes, url, str(workdir), args.seconds)
                ours, latencies = run(ours_worker, processes, url, str(workdir), args.seconds)
            finally:
                drop()
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"{kind:<8} {processes:>5} {ours:>11.0f} {ceiling:>13.0f} {ours / ceiling:>6.2f} "
                f"{p50:>13.1f} {p99:>13.1f}",
                flush=True,
            )

    print(f"\nenter() p50 with {args.history:,} past stays vs an empty history (1 process)")
    for kind in kinds:
        url, drop = new_database(kind, args.mysql_url, workdir)
        try:
            site = prepare(url, str(workdir))
            enter_latency(site, 50)  # warm up
            empty = enter_latency(site, 300)
            loaded_at = time.perf_counter()
            add_history(site, args.history)
            load_seconds = time.perf_counter() - loaded_at
            enter_latency(site, 50)
            full = enter_latency(site, 300)
            site.close()
        finally:
            drop()
        ratio = statistics.median(full) / statistics.median(empty)
        print(
            f"{kind:<8} empty p50 {statistics.median(empty) * 1000:.2f} ms, "
            f"history p50 {statistics.median(full) * 1000:.2f} ms, ratio {ratio:.2f} "
            f"(history loaded in {load_seconds:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
