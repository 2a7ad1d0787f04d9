"""Kiosk start-up: time from process start to the start screen being
interactive (its live availability on screen), and peak memory (max RSS).
Prints figures; it passes or fails nothing. Target: <= 1.0 s and <= 120 MB.

Each run is a fresh `python` process on the embedded default (a SQLite file
in a temporary data dir, migrated and seeded by the first run, which is
reported apart). As a baseline measured in the same run, the same process
that only imports Python and exits.

    python bench/kiosk_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from core.config import load_settings
from core.site import open_site
from kiosk.app import KioskApp

out = sys.argv[1]


class Probe(KioskApp):
    # Ready = the start screen shows the live counts: a driver can act.
    def _show_availability(self, availability):
        super()._show_availability(availability)
        if not getattr(self, "_reported", False):
            self._reported = True
            self.call_after_refresh(self._report)

    def _report(self):
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(out, "w") as handle:
            json.dump({"ready": time.time(), "rss_mb": rss_kb / 1024}, handle)
        self.exit()


site = open_site(load_settings())
Probe(site).run(headless=True)
"""

BASELINE = r"""
import json, resource, sys, time
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with open(sys.argv[1], "w") as handle:
    json.dump({"ready": time.time(), "rss_mb": rss_mb}, handle)
"""


def measure(code: str, data_dir: Path) -> tuple[float, float]:
    """(seconds from spawning the process to ready, max RSS in MB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    env = dict(os.environ, LOTKEEPER_PATHS__DATA_DIR=str(data_dir))
    env.pop("LOTKEEPER_CONFIG", None)
    started = time.time()
    subprocess.run(
        [sys.executable, "-c", code, str(out)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    report = json.loads(out.read_text())
    out.unlink()
    return report["ready"] - started, report["rss_mb"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="lotkeeper-startup-"))

    first, first_rss = measure(CHILD, data_dir)
    print(f"first start (creates, migrates, seeds the lot): {first:.2f} s, {first_rss:.0f} MB")

    kiosk = [measure(CHILD, data_dir) for _ in range(args.runs)]
    bare = [measure(BASELINE, data_dir) for _ in range(args.runs)]
    seconds = statistics.median(t for t, _ in kiosk)
    rss = statistics.median(m for _, m in kiosk)
    bare_seconds = statistics.median(t for t, _ in bare)
    bare_rss = statistics.median(m for _, m in bare)
    print(f"kiosk start to interactive, median of {args.runs}: {seconds:.2f} s, {rss:.0f} MB")
    print(
        f"bare python start, median of {args.runs}:         {bare_seconds:.2f} s, {bare_rss:.0f} MB"
    )
    print(f"kiosk / bare python: {seconds / bare_seconds:.1f}x time, {rss / bare_rss:.1f}x memory")
    print(f"target <= 1.0 s and <= 120 MB: {'met' if seconds <= 1.0 and rss <= 120 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
