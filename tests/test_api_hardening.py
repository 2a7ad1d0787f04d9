"""The API against bad input and hostile clients, on SQLite and MariaDB:
ids out of range are a clean 4xx (never a 500, never a stuck
Idempotency-Key); a write that fails unexpectedly can be retried with the
same key; walk-in tickets are added to an account by their code; sign-in
limits count the real client, reading X-Forwarded-For only from trusted
proxies."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import app as api_app
from api.app import MAX_ID, SignInLimiter, client_address, create_app
from core import services as lk
from core.clock import FixedClock
from core.config import ApiSettings, load_settings
from core.errors import ConfigError
from core.services.accounts import add_ticket_to_account
from core.site import Site

PASSWORD = "correct horse battery"
LOOPBACK = ("127.0.0.1", 40000)


@pytest.fixture
def http(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site), raise_server_exceptions=False) as client:
        yield client


def sign_up(http: TestClient, email: str = "ada@example.com") -> tuple[int, dict[str, str]]:
    made = http.post("/user", json={"name": "Ada", "email": email, "password": PASSWORD})
    assert made.status_code == 201, made.text
    session = http.post("/session", json={"email": email, "password": PASSWORD})
    assert session.status_code == 201, session.text
    return made.json()["id"], {"Authorization": f"Bearer {session.json()['token']}"}


def reserve(http: TestClient, auth: dict[str, str], clock: FixedClock) -> dict[str, Any]:
    start = clock.now() + timedelta(hours=26)
    held = http.post(
        "/reserve_spot",
        json={
            "car_size": "small",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        },
        headers=auth,
    )
    assert held.status_code == 201, held.text
    return dict(held.json())


def with_proxies(site: Site, *proxies: str) -> Site:
    """The same site, behind these trusted proxies."""
    api = ApiSettings(trusted_proxies=proxies)
    return dataclasses.replace(site, settings=site.settings.model_copy(update={"api": api}))


# -- ids out of range ----------------------------------------------------------------

# Every route with an id in its path, and the body it takes.
ID_ROUTES = [
    ("GET", "/reservations/{id}", None),
    ("POST", "/reservations/{id}/pay", {}),
    ("POST", "/reservations/{id}/confirm", None),
    ("DELETE", "/reservations/{id}", None),
    ("GET", "/{id}/get_spots", None),
    ("GET", "/{id}/payments", None),
    ("POST", "/{id}/tickets", {"code": "1-ABCDEF"}),
]
OUT_OF_RANGE = [str(2**63), str(2**64), "9" * 40, str(-(2**63) - 1), "0", "-1"]


def test_every_route_with_an_id_in_its_path_is_listed_here(http: TestClient) -> None:
    document = http.get("/openapi.json").json()
    with_ids = {
        (method.upper(), path.replace("{reservation_id}", "{id}").replace("{account_id}", "{id}"))
        for path, operations in document["paths"].items()
        if "{" in path
        for method in operations
    }
    assert with_ids == {(method, path) for method, path, _ in ID_ROUTES}


@pytest.mark.parametrize(("method", "path", "body"), ID_ROUTES)
def test_an_id_out_of_range_is_a_422_naming_it_even_under_an_idempotency_key(
    http: TestClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    _, auth = sign_up(http)
    field = "reservation_id" if path.startswith("/reservations") else "account_id"
    for number in OUT_OF_RANGE:
        for attempt in range(2):  # the same request again, with the same key
            answer = http.request(
                method,
                path.format(id=number),
                json=body,
                headers={**auth, "Idempotency-Key": f"key-{number}"},
            )
            assert answer.status_code == 422, (number, attempt, answer.text)
            assert answer.json()["code"] == "invalid_input"
            assert answer.json()["field"] == field


@pytest.mark.parametrize(("method", "path", "body"), ID_ROUTES)
def test_the_largest_id_is_looked_for_and_not_found(
    http: TestClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    _, auth = sign_up(http)
    answer = http.request(method, path.format(id=MAX_ID), json=body, headers=auth)
    expected = (404, "not_found") if path.startswith("/reservations") else (403, "forbidden")
    assert (answer.status_code, answer.json()["code"]) == expected, answer.text


# -- an unexpected error under an Idempotency-Key ------------------------------------


def test_a_write_that_fails_unexpectedly_can_be_retried_with_the_same_key(
    http: TestClient, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, auth = sign_up(http)
    held = reserve(http, auth, clock)
    real = lk.cancel_reservation
    calls: list[int] = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug, or a disk that filled up")
        return real(*args, **kwargs)

    monkeypatch.setattr(lk, "cancel_reservation", fails_once)
    keyed = {**auth, "Idempotency-Key": "cancel-1"}
    failed = http.delete(f"/reservations/{held['id']}", headers=keyed)
    assert failed.status_code == 500 and failed.json()["code"] == "internal_error"
    retried = http.delete(f"/reservations/{held['id']}", headers=keyed)
    assert retried.status_code == 200, retried.text
    assert retried.json()["reservation"]["state"] == "cancelled"
    replayed = http.delete(f"/reservations/{held['id']}", headers=keyed)
    assert replayed.json() == retried.json() and replayed.headers["Idempotent-Replayed"] == "true"
    assert len(calls) == 2


def test_a_failure_of_the_engine_is_not_kept_either(
    http: TestClient, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import DatabaseUnavailable

    account_id, auth = sign_up(http)
    ticket = lk.enter(site, "small")
    real = add_ticket_to_account
    calls: list[int] = []

    def unavailable_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseUnavailable("The database is too busy right now; please try again.")
        return real(*args, **kwargs)

    monkeypatch.setattr(api_app, "add_ticket_to_account", unavailable_once)  # what it calls
    keyed = {**auth, "Idempotency-Key": "ticket-1"}
    first = http.post(f"/{account_id}/tickets", json={"code": ticket.code}, headers=keyed)
    assert first.status_code == 503
    again = http.post(f"/{account_id}/tickets", json={"code": ticket.code}, headers=keyed)
    assert again.status_code == 200 and again.json()["ticket_id"] == ticket.id


# -- tickets added to an account -----------------------------------------------------


def test_a_walk_in_ticket_is_added_by_its_code_and_then_shown(http: TestClient, site: Site) -> None:
    account_id, auth = sign_up(http)
    ticket = lk.enter(site, "small", plate="KLX 481")
    keyed = {**auth, "Idempotency-Key": "add-1"}
    added = http.post(f"/{account_id}/tickets", json={"code": ticket.short_code}, headers=keyed)
    assert added.status_code == 200, added.text
    assert (added.json()["ticket_id"], added.json()["spot"]) == (ticket.id, ticket.spot_label)
    replay = http.post(f"/{account_id}/tickets", json={"code": ticket.short_code}, headers=keyed)
    assert replay.json() == added.json() and replay.headers["Idempotent-Replayed"] == "true"
    mine = http.get(f"/{account_id}/get_spots", headers=auth).json()
    assert [s["ticket_id"] for s in mine["stays"]] == [ticket.id]


def test_adding_a_ticket_refuses_bad_codes_others_tickets_and_others_accounts(
    http: TestClient, site: Site
) -> None:
    ada, ada_auth = sign_up(http, "ada@example.com")
    bob, bob_auth = sign_up(http, "bob@example.com")
    ticket = lk.enter(site, "small")
    forged = ticket.code[:-1] + ("B" if ticket.code[-1] == "A" else "A")
    bad = http.post(f"/{ada}/tickets", json={"code": forged}, headers=ada_auth)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_code"
    empty = http.post(f"/{ada}/tickets", json={"code": ""}, headers=ada_auth)
    assert empty.status_code == 422 and empty.json()["field"] == "code"
    assert http.post(f"/{bob}/tickets", json={"code": ticket.code}, headers=bob_auth).is_success
    taken = http.post(f"/{ada}/tickets", json={"code": ticket.code}, headers=ada_auth)
    assert taken.status_code == 409 and taken.json()["code"] == "ticket_taken"
    others = http.post(f"/{bob}/tickets", json={"code": ticket.code}, headers=ada_auth)
    assert others.status_code == 403
    assert http.post(f"/{ada}/tickets", json={"code": ticket.code}).status_code == 401


def test_guessing_ticket_codes_is_a_429_with_retry_after(http: TestClient, site: Site) -> None:
    account_id, auth = sign_up(http)
    ticket = lk.enter(site, "small")
    number = ticket.short_code.split("-")[0]
    answers = [
        http.post(f"/{account_id}/tickets", json={"code": f"{number}-{c * 6}"}, headers=auth)
        for c in "QRSTUV"
    ]
    assert [a.status_code for a in answers] == [422] * 5 + [429]
    assert answers[-1].json()["code"] == "too_many_requests"
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_too_many_sign_ins_is_a_429_with_retry_after_until_the_limit_frees(site: Site) -> None:
    app = create_app(site, sign_in_limiter=SignInLimiter(attempts=2, window=60))
    with TestClient(app, client=LOOPBACK) as http:
        answers = [
            http.post("/session", json={"email": "nobody@example.com", "password": "a guess"})
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[-1].json()["code"] == "too_many_requests"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_the_sign_in_limiter_waits_exactly_until_its_oldest_attempt_leaves_the_window() -> None:
    limiter = SignInLimiter(attempts=2, window=60)
    limiter.check("a", now=100.0)
    limiter.check("a", now=110.0)
    with pytest.raises(api_app.ApiError) as refused:
        limiter.check("a", now=129.5)
    assert refused.value.retry_after == 31  # the attempt at 100 leaves at 160
    with pytest.raises(api_app.ApiError) as refused:
        limiter.check("a", now=130.0)
    assert refused.value.retry_after == 30
    limiter.check("a", now=160.0)  # and then it is let through


# -- who the client is ----------------------------------------------------------------


def test_rotating_x_forwarded_for_on_loopback_does_not_reset_the_limit(site: Site) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)
    app = create_app(site, sign_in_limiter=SignInLimiter(attempts=1000))
    with TestClient(app, client=LOOPBACK) as http:
        answers = [
            http.post(
                "/session",
                json={"email": "ada@example.com", "password": f"guess {n}"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            for n in range(20)
        ]
    codes = [a.json()["code"] for a in answers]
    assert codes[:5] == ["sign_in_failed"] * 5
    assert "sign_in_throttled" in codes[5:] and codes[-1] == "sign_in_throttled"


def test_rotating_x_forwarded_for_does_not_escape_the_per_address_limit(site: Site) -> None:
    app = create_app(site, sign_in_limiter=SignInLimiter(attempts=10, window=60))
    with TestClient(app, client=LOOPBACK) as http:
        answers = [
            http.post(
                "/session",
                json={"email": f"user{n}@example.com", "password": "a guess"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            for n in range(12)
        ]
    assert [a.status_code for a in answers] == [401] * 10 + [429, 429]
    assert answers[-1].json()["code"] == "too_many_requests"


def test_behind_a_trusted_proxy_a_strangers_failures_do_not_stop_the_owner(site: Site) -> None:
    lk.create_account(site, "Ada", "ada@example.com", PASSWORD)
    proxied = with_proxies(site, "127.0.0.1")
    app = create_app(proxied, sign_in_limiter=SignInLimiter(attempts=1000))

    with TestClient(app, client=LOOPBACK) as http:

        def sign_in(password: str, forwarded_for: str) -> str:
            answer = http.post(
                "/session",
                json={"email": "ada@example.com", "password": password},
                headers={"X-Forwarded-For": forwarded_for},
            )
            return "ok" if answer.status_code == 201 else str(answer.json()["code"])

        for n in range(8):
            sign_in(f"guess {n}", "203.0.113.9")
        assert sign_in(PASSWORD, "203.0.113.9") == "sign_in_throttled"
        # A forged entry in front does not move the stranger elsewhere.
        assert sign_in(PASSWORD, "198.51.100.7, 203.0.113.9") == "sign_in_throttled"
        assert sign_in(PASSWORD, "198.51.100.7") == "ok"


def test_the_per_address_limit_counts_each_client_behind_a_trusted_proxy(site: Site) -> None:
    app = create_app(with_proxies(site, "127.0.0.0/8"), sign_in_limiter=SignInLimiter(attempts=3))
    with TestClient(app, client=LOOPBACK) as http:

        def status(forwarded_for: str) -> int:
            answer = http.post(
                "/session",
                json={"email": "nobody@example.com", "password": "a guess"},
                headers={"X-Forwarded-For": forwarded_for},
            )
            return int(answer.status_code)

        assert [status("203.0.113.9") for _ in range(4)] == [401, 401, 401, 429]
        assert status("198.51.100.7") == 401
        assert status("127.0.0.5, 203.0.113.9") == 429  # same client, however it is relayed


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        # No trusted proxies: the header is never read.
        ("127.0.0.1", ["203.0.113.9"], (), "127.0.0.1"),
        # From a trusted proxy: the right-most entry that is not one.
        ("10.0.0.2", ["198.51.100.1, 203.0.113.9"], ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.2", ["203.0.113.9, 10.0.0.7"], ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.2", ["198.51.100.1", "203.0.113.9"], ("10.0.0.0/8",), "203.0.113.9"),
        # Not from a trusted proxy: the header is the client's own words.
        ("203.0.113.9", ["10.0.0.7"], ("10.0.0.0/8",), "203.0.113.9"),
        # Only proxies in the chain: the first of them.
        ("10.0.0.2", ["10.0.0.9, 10.0.0.7"], ("10.0.0.0/8",), "10.0.0.9"),
        # Something that is no address: stop at the proxy that passed it on.
        ("10.0.0.2", ["203.0.113.9, junk, 10.0.0.7"], ("10.0.0.0/8",), "10.0.0.7"),
        # No header: the proxy itself.
        ("10.0.0.2", [], ("10.0.0.0/8",), "10.0.0.2"),
        # Ports, brackets, IPv4 in IPv6, and IPv6 by its /64.
        ("10.0.0.2", ["203.0.113.9:5555"], ("10.0.0.0/8",), "203.0.113.9"),
        ("::1", ["[2001:db8:1:2::77]:443"], ("::1",), "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", [], (), "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", [], (), "2001:db8:1:2::/64"),
        ("testclient", ["203.0.113.9"], ("127.0.0.1",), "testclient"),
        (None, [], (), "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded_for: list[str], trusted: tuple[str, ...], client: str
) -> None:
    networks = ApiSettings(trusted_proxies=trusted).proxy_networks
    assert client_address(peer, forwarded_for, networks) == client


def test_trusted_proxies_come_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTKEEPER_API__TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16")
    assert load_settings().api.trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16")
    monkeypatch.setenv("LOTKEEPER_API__TRUSTED_PROXIES", '["::1"]')
    assert load_settings().api.trusted_proxies == ("::1/128",)
    monkeypatch.setenv("LOTKEEPER_API__TRUSTED_PROXIES", "10.0.0.300")
    with pytest.raises(ConfigError, match=r"api\.trusted_proxies"):
        load_settings()
    monkeypatch.delenv("LOTKEEPER_API__TRUSTED_PROXIES")
    assert load_settings().api.trusted_proxies == ()


# -- the key's own transitions ---------------------------------------------------------


def retry_at_once(site: Site, threads: int = 5) -> list[str]:
    """`threads` retries of one request under one key, at the same moment:
    what each was told."""
    import threading

    from core.services.api_access import IdempotencyConflict, begin_idempotent

    # Connections opened beforehand, so that no retry waits for one while
    # another runs: they meet in the database.
    warm = [site.db.engine.connect() for _ in range(threads)]
    for connection in warm:
        connection.close()
    start = threading.Barrier(threads)
    outcomes: list[str] = []

    def retry() -> None:
        start.wait(timeout=30)
        try:
            replay = begin_idempotent(site, "account 1", "k", "print")
            outcomes.append("runs" if replay is None else "replayed")
        except IdempotencyConflict:
            outcomes.append("conflict")

    workers = [threading.Thread(target=retry) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return sorted(outcomes)


def test_an_abandoned_key_is_taken_over_by_one_retry_only(site: Site, clock: FixedClock) -> None:
    from core.services.api_access import ABANDONED_AFTER, begin_idempotent

    assert begin_idempotent(site, "account 1", "k", "print") is None  # then its server died
    clock.advance(seconds=ABANDONED_AFTER.total_seconds())
    assert retry_at_once(site, 5) == ["conflict"] * 4 + ["runs"]


def _take_over_by_reading(
    site: Site, scope: str, key: str, fingerprint: str, all_read: Any = None
) -> Any:
    """The planted bug: take an abandoned key over by reading it, then
    writing it with no condition on what was read. With `all_read` (a
    barrier) every retry has read before any writes, as happens when they
    meet in the database; without it, threads on a busy machine may happen
    to run one after another and hide the bug."""
    import contextlib
    import threading

    from core.services.api_access import ABANDONED_AFTER, IdempotencyConflict
    from core.storage.models import IdempotentRequest

    def work(session: Any) -> None:
        row = session.get(IdempotentRequest, (site.id, scope, key))
        if all_read is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                all_read.wait(timeout=10)
        if row.status == 0 and row.created_at <= site.clock.now() - ABANDONED_AFTER:
            row.created_at = site.clock.now()
            return None
        raise IdempotencyConflict("still being answered")

    return site.db.write(work)


@pytest.mark.parametrize("db_url", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_the_race_test_catches_a_take_over_without_its_condition(
    site: Site, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.services import api_access

    # SQLite runs one writer at a time, so only MariaDB lets two retries in.
    assert api_access.begin_idempotent(site, "account 1", "k", "print") is None
    clock.advance(seconds=api_access.ABANDONED_AFTER.total_seconds())
    import functools
    import threading

    planted = functools.partial(_take_over_by_reading, all_read=threading.Barrier(5))
    monkeypatch.setattr(api_access, "begin_idempotent", planted)
    assert retry_at_once(site, 5).count("runs") > 1


def test_freeing_a_key_never_drops_a_kept_answer(site: Site) -> None:
    from core.services.api_access import (
        begin_idempotent,
        finish_idempotent,
        release_idempotent,
    )

    assert begin_idempotent(site, "account 1", "k", "print") is None
    finish_idempotent(site, "account 1", "k", 201, '{"id": 1}')
    release_idempotent(site, "account 1", "k")  # late, from a confused caller
    kept = begin_idempotent(site, "account 1", "k", "print")
    assert kept is not None and (kept.status, kept.body) == (201, '{"id": 1}')
