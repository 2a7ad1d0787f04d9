"""The remote API under load. Prints figures; it passes or fails nothing.

The API runs as `lotkeeper api` in its own process (uvicorn, one worker) on
the embedded SQLite default (or MariaDB with --mysql URL), on loopback.
50 concurrent clients (httpx, keep-alive) then call, each for --seconds:
  ceiling       GET /ping: a static JSON answer from the same server, the
                most this server and client can do;
  spots         GET /spots?car_size=small: live availability;
  reserve_spot  POST /reserve_spot: quote and hold a spot, each client
                signed in as its own account, for windows spread over a week.
For each: requests per second, p50 and p99 latency, errors, and the ratio
of its rate to the ceiling's, measured in the same run.

    python bench/api_load.py [--clients 50] [--seconds 5] [--mysql URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from core import services as lk
from core.config import load_settings
from core.services.api_access import issue_token
from core.site import open_site

SECRET = "bench-secret-" + "a" * 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(data_dir: Path, url: str, clients: int) -> list[str]:
    """Migrate and seed the database; an account and a token per client."""
    site = open_site(
        load_settings(
            database={"url": url, "auto_migrate": True},
            paths={"data_dir": str(data_dir)},
            tickets={"secret": SECRET},
            lot={"seed_layout": str(Path(__file__).parents[1] / "assets" / "lot.toml")},
        )
    )
    if lk.availability(site).total == 0:
        from core.config import asset_path

        lk.load_layout_file(site, asset_path("lot.toml"))
    tokens = []
    for n in range(clients):
        account = lk.create_account(site, f"Bench {n}", f"bench{n}@example.com", "bench password")
        tokens.append(issue_token(site, account.id).token)
    site.close()
    return tokens


async def hammer(
    base: str, clients: int, seconds: float, request: Callable[[httpx.AsyncClient, int], Any]
) -> tuple[int, list[float], int]:
    """`clients` loops calling `request` until `seconds` are up."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:

        async def client(n: int) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await request(http, n)
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 400:
                    errors += 1

        await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies, errors


def report(name: str, count: int, latencies: list[float], errors: int, seconds: float) -> float:
    rate = count / seconds
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else 0.0
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else 0.0
    print(
        f"{name:<13} {rate:8.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
        f"{count} requests, {errors} errors"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mysql", help="a MariaDB URL to use instead of SQLite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url = args.mysql or f"sqlite:///{data_dir / 'bench.sqlite3'}"
        tokens = prepare(data_dir, url, args.clients)
        port = free_port()
        env = {
            **os.environ,
            "LOTKEEPER_DATABASE__URL": url,
            "LOTKEEPER_PATHS__DATA_DIR": str(data_dir),
            "LOTKEEPER_TICKETS__SECRET": SECRET,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,  # the access log
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stderr is not None
            for line in server.stderr:  # until uvicorn says it is listening
                if "Uvicorn running" in line:
                    break
            # Keep reading its log (one line a request) so the pipe never fills.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            base = f"http://127.0.0.1:{port}"
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            rng = random.Random(7)

            async def ping(http: httpx.AsyncClient, n: int) -> httpx.Response:
                return await http.get("/ping")

            async def spots(http: httpx.AsyncClient, n: int) -> httpx.Response:
                return await http.get("/spots", params={"car_size": "small"})

            async def reserve(http: httpx.AsyncClient, n: int) -> httpx.Response:
                begin = start + timedelta(hours=rng.randrange(2, 24 * 7))
                return await http.post(
                    "/reserve_spot",
                    json={
                        "car_size": rng.choice(["small", "medium", "large"]),
                        "start": begin.isoformat(),
                        "end": (begin + timedelta(hours=1)).isoformat(),
                    },
                    headers={"Authorization": f"Bearer {tokens[n]}"},
                )

            print(
                f"API load: {args.clients} clients, {args.seconds:g} s each, "
                f"{'MariaDB' if args.mysql else 'SQLite'}, uvicorn on loopback"
            )
            ceiling = report(
                "ceiling",
                *asyncio.run(hammer(base, args.clients, args.seconds, ping)),
                args.seconds,
            )
            for name, call in (("spots", spots), ("reserve_spot", reserve)):
                rate = report(
                    name, *asyncio.run(hammer(base, args.clients, args.seconds, call)), args.seconds
                )
                print(f"{'':13} ratio to the ceiling: {rate / ceiling:.2f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
