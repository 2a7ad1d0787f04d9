"""docs/api.md's "Try it" walkthrough, run request by request against the
app: what a new user copies must work (relative dates, not a fixed day)."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.clock import FixedClock
from core.site import Site

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def walkthrough() -> list[str]:
    """The shell lines of the "Try it" block, continuation lines joined."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"## Try it.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "docs/api.md has no Try it block"
    return block.group(1).replace("\\\n", " ").splitlines()


def curl(line: str) -> tuple[str, str, dict[str, str], str | None]:
    """(method, path with query, headers, body) of one `curl` line."""
    words = shlex.split(line)
    method, url, headers, body = "GET", "", {}, None
    index = 1
    while index < len(words):
        word = words[index]
        if word == "-X":
            method, index = words[index + 1], index + 1
        elif word == "-H":
            name, _, value = words[index + 1].partition(":")
            headers[name.strip()] = value.strip()
            index += 1
        elif word == "-d":
            body, index = words[index + 1], index + 1
        elif not word.startswith("-"):
            url = word
        index += 1
    return method, url.removeprefix("localhost:8080"), headers, body


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_api_walkthrough_runs_as_written(site: Site, clock: FixedClock) -> None:
    # Run it well after the doc was written: a date written into it has passed.
    clock.advance(days=400)
    tomorrow = (clock.now() + timedelta(days=1)).date()
    names = {
        "START": datetime.combine(tomorrow, time(9)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "END": datetime.combine(tomorrow, time(11)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    statuses = []
    with TestClient(create_app(site, tail_seconds=0.05)) as http:
        for line in walkthrough():
            assignment = re.match(r"(\w+)=\$\((.*)\)$", line.strip())
            if assignment and assignment.group(1) in names:
                assert "date" in assignment.group(2)  # worked out when run, not written in
                continue
            command = line.strip()
            if assignment:  # TOKEN=$(curl ... | python3 ...): the curl inside
                command = assignment.group(2).split("|")[0]
            if not command.startswith("curl"):
                continue
            for name, value in names.items():
                command = command.replace(f"${name}", value)
            method, path, headers, body = curl(command)
            answer = http.request(method, path, headers=headers, content=body)
            statuses.append((method, path.split("?")[0], answer.status_code))
            if assignment and assignment.group(1) == "TOKEN":
                names["TOKEN"] = answer.json()["token"]
    assert statuses == [
        ("POST", "/user", 201),
        ("POST", "/session", 201),
        ("GET", "/spots", 200),
        ("POST", "/reserve_spot", 201),
        ("POST", "/reservations/1/pay", 200),
        ("GET", "/1/get_spots", 200),
        ("POST", "/1/tickets", 422),  # the doc's code is a placeholder: refused, not a 500
    ]
