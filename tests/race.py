"""The race harness: N spawned OS processes, each with its own interpreter,
engine and connection pool (like separate kiosks, consoles and workers),
released together by a barrier against the same ids or codes, on SQLite or
MariaDB. Each process makes one call per round; the test gets every call's
outcome and asserts it exactly.

    outcomes = race(db_url, tmp_path, [[call("check_in", code)] * 4])

A round is a list of calls, one per process (so a round can mix a check-in,
a cancel and a no-show release); every round has the same number of calls.
Several rounds reuse the processes (one spawn, many races), each released
by its own barrier. A call names an action of `_race_actions.ACTIONS`;
`plants` name bugs of `_race_actions.PLANTS` that every process plants in
itself before the first round (the proof that a test can fail). Each plant
touches one transition only, so one group of processes can carry them all.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import SECRET

TIMEOUT = 240


@dataclass(frozen=True)
class Call:
    """One process's part in a round: `action(site, *args)` on the site
    `site_id`, with the clock at `at` (default: the race's `now`)."""

    action: str
    args: tuple[Any, ...] = ()
    at: str | None = None
    site_id: str = "demo"


def call(action: str, *args: Any, at: datetime | None = None, site_id: str = "demo") -> Call:
    return Call(action, args, at.isoformat() if at else None, site_id)


@dataclass(frozen=True)
class Outcome:
    """What one call did: `value` when it returned, else the error's class
    name and message (`LotkeeperError`s are refusals; anything else is a
    crash, with its traceback)."""

    action: str
    value: Any = None
    error: str | None = None
    message: str = ""
    crashed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Round:
    outcomes: list[Outcome] = field(default_factory=list)

    def won(self, action: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok and action in (None, o.action)]

    def refused(self, action: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and action in (None, o.action)]

    def errors(self) -> Counter[str]:
        return Counter(o.error for o in self.outcomes if o.error)


def _worker(
    index: int,
    url: str,
    data_dir: str,
    now_iso: str,
    plants: Sequence[str],
    settings: dict[str, Any],
    calls: list[Call],
    barrier: Any,
    results: Any,
) -> None:
    import _race_actions

    from core.errors import LotkeeperError

    outcomes: list[Outcome] = []
    try:
        clock = _race_actions.FixedClock(datetime.fromisoformat(now_iso))
        sites = {
            site_id: _race_actions.open_site_at(url, data_dir, SECRET, site_id, clock, settings)
            for site_id in dict.fromkeys(c.site_id for c in calls)
        }
        for name in plants:
            _race_actions.PLANTS[name]()
        for site in sites.values():
            _race_actions.warm(site)
    except Exception:
        # Still meet every barrier, so the others are not left waiting.
        crash = traceback.format_exc()
        for c in calls:
            barrier.wait(TIMEOUT)
            outcomes.append(Outcome(c.action, error="setup", message=crash, crashed=True))
        results.put((index, outcomes))
        return
    for c in calls:
        clock.set(datetime.fromisoformat(c.at or now_iso))
        action = _race_actions.ACTIONS[c.action]
        barrier.wait(TIMEOUT)
        try:
            outcomes.append(Outcome(c.action, value=action(sites[c.site_id], *c.args)))
        except LotkeeperError as error:
            outcomes.append(Outcome(c.action, error=type(error).__name__, message=str(error)))
        except Exception as error:
            outcomes.append(
                Outcome(
                    c.action,
                    error=type(error).__name__,
                    message=traceback.format_exc(),
                    crashed=True,
                )
            )
    for site in sites.values():
        site.close()
    results.put((index, outcomes))


def race(
    db_url: str,
    data_dir: Path,
    rounds: Sequence[Sequence[Call]],
    *,
    now: datetime,
    plants: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
) -> list[Round]:
    """Run each round's calls at once, one per process; return each round's
    outcomes in the order of its calls. A crash (not a `LotkeeperError`)
    fails the test at once, with its traceback."""
    width = len(rounds[0])
    assert all(len(r) == width for r in rounds), "every round has one call per process"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(width)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_worker,
            args=(
                i,
                db_url,
                str(data_dir),
                now.isoformat(),
                list(plants),
                settings or {},
                [r[i] for r in rounds],
                barrier,
                results,
            ),
            daemon=True,
        )
        for i in range(width)
    ]
    for process in processes:
        process.start()
    by_process = dict(results.get(timeout=TIMEOUT) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    out = [Round([by_process[i][r] for i in range(width)]) for r in range(len(rounds))]
    crashes = [o for rnd in out for o in rnd.outcomes if o.crashed]
    assert not crashes, crashes[0].message
    return out
