"""The remote API through an HTTP test client, on SQLite and MariaDB:
accounts and sessions, availability, reserve-pay-cancel, the account's
own data only, idempotent replays, errors as JSON with stable codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
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
    assert {"label", "level", "size", "accessible", "ev"} == set(large_only["free_spots"][0])


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
        ("/{account_id}/tickets", "post"),
    ):
        assert method in paths[path], (path, method)
    assert document["components"]["schemas"]["Problem"]["required"] == ["code", "message"]


# -- live availability ------------------------------------------------------------


def test_the_live_socket_pushes_an_entry_made_by_another_process(
    site: Site, db_url: str, tmp_path: Path
) -> None:
    import json
    import multiprocessing
    import socket
    import threading

    import _workers
    import uvicorn
    from conftest import SECRET
    from websockets.sync.client import connect

    # The kiosk process starts first and waits until the client is connected.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    kiosk = ctx.Process(
        target=_workers.enter_and_exit,
        args=(
            db_url,
            str(tmp_path),
            SECRET,
            site.clock.now().isoformat(),
            "KLX 481",
            barrier,
            results,
        ),
        daemon=True,
    )
    kiosk.start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # connections wait in the backlog until the server takes them
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(site, tail_seconds=0.1), log_level="warning", lifespan="on")
    )
    serving = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    serving.start()
    try:
        with connect(f"ws://127.0.0.1:{port}/live", open_timeout=30) as live:
            first = json.loads(live.recv(timeout=30))
            assert first["type"] == "snapshot" and len(first["spots"]) == 6
            assert all(s["status"] == "free" for s in first["spots"])
            barrier.wait(timeout=60)
            assert results.get(timeout=60) == []
            seen: dict[str, str] = {}
            occupied = 0
            # The kiosk let one car in and another in and out: wait for the end.
            while not ("occupied" in seen.values() and occupied == 1):
                update = json.loads(live.recv(timeout=10))
                assert update["type"] == "update"
                seen |= {s["label"]: s["status"] for s in update["spots"]}
                occupied = next(s for s in update["sizes"] if s["size"] == "small")["occupied"]
            assert list(seen.values()).count("occupied") == 1
    finally:
        server.should_exit = True
        serving.join(timeout=30)
        kiosk.join(timeout=30)


def test_a_client_that_falls_behind_gets_a_fresh_snapshot_not_the_backlog(site: Site) -> None:
    from api.live import BACKLOG, LiveFeed

    feed = LiveFeed(site)
    slow = feed.join()  # joined before the first read: owes a snapshot
    feed.publish(lk.snapshot(site))
    assert slow.queue.qsize() == 1 and slow.queue.get_nowait()["type"] == "snapshot"
    lk.enter(site, "small")
    lot = lk.snapshot(site)
    for _ in range(BACKLOG + 1):  # more changes than the client's queue holds
        feed.states = {}  # every spot counts as changed
        feed.publish(lot)
    messages = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert slow.resyncs == 1
    assert messages[0]["type"] == "snapshot" and len(messages[0]["spots"]) == 6
    assert all(m["type"] == "update" for m in messages[1:])
    assert len(messages) < BACKLOG + 1  # the backlog was dropped


# -- paying with a Stripe PaymentIntent (against the loopback Stripe fake) --------


def confirmed_intent(fake: Any, amount: int, currency: str = "usd") -> str:
    """A PaymentIntent the driver's phone paid, as Stripe would hold it."""
    import stripe

    phone = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})
    intent = phone.v1.payment_intents.create(
        {
            "amount": amount,
            "currency": currency,
            "allowed_payment_method_types": ["card_present"],
            "capture_method": "manual",  # authorized; the server captures
        }
    )
    phone.v1.terminal.readers.process_payment_intent(fake.reader_id, {"payment_intent": intent.id})
    fake.present_card("4242424242424242")
    return str(intent.id)


