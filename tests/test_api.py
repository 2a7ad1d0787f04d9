"""The remote API through an HTTP test client, on SQLite and MariaDB:
accounts and sessions, availability, reserve-pay-cancel, the account's
own data only, idempotent replays, errors as JSON with stable codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import SiteFactory, make_layout
from fastapi.testclient import TestClient

from api.app import SignInLimiter, create_app
from core import services as lk
from core.clock import FixedClock
from core.site import Site

PASSWORD = "correct horse battery"


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site, tail_seconds=0.05)) as http:
        yield http


def sign_up(http: TestClient, email: str = "ada@example.com") -> tuple[int, dict[str, str]]:
    """A new account and the Authorization header of its session."""
    made = http.post("/user", json={"name": "Ada", "email": email, "password": PASSWORD})
    assert made.status_code == 201, made.text
    session = http.post("/session", json={"email": email, "password": PASSWORD})
    assert session.status_code == 201, session.text
    return made.json()["id"], {"Authorization": f"Bearer {session.json()['token']}"}


def window(clock: FixedClock, start_hours: float = 26, hours: float = 2) -> dict[str, str]:
    start = clock.now() + timedelta(hours=start_hours)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat()}


def reserve(
    http: TestClient, auth: dict[str, str], clock: FixedClock, **extra: Any
) -> dict[str, Any]:
    held = http.post(
        "/reserve_spot", json={"car_size": "small", **window(clock), **extra}, headers=auth
    )
    assert held.status_code == 201, held.text
    return dict(held.json())


def test_an_account_signs_in_and_out(client: TestClient) -> None:
    account_id, auth = sign_up(client)
    again = client.post(
        "/user", json={"name": "Ada", "email": "ADA@example.com", "password": PASSWORD}
    )
    assert again.status_code == 409 and again.json()["code"] == "email_taken"
    wrong = client.post("/session", json={"email": "ada@example.com", "password": "nope nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "sign_in_failed"
    mine = client.get(f"/{account_id}/get_spots", headers=auth)
    assert mine.status_code == 200, mine.text
    assert client.delete("/session", headers=auth).status_code == 204
    ended = client.get(f"/{account_id}/get_spots", headers=auth)
    assert ended.status_code == 401 and ended.json()["code"] == "not_signed_in"
    assert ended.headers["WWW-Authenticate"] == "Bearer"


def test_bad_input_is_422_naming_the_field_never_a_500(client: TestClient) -> None:
    missing = client.post("/user", json={"name": "Ada", "email": "ada@example.com"})
    assert missing.status_code == 422
    assert missing.json() == {
        "code": "invalid_input",
        "message": "password: Field required",
        "field": "password",
    }
    bad_size = client.get("/spots", params={"car_size": "bus"})
    assert bad_size.status_code == 422 and bad_size.json()["field"] == "car_size"
    bad_email = client.post("/user", json={"name": "Ada", "email": "ada", "password": PASSWORD})
    assert bad_email.status_code == 422 and "valid email" in bad_email.json()["message"]
    _, auth = sign_up(client)
    naive = client.post(
        "/reserve_spot",
        json={"car_size": "small", "start": "2026-11-24T09:00:00", "end": "2026-11-24T10:00:00"},
        headers=auth,
    )
    assert naive.status_code == 422 and naive.json()["field"] == "start"
    assert client.get("/nowhere").json()["code"] == "not_found"


def test_sign_in_is_rate_limited_per_client(site: Site) -> None:
    limited = create_app(site, sign_in_limiter=SignInLimiter(attempts=3, window=60))
    with TestClient(limited) as http:
        sign_up(http)  # one attempt
        for _ in range(2):
            http.post("/session", json={"email": "ada@example.com", "password": "wrong one"})
        blocked = http.post("/session", json={"email": "ada@example.com", "password": PASSWORD})
    assert blocked.status_code == 429 and blocked.json()["code"] == "too_many_requests"


def test_the_engine_slows_down_guessing_one_email_with_retry_after(client: TestClient) -> None:
    sign_up(client)
    answers = [
        client.post("/session", json={"email": "ada@example.com", "password": f"guess {n}"})
        for n in range(6)
    ]
    throttled = answers[-1]
    assert throttled.status_code == 429 and throttled.json()["code"] == "sign_in_throttled"
    assert int(throttled.headers["Retry-After"]) > 0


def test_spots_shows_counts_per_size_and_the_free_spots_that_fit(
    client: TestClient, site: Site
) -> None:
    lk.enter(site, "small")
    every = client.get("/spots").json()
    small = next(s for s in every["sizes"] if s["size"] == "small")
    assert (small["total"], small["occupied"], small["free"]) == (2, 1, 1)
    assert len(every["free_spots"]) == 5
    large_only = client.get("/spots", params={"car_size": "large"}).json()
    assert [s["size"] for s in large_only["free_spots"]] == ["large"]
    assert {"label", "level", "size"} == set(large_only["free_spots"][0])


def test_reserve_pay_check_in_and_see_it_in_the_history(
    client: TestClient, site: Site, clock: FixedClock
) -> None:
    account_id, auth = sign_up(client)
    held = reserve(client, auth, clock, plate="ab 123")
    assert held["state"] == "held" and held["price"] == 2 * 350 and held["plate"] == "AB 123"
    declined = client.post(
        f"/reservations/{held['id']}/pay", json={"card": "tok_declined"}, headers=auth
    )
    assert declined.status_code == 402 and declined.json()["code"] == "payment_declined"
    paid = client.post(f"/reservations/{held['id']}/pay", json={"card": "tok_visa"}, headers=auth)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["reservation"]["state"] == "confirmed"
    assert (body["payment"]["status"], body["payment"]["card_last4"]) == ("succeeded", "4242")
    again = client.post(f"/reservations/{held['id']}/pay", json={}, headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "not_held"

    mine = client.get(f"/{account_id}/get_spots", headers=auth).json()
    assert [r["id"] for r in mine["reservations"]] == [held["id"]] and mine["stays"] == []
    history = client.get(f"/{account_id}/payments", params={"per_page": 1}, headers=auth).json()
    assert (history["total"], history["pages"], len(history["items"])) == (2, 2, 1)
    assert history["items"][0]["status"] == "succeeded"  # newest first

    clock.advance(hours=26)
    ticket = lk.check_in(site, body["reservation"]["code"])  # the kiosk takes the code
    expired = client.get(f"/{account_id}/get_spots", headers=auth)
    assert expired.status_code == 401  # a session lasts 12 hours
    session = client.post("/session", json={"email": "ada@example.com", "password": PASSWORD})
    auth = {"Authorization": f"Bearer {session.json()['token']}"}
    mine = client.get(f"/{account_id}/get_spots", headers=auth).json()
    assert [s["ticket_id"] for s in mine["stays"]] == [ticket.id]


def test_a_hold_not_paid_in_five_minutes_is_gone(client: TestClient, clock: FixedClock) -> None:
    _, auth = sign_up(client)
    held = reserve(client, auth, clock)
    clock.advance(minutes=5)
    late = client.post(f"/reservations/{held['id']}/pay", json={}, headers=auth)
    assert late.status_code == 409 and late.json()["code"] == "hold_expired"


def test_no_spot_for_the_window_is_a_409(make_site: SiteFactory, clock: FixedClock) -> None:
    site = make_site(make_layout(small=1))
    with TestClient(create_app(site)) as http:
        _, auth = sign_up(http)
        reserve(http, auth, clock)
        full = http.post("/reserve_spot", json={"car_size": "small", **window(clock)}, headers=auth)
    assert full.status_code == 409 and full.json()["code"] == "no_spot"


def test_cancelling_frees_the_spot_and_refunds(client: TestClient, clock: FixedClock) -> None:
    _, auth = sign_up(client)
    held = reserve(client, auth, clock)
    client.post(f"/reservations/{held['id']}/pay", json={}, headers=auth)
    cancelled = client.delete(f"/reservations/{held['id']}", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["reservation"]["state"] == "cancelled"
    assert body["refund_amount"] == held["price"] and body["refund"]["kind"] == "refund"
    twice = client.delete(f"/reservations/{held['id']}", headers=auth)
    assert twice.status_code == 409 and twice.json()["code"] == "not_cancellable"


def test_an_account_sees_only_its_own_data(client: TestClient, clock: FixedClock) -> None:
    ada, ada_auth = sign_up(client, "ada@example.com")
    bob, bob_auth = sign_up(client, "bob@example.com")
    held = reserve(client, ada_auth, clock)
    for path in (f"/{ada}/get_spots", f"/{ada}/payments"):
        refused = client.get(path, headers=bob_auth)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert client.get(path).status_code == 401
    for call in (
        lambda: client.get(f"/reservations/{held['id']}", headers=bob_auth),
        lambda: client.post(f"/reservations/{held['id']}/pay", json={}, headers=bob_auth),
        lambda: client.delete(f"/reservations/{held['id']}", headers=bob_auth),
    ):
        answer = call()
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert client.get(f"/reservations/{held['id']}", headers=ada_auth).json()["state"] == "held"
    assert bob != ada


def test_a_replayed_write_gets_the_first_answer_and_does_nothing_again(
    client: TestClient, site: Site, clock: FixedClock
) -> None:
    account_id, auth = sign_up(client)
    keyed = {**auth, "Idempotency-Key": "reserve-1"}
    body = {"car_size": "small", **window(clock)}
    first = client.post("/reserve_spot", json=body, headers=keyed)
    replay = client.post("/reserve_spot", json=body, headers=keyed)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
    assert lk.account_reservations(site, account_id).total == 1
    other = client.post("/reserve_spot", json={**body, "car_size": "large"}, headers=keyed)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"

    pay_key = {**auth, "Idempotency-Key": "pay-1"}
    paid = client.post(f"/reservations/{first.json()['id']}/pay", json={}, headers=pay_key)
    paid_again = client.post(f"/reservations/{first.json()['id']}/pay", json={}, headers=pay_key)
    assert paid_again.json() == paid.json()
    charges = [p for p in lk.payment_history(site, account_id).items if p.kind == "charge"]
    assert len(charges) == 1

    # A refusal is an answer too: replayed, not retried.
    gone = {**auth, "Idempotency-Key": "cancel-missing"}
    assert client.delete("/reservations/999", headers=gone).status_code == 404
    assert client.delete("/reservations/999", headers=gone).headers["Idempotent-Replayed"] == "true"


def test_the_openapi_document_lists_every_endpoint(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in (
        ("/user", "post"),
        ("/session", "post"),
        ("/session", "delete"),
        ("/spots", "get"),
        ("/reserve_spot", "post"),
        ("/reservations/{reservation_id}/pay", "post"),
        ("/reservations/{reservation_id}", "delete"),
        ("/{account_id}/get_spots", "get"),
        ("/{account_id}/payments", "get"),
    ):
        assert method in paths[path], (path, method)
    assert document["components"]["schemas"]["Problem"]["required"] == ["code", "message"]
