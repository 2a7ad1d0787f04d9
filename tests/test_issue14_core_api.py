"""The API side of issue 14: asking for an accessible or EV spot, idempotent
replays that compare the parsed request, and the 422 for a past start."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import SiteFactory
from fastapi.testclient import TestClient
from test_api import sign_up, window
from test_issue14_core_need import flagged_layout

from api.app import create_app
from core.clock import FixedClock
from core.site import Site


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site, tail_seconds=0.05)) as http:
        yield http


@pytest.fixture
def flagged(make_site: SiteFactory) -> Iterator[tuple[Site, TestClient]]:
    site = make_site(flagged_layout())
    with TestClient(create_app(site, tail_seconds=0.05)) as http:
        yield site, http


def test_a_reservation_asks_for_an_accessible_spot(
    flagged: tuple[Site, TestClient], clock: FixedClock
) -> None:
    _, http = flagged
    _, auth = sign_up(http)
    body = {"car_size": "medium", **window(clock)}
    asked = http.post("/reserve_spot", json={**body, "need": "accessible"}, headers=auth)
    assert asked.status_code == 201, asked.text
    assert (asked.json()["spot"], asked.json()["need"]) == ("1A", "accessible")
    plain = http.post("/reserve_spot", json=body, headers=auth)
    assert plain.json()["spot"] in ("1M1", "1M2") and plain.json()["need"] is None
    none_left = http.post("/reserve_spot", json={**body, "need": "accessible"}, headers=auth)
    assert none_left.status_code == 409 and none_left.json()["code"] == "no_spot"
    assert "accessible" in none_left.json()["message"]
    bad = http.post("/reserve_spot", json={**body, "need": "valet"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "need"


def test_spots_counts_and_filters_flagged_spots(flagged: tuple[Site, TestClient]) -> None:
    _, http = flagged
    lot = http.get("/spots", params={"car_size": "medium"}).json()
    medium = next(s for s in lot["sizes"] if s["size"] == "medium")
    assert (medium["free_fitting_accessible"], medium["free_fitting_ev"]) == (1, 1)
    ev = http.get("/spots", params={"need": "ev"}).json()["free_spots"]
    assert [(s["label"], s["ev"]) for s in ev] == [("1E", True)]


def test_a_replay_with_other_whitespace_or_key_order_is_the_same_request(
    client: TestClient, clock: FixedClock
) -> None:
    _, auth = sign_up(client)
    keyed = {**auth, "Idempotency-Key": "spaced-1", "Content-Type": "application/json"}
    body = {"car_size": "small", **window(clock)}
    first = client.post("/reserve_spot", content=json.dumps(body), headers=keyed)
    spaced = json.dumps(dict(reversed(body.items())), indent=4)
    replay = client.post("/reserve_spot", content=spaced.encode(), headers=keyed)
    assert first.status_code == replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = client.post("/reserve_spot", json={**body, "car_size": "large"}, headers=keyed)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