def test_a_reservation_paid_with_a_stripe_payment_intent_is_confirmed_once(
    site: Site, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stripe._http_client
    from fake_stripe import FakeStripe

    from core.payments.stripe_terminal import StripeTerminalProvider

    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)
    with FakeStripe() as fake, TestClient(create_app(site)) as http:
        site.use_payment_provider(
            StripeTerminalProvider(fake.api_key, fake.reader_id, api_base=fake.url)
        )
        account_id, auth = sign_up(http)
        held = reserve(http, auth, clock)
        by_reader = http.post(f"/reservations/{held['id']}/pay", json={}, headers=auth)
        assert by_reader.status_code == 422  # the garage's own readers are not for phones
        assert by_reader.json()["field"] == "payment_intent_id"
        wrong = confirmed_intent(fake, held["price"] - 1)
        refused = http.post(
            f"/reservations/{held['id']}/pay", json={"payment_intent_id": wrong}, headers=auth
        )
        assert refused.status_code == 402 and "PaymentIntent is for" in refused.json()["message"]
        unknown = http.post(
            f"/reservations/{held['id']}/pay",
            json={"payment_intent_id": "pi_nothing"},
            headers=auth,
        )
        assert unknown.status_code == 402 and "no such PaymentIntent" in unknown.json()["message"]

        intent = confirmed_intent(fake, held["price"])
        paid = http.post(
            f"/reservations/{held['id']}/pay", json={"payment_intent_id": intent}, headers=auth
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["reservation"]["state"] == "confirmed"
        assert paid.json()["payment"]["card_last4"] == "4242"
        assert len(fake.successful_charges()) == 1  # captured by the server, once

        other = reserve(http, auth, clock, car_size="large")
        reused = http.post(
            f"/reservations/{other['id']}/pay", json={"payment_intent_id": intent}, headers=auth
        )
        assert reused.status_code == 422 and "already paid for something else" in reused.text

        # A PaymentIntent the card has not completed yet: accepted, to confirm later.
        import stripe

        phone = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})
        waiting = phone.v1.payment_intents.create(
            {"amount": other["price"], "currency": "usd", "capture_method": "manual"}
        )
        later = http.post(
            f"/reservations/{other['id']}/pay", json={"payment_intent_id": waiting.id}, headers=auth
        )
        assert later.status_code == 202, later.text
        assert later.json()["payment"]["status"] == "pending"
        assert later.json()["reservation"]["state"] == "held"
        not_yet = http.post(f"/reservations/{other['id']}/confirm", headers=auth)
        assert not_yet.status_code == 409 and not_yet.json()["code"] == "not_paid"
    history = [
        p for p in lk.payment_history(site, account_id).items if p.status.value == "succeeded"
    ]
    assert [(p.amount, p.reservation_id) for p in history] == [(held["price"], held["id"])]


def test_the_simulated_provider_takes_no_payment_intents(
    client: TestClient, clock: FixedClock
) -> None:
    _, auth = sign_up(client)
    held = reserve(client, auth, clock)
    answer = client.post(
        f"/reservations/{held['id']}/pay", json={"payment_intent_id": "pi_123"}, headers=auth
    )
    assert answer.status_code == 422 and "test card" in answer.json()["message"]
    assert client.get(f"/reservations/{held['id']}", headers=auth).json()["state"] == "held"


def test_confirm_answers_once_the_payment_settled(client: TestClient, clock: FixedClock) -> None:
    _, auth = sign_up(client)
    held = reserve(client, auth, clock)
    unpaid = client.post(f"/reservations/{held['id']}/confirm", headers=auth)
    assert unpaid.status_code == 409 and unpaid.json()["code"] == "not_paid"
    client.post(f"/reservations/{held['id']}/pay", json={"card": "tok_visa"}, headers=auth)
    confirmed = client.post(f"/reservations/{held['id']}/confirm", headers=auth)
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "confirmed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_lotkeeper_api_serves_on_the_port_it_is_given(db_url: str, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    import httpx
    from conftest import SECRET

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "lotkeeper.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
        f'[paths]\ndata_dir = "{tmp_path}"\n[tickets]\nsecret = "{SECRET}"\n'
    )
    command = [
        sys.executable,
        "-m",
        "core.cli",
        "--config",
        str(config),
        "api",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert server.stderr is not None
        for line in server.stderr:  # blocks until uvicorn says it listens
            if "Uvicorn running" in line:
                break
        answer = httpx.get(f"http://127.0.0.1:{port}/spots", timeout=30)
        assert answer.status_code == 200 and answer.json()["sizes"][0]["size"] == "small"
    finally:
        server.terminate()
        server.wait(timeout=30)
