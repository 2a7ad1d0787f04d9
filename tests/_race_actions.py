"""What the processes of the race harness (`race.py`) do: each action is
one service call by one kiosk, console or worker, returning a plain value;
each plant removes one transition's condition (the proof that its race test
can fail). Runs in spawned processes: plants patch the process itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, text, update

from core import services as lk
from core.clock import FixedClock as FixedClock
from core.config import load_settings
from core.site import Site, open_site
from core.storage.models import reservations_table


def open_site_at(
    url: str, data_dir: str, secret: str, site_id: str, clock: FixedClock, extra: dict[str, Any]
) -> Site:
    """The process's own site on the test's clock (never the wall clock)."""
    settings = load_settings(
        database={"url": url, "auto_migrate": False},
        paths={"data_dir": data_dir},
        tickets={"secret": secret},
        site={"id": site_id},
        **extra,
    )
    return open_site(settings, clock=clock)


def warm(site: Site) -> None:
    """Connect and load the key ring before the barrier, so the processes
    meet the race with no set-up left to do."""
    site.db.read(lambda s: s.execute(text("SELECT 1")))
    site.keyring()


def check_in(site: Site, code: str) -> int:
    return lk.check_in(site, code, kiosk="race").id


ACTIONS: dict[str, Callable[..., Any]] = {
    "check_in": check_in,
}


# -- plants: each removes one condition ------------------------------------------


def _check_in_without_state() -> None:
    """Check-in writes the reservation by id alone (the read said confirmed)."""
    from core.services import reservations

    R = reservations_table.c
    reservations._CHECK_IN = (  # type: ignore[attr-defined]
        update(reservations_table)
        .where(R.id == bindparam("b_id"), R.site_id == bindparam("b_site"))
        .values(state="checked_in", checked_in_at=bindparam("now"))
    )


PLANTS: dict[str, Callable[[], None]] = {
    "check_in_without_state": _check_in_without_state,
}
