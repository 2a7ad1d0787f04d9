"""Entry and exit on a three-node Galera cluster against one single server,
in one run. Prints figures; it passes or fails nothing.

    single  N kiosk processes, all on the standalone MariaDB (--mysql-url);
    galera  the same N processes, process i on node i mod 3 of the
            `.ci/galera` cluster (its own node as `database.url`, the other
            two as `database.failover_urls`, as a site would configure them).

Each process opens the site, warms up, waits for the others, then runs
`--count` rounds of enter(small) + exit(code) on the demo lot (450 spots,
loaded once through the first node). Printed per set-up: p50 and p99 of
enter(), enter+exit rounds per second over all processes, refusals (a
`LotkeeperError`, e.g. too many certification conflicts) and the server's
innodb_flush_log_at_trx_commit (1 = sync the log at each COMMIT, 2 = each
second; set the two alike to compare like with like); then the ratio
galera / single for p50 and p99.

Every write on Galera is certified by all three nodes before COMMIT returns,
so the cluster adds round trips; on one machine (loopback) it also shares the
CPU between three servers and the kiosks, so read the ratio as an upper bound
of what a real three-host cluster costs.

The cluster comes from `.ci/galera urls DIR` (started with `.ci/galera start
DIR` when it does not answer, and left running). Each set-up gets a database
of its own, dropped at the end.

    python bench/galera_entry.py [--processes 3] [--count 500] [--warmup 20]
        [--galera-dir /tmp/g1 | --galera-urls URL,URL,URL]
        [--mysql-url mysql+pymysql://root@127.0.0.1:3306/test]
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core import services as lk
from core.config import asset_path, load_settings
from core.errors import LotkeeperError
from core.layout import read_layout
from core.site import Site, open_site

SECRET = "bench-secret-" + "g" * 40
GALERA_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "galera"


def open_bench_site(url: str, failover_urls: tuple[str, ...], data_dir: str) -> Site:
    settings = load_settings(
        database={"url": url, "failover_urls": failover_urls, "auto_migrate": True},
        paths={"data_dir": data_dir},
        tickets={"secret": SECRET},
    )
    return open_site(settings)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def kiosk_worker(
    urls: tuple[str, ...],
    kiosk: str,
    data_dir: str,
    warmup: int,
    count: int,
    barrier: Any,
    out: Any,
) -> None:
    site = open_bench_site(urls[0], urls[1:], data_dir)
    for _ in range(warmup):
        lk.exit(site, lk.enter(site, "small", kiosk=kiosk).code, kiosk=kiosk)
    latencies: list[float] = []
    refused = 0
    barrier.wait()
    for _ in range(count):
        started = time.perf_counter()
        try:
            ticket = lk.enter(site, "small", kiosk=kiosk)
        except LotkeeperError:
            refused += 1
            continue
        latencies.append(time.perf_counter() - started)
        try:
            lk.exit(site, ticket.code, kiosk=kiosk)
        except LotkeeperError:
            refused += 1
    out.put((latencies, refused))
    site.close()


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p99_ms: float
    rounds_per_second: float
    refused: int


def run(kiosk_urls: list[tuple[str, ...]], data_dir: str, warmup: int, count: int) -> Figures:
    """One process per entry of `kiosk_urls` (its url first, then its
    failover URLs), all released together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(kiosk_urls) + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=kiosk_worker,
            args=(urls, f"bench-{i + 1}", data_dir, warmup, count, barrier, out),
        )
        for i, urls in enumerate(kiosk_urls)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    started = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    latencies = [lat for r in results for lat in r[0]]
    return Figures(
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        rounds_per_second=len(latencies) / elapsed,
        refused=sum(r[1] for r in results),
    )


def new_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server (or cluster) behind `server_url`: its
    name, and how to drop it."""
    name = f"lk_bench_{uuid.uuid4().hex[:8]}"
    server = create_engine(server_url)
    with server.begin() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}`"))

    def drop() -> None:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()

    return name, drop


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def prepare(url: str, failover_urls: tuple[str, ...], data_dir: str) -> None:
    """Migrate and load the demo lot through `url`."""
    site = open_bench_site(url, failover_urls, data_dir)
    lk.load_layout(site, read_layout(asset_path("lot.toml")))
    site.close()


def flush_setting(url: str) -> str:
    """innodb_flush_log_at_trx_commit: 1 syncs the log at every COMMIT, 2
    leaves it to the OS each second (the usual Galera choice: a commit is
    durable on the other nodes). It moves p50 more than Galera does."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT @@innodb_flush_log_at_trx_commit")).scalar())
    finally:
        engine.dispose()


def answers(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def galera_urls(directory: str) -> list[str]:
    """The cluster's node URLs, starting it first if it does not answer."""

    def urls() -> list[str]:
        done = subprocess.run(
            ["bash", str(GALERA_SCRIPT), "urls", directory],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.split()

    found = urls()
    if not all(answers(u) for u in found):
        print(f"starting the Galera test cluster in {directory} (left running)", flush=True)
        subprocess.run(["bash", str(GALERA_SCRIPT), "start", directory], check=True)
        found = urls()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--count", type=int, default=500, help="enter+exit rounds per process")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--galera-dir", default="/tmp/g1")
    parser.add_argument("--galera-urls", help="comma-separated; instead of --galera-dir")
    parser.add_argument("--mysql-url", default="mysql+pymysql://root@127.0.0.1:3306/test")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="lotkeeper-bench-")

    nodes = args.galera_urls.split(",") if args.galera_urls else galera_urls(args.galera_dir)
    if len(nodes) < 2:
        parser.error("the cluster needs at least two node URLs")

    figures: dict[str, Figures] = {}
    # The single server first, then the cluster; each on a database of its own.
    name, drop = new_database(args.mysql_url)
    try:
        url = with_database(args.mysql_url, name)
        prepare(url, (), data_dir)
        figures["single"] = run([(url,)] * args.processes, data_dir, args.warmup, args.count)
    finally:
        drop()

    name, drop = new_database(nodes[0])  # DDL replicates to every node
    try:
        node_urls = [with_database(u, name) for u in nodes]
        prepare(node_urls[0], tuple(node_urls[1:]), data_dir)
        kiosks = []
        for i in range(args.processes):
            own = i % len(node_urls)
            kiosks.append((node_urls[own], *node_urls[:own], *node_urls[own + 1 :]))
        figures["galera"] = run(kiosks, data_dir, args.warmup, args.count)
    finally:
        drop()

    print(
        f"\n{args.processes} processes x {args.count} enter+exit rounds "
        f"(galera: {len(nodes)} nodes, process i on node i mod {len(nodes)})"
    )
    print(
        f"{'set-up':<8} {'enter p50 ms':>13} {'enter p99 ms':>13} {'rounds/s':>9} "
        f"{'refused':>8} {'flush':>6}"
    )
    flush = {"single": flush_setting(args.mysql_url), "galera": flush_setting(nodes[0])}
    for label, f in figures.items():
        print(
            f"{label:<8} {f.p50_ms:>13.1f} {f.p99_ms:>13.1f} "
            f"{f.rounds_per_second:>9.0f} {f.refused:>8} {flush[label]:>6}"
        )
    single, galera = figures["single"], figures["galera"]
    print(
        f"ratio galera / single: p50 {galera.p50_ms / single.p50_ms:.2f}, "
        f"p99 {galera.p99_ms / single.p99_ms:.2f}, "
        f"rounds/s {galera.rounds_per_second / single.rounds_per_second:.2f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
