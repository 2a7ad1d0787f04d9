"""The sign-in throttle, on SQLite and MariaDB: failures count per email
and client, so a stranger guessing from one place never locks the owner
out from another; the email's spacing across clients stays a few seconds;
a failure is counted by one conditional write, so none is lost when many
come at once."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import FixedClock
from core.errors import SignInFailed, SignInThrottled
from core.services import accounts
from core.site import Site
from core.storage.models import SignInThrottle

PASSWORD = "correct horse battery"
EMAIL = "ada@example.com"


def fail(site: Site, client: str, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(SignInFailed):
            accounts.sign_in(site, EMAIL, "a wrong guess", client=client)


def counts(site: Site, key: str = EMAIL) -> dict[str, int]:
    rows = site.db.read(
        lambda s: s.execute(
            select(SignInThrottle.client, SignInThrottle.failures).where(
                SignInThrottle.site_id == site.id, SignInThrottle.email == key
            )
        ).all()
    )
    return {client: failures for client, failures in rows}


def test_a_strangers_failures_from_one_client_do_not_stop_the_owner_from_another(
    site: Site,
) -> None:
    accounts.create_account(site, "Ada", EMAIL, PASSWORD)
    fail(site, "203.0.113.9", accounts.FREE_FAILURES)
    with pytest.raises(SignInThrottled):  # blocked there, even with the right password
        accounts.sign_in(site, EMAIL, PASSWORD, client="203.0.113.9")
    assert accounts.sign_in(site, EMAIL, PASSWORD, client="198.51.100.7").email == EMAIL
    # The owner's success is hers: the stranger's client stays blocked.
    with pytest.raises(SignInThrottled):
        accounts.sign_in(site, EMAIL, "another guess", client="203.0.113.9")


def test_a_clients_block_doubles_up_to_fifteen_minutes(site: Site, clock: FixedClock) -> None:
    fail(site, "kiosk-2", accounts.FREE_FAILURES)
    waits = []
    for _ in range(14):
        with pytest.raises(SignInThrottled) as blocked:
            accounts.sign_in(site, EMAIL, "a wrong guess", client="kiosk-2")
        waits.append(blocked.value.retry_after_seconds)
        clock.advance(seconds=blocked.value.retry_after_seconds)
        fail(site, "kiosk-2")
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]


def test_failures_spread_over_many_clients_hold_the_email_back_a_few_seconds_at_most(
    site: Site, clock: FixedClock
) -> None:
    accounts.create_account(site, "Ada", EMAIL, PASSWORD)
    waits = []
    for n in range(60):  # a guesser on many addresses, never blocked on any one
        fail(site, f"198.51.100.{n}")
        try:
            accounts.sign_in(site, EMAIL, "a wrong guess", client=f"198.51.100.{n}")
        except SignInThrottled as blocked:
            waits.append(blocked.retry_after_seconds)
            clock.advance(seconds=blocked.retry_after_seconds)
        except SignInFailed:
            pass
    # Past the free failures, every guess waits for the one before...
    assert len(waits) > 60 - 2 * accounts.EMAIL_FREE_FAILURES
    # ... but never more than a few seconds,
    assert max(waits) <= accounts.EMAIL_MAX_BLOCK.total_seconds() <= 5
    # and the owner on a client of her own is not held back at all.
    assert accounts.sign_in(site, EMAIL, PASSWORD, client="192.0.2.1").email == EMAIL


def test_the_email_spacing_holds_back_a_client_that_failed_only_once(
    site: Site, clock: FixedClock
) -> None:
    accounts.create_account(site, "Ada", EMAIL, PASSWORD)
    for n in range(accounts.EMAIL_FREE_FAILURES):
        fail(site, f"198.51.100.{n}")
    with pytest.raises(SignInThrottled) as held:
        accounts.sign_in(site, EMAIL, PASSWORD, client="198.51.100.0")
    assert held.value.retry_after_seconds <= accounts.EMAIL_MAX_BLOCK.total_seconds()
    clock.advance(seconds=held.value.retry_after_seconds)
    assert accounts.sign_in(site, EMAIL, PASSWORD, client="198.51.100.0").email == EMAIL


def test_a_clients_old_failures_are_forgotten(site: Site, clock: FixedClock) -> None:
    accounts.create_account(site, "Ada", EMAIL, PASSWORD)
    fail(site, "kiosk-1", accounts.FREE_FAILURES - 1)
    clock.advance(hours=23)
    fail(site, "kiosk-1")  # the fifth in a row within a day: blocked
    with pytest.raises(SignInThrottled):
        accounts.sign_in(site, EMAIL, PASSWORD, client="kiosk-1")
    clock.advance(hours=24, seconds=1)
    fail(site, "kiosk-1")  # a day later, one typo is just one again
    assert accounts.sign_in(site, EMAIL, PASSWORD, client="kiosk-1").email == EMAIL


def test_the_default_client_keeps_its_own_count_for_staff_style_callers(site: Site) -> None:
    key = "staff:sam"
    for _ in range(accounts.FREE_FAILURES):
        accounts._record_failure(site, key)
    now = site.clock.now()
    assert accounts._blocked_for(site, key, now) == 1
    assert accounts._blocked_for(site, key, now, client="elsewhere") == 0
    accounts._clear_failures(site, key)
    assert accounts._blocked_for(site, key, now) == 0
    assert counts(site, key) == {}


def record_failures_at_once(site: Site, threads: int = 6, each: int = 8) -> dict[str, int]:
    """Failures from one client, recorded by `threads` threads at once."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def guess() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(each):
                accounts._record_failure(site, EMAIL, client="203.0.113.9")
        except BaseException as error:  # surfaced below
            errors.append(error)

    workers = [threading.Thread(target=guess) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    return counts(site)


def test_concurrent_failures_are_all_counted(site: Site) -> None:
    assert record_failures_at_once(site, 6, 8) == {"203.0.113.9": 48, accounts.ALL_CLIENTS: 48}
    row = site.db.read(lambda s: s.get(SignInThrottle, (site.id, EMAIL, "203.0.113.9")))
    assert row is not None and row.blocked_until == site.clock.now() + accounts.MAX_BLOCK


def _read_then_write(
    session: Session,
    site: Site,
    key: str,
    client: str,
    rule: Any,
    now: datetime,
) -> None:
    """The planted bug: count a failure by reading the row, then writing
    back what was read plus one."""
    row = session.get(SignInThrottle, (site.id, key, client))
    if row is None:
        session.add(
            SignInThrottle(
                site_id=site.id, email=key, client=client, failures=1, last_failed_at=now
            )
        )
        session.flush()
        return
    seen = row.failures
    time.sleep(0.005)  # the window another writer lands in
    row.failures = seen + 1


@pytest.mark.parametrize("db_url", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_the_race_test_catches_a_read_then_write(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite runs one writer at a time, so only MariaDB can lose an update.
    monkeypatch.setattr(accounts, "_count_failure", _read_then_write)
    assert record_failures_at_once(site, 6, 8)["203.0.113.9"] < 48


def test_a_client_named_like_the_all_clients_row_is_counted_once(site: Site) -> None:
    fail(site, accounts.ALL_CLIENTS, 2)
    assert counts(site)[accounts.ALL_CLIENTS] == 2  # not 4: its own row is elsewhere
    assert len(counts(site)) == 2
