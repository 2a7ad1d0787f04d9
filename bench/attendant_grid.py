"""The attendant grid under load. Prints figures; it passes or fails nothing.

For the 450-spot demo lot and a 5,000-spot lot (SQLite, embedded default):
  burst    time to apply 1,000 spot changes to the grid at once (the lot
           state replaced, every level redrawn, the screen refreshed);
           baseline in the same run: the same refresh with no change.
  latency  a kiosk in another OS process makes entries; time from each
           entry's commit to the console's grid showing that spot occupied
           (p50/p99), with the console's own 0.5 s tail.
Targets: kiosk-to-grid p99 <= 1 s; the burst <= 0.5 s on the 5,000-spot lot.

    python bench/attendant_grid.py [--entries 40]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core import services as lk
from core.config import asset_path, load_settings
from core.domain import SpotStatus
from core.layout import parse_layout, read_layout
from core.site import Site, open_site

SECRET = "bench-secret-" + "g" * 40


def open_bench_site(data_dir: str) -> Site:
    return open_site(
        load_settings(
            database={"url": f"sqlite:///{data_dir}/bench.sqlite3", "auto_migrate": True},
            paths={"data_dir": data_dir},
            tickets={"secret": SECRET},
        )
    )


def big_layout(spots: int) -> Any:
    levels = []
    per_level = spots // 10
    for level in range(1, 11):
        rows = [
            {"prefix": f"{level}{row}", "count": per_level // 5, "size": "medium"}
            for row in "ABCDE"
        ]
        levels.append({"name": f"Level {level}", "rows": rows})
    return parse_layout({"name": "Big lot", "levels": levels}, "bench")


def kiosk_main(data_dir: str, entries: str, go_file: str, out_file: str) -> None:
    """A kiosk in its own process: waits for `go_file`, then makes entries,
    appending "label commit-time" lines to `out_file`, then "done"."""
    site = open_bench_site(data_dir)
    go, deadline = Path(go_file), time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:  # the console never came up
            return
        time.sleep(0.01)
    with open(out_file, "a") as out:
        for _ in range(int(entries)):
            ticket = lk.enter(site, "medium", kiosk="bench-kiosk")
            out.write(f"{ticket.spot_label} {time.time()}\n")
            out.flush()
            time.sleep(0.1)  # a lane, not a hammer: one car every 100 ms
        out.write("done\n")
    site.close()


async def measure(site: Site) -> tuple[float, float, list[float]]:
    from attendant.app import AttendantApp, ConsoleScreen
    from core.services.staff import add_staff, staff_sign_in

    add_staff(site, "Bench", "attendant", "1357")
    seen: dict[str, float] = {}

    class Timed(AttendantApp):
        def _apply(self, *args: Any) -> None:
            super()._apply(*args)
            now = time.time()
            for spot in self.spots:
                if spot.status is SpotStatus.OCCUPIED and spot.label not in seen:
                    seen[spot.label] = now

    app = Timed(site)
    async with app.run_test(size=(160, 50)) as pilot:
        app.signed_in(staff_sign_in(site, "Bench", "1357"))
        await pilot.pause()
        assert any(isinstance(s, ConsoleScreen) for s in app.screen_stack)
        spots = list(app.spots)

        started = time.perf_counter()
        app.redraw()
        await pilot.pause()
        baseline = time.perf_counter() - started

        changed = [
            dataclasses.replace(s, status=SpotStatus.OCCUPIED) if i < 1000 else s
            for i, s in enumerate(spots)
        ]
        started = time.perf_counter()
        app.spots = tuple(changed)
        app.redraw()
        await pilot.pause()
        burst = time.perf_counter() - started
        app.spots = tuple(spots)
        app.redraw()

        # The kiosk process was started before the app (see main); release it.
        go_file, out_file = CHANNEL
        Path(go_file).touch()
        committed: dict[str, float] = {}
        deadline = time.time() + 120
        while time.time() < deadline:
            lines = Path(out_file).read_text().splitlines() if Path(out_file).exists() else []
            if lines and lines[-1] == "done":
                committed = {label: float(t) for label, t in (ln.split() for ln in lines[:-1])}
                break
            await asyncio.sleep(0.05)
        deadline = time.time() + 5
        while time.time() < deadline and not set(committed) <= set(seen):
            await asyncio.sleep(0.05)
    latencies = [seen[label] - t for label, t in committed.items() if label in seen]
    return baseline, burst, latencies


CHANNEL: tuple[str, str] = ("", "")


def main() -> int:
    global CHANNEL
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=40)
    parser.add_argument("--kiosk", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kiosk:
        kiosk_main(*args.kiosk)
        return 0
    print(
        f"{'lot':<10} {'refresh ms':>11} {'1,000-change burst ms':>22} "
        f"{'kiosk->grid p50 ms':>19} {'p99 ms':>8}"
    )
    for name, layout in (
        ("450", read_layout(asset_path("lot.toml"))),
        ("5,000", big_layout(5000)),
    ):
        data_dir = tempfile.mkdtemp(prefix="lotkeeper-grid-")
        site = open_bench_site(data_dir)
        lk.load_layout(site, layout)
        CHANNEL = (f"{data_dir}/go", f"{data_dir}/commits.txt")
        process = subprocess.Popen(
            [sys.executable, __file__, "--kiosk", data_dir, str(args.entries), *CHANNEL]
        )
        baseline, burst, latencies = asyncio.run(measure(site))
        process.wait(timeout=120)
        site.close()
        latencies.sort()
        p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
        print(
            f"{name:<10} {baseline * 1000:>11.1f} {burst * 1000:>22.1f} {p50:>19.0f} {p99:>8.0f}"
            f"   ({len(latencies)}/{args.entries} seen)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
