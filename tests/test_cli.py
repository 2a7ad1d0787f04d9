"""The `lotkeeper` command, as an operator uses it, on the embedded default."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import services as lk
from core.cli import main
from core.config import load_settings
from core.domain import PaymentPurpose
from core.services import payments
from core.site import open_site
from core.storage import migrate
from core.storage.models import Payment as PaymentRow


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOTKEEPER_PATHS__DATA_DIR", str(tmp_path))
    return tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_status_shows_the_demo_lot_on_first_start(data_dir: Path) -> None:
    code, out = run("status")
    assert code == 0
    assert "Lotkeeper demo garage" in out and out.endswith("\n")
    # Spots of each size, said so (the kiosk counts the spots a car fits).
    lines = {line.split(":")[0]: " ".join(line.split()[2:6]) for line in out.splitlines()[1:5]}
    assert lines["small spots"] == "75 free of 75"
    assert lines["medium spots"] == "315 free of 315"
    assert lines["large spots"] == "60 free of 60"
    assert lines["all spots"] == "450 free of 450"
    assert "counts the spots of that size" in out


def test_status_json(data_dir: Path) -> None:
    code, out = run("status", "--json")
    assert out.endswith("\n")
    data = json.loads(out)
    assert code == 0 and data["site"] == "demo"
    assert {s["size"]: s["total"] for s in data["sizes"]} == {
        "small": 75,
        "medium": 315,
        "large": 60,
    }


def test_enter_exit_and_the_event_log(data_dir: Path) -> None:
    code, out = run("enter", "--size", "large", "--plate", "ab 12", "--json")
    ticket = json.loads(out)
    assert code == 0 and ticket["spot_size"] == "large" and ticket["plate"] == "AB 12"
    code, out = run("exit", ticket["short_code"])
    assert code == 0 and "Goodbye" in out
    code, out = run("events", "--json", "--limit", "3")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds == ["lot_loaded", "entry", "exit"]
    code, out = run("events", "--limit", "1")
    assert "Exit: ticket" in out


def test_reused_ticket_fails_with_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = run("enter", "--json")
    code_text = json.loads(out)["code"]
    run("exit", code_text)
    assert run("exit", code_text)[0] == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lotkeeper: This ticket was already used")
    assert len(err.splitlines()) == 1


def test_lot_load_and_keys(data_dir: Path, tmp_path: Path) -> None:
    from core.config import asset_path

    assert run("lot", "load", str(asset_path("lot.toml")))[1].startswith("Layout already loaded")
    bigger = tmp_path / "bigger.toml"
    bigger.write_text(
        asset_path("lot.toml").read_text() + '\n[[levels]]\nname = "Roof"\n'
        '[[levels.rows]]\nprefix = "R"\ncount = 20\nsize = "large"\n'
    )
    code, out = run("lot", "load", str(bigger))
    assert code == 0 and "20 added" in out
    assert "470" in run("status")[1]
    code, out = run("keys", "rotate")
    assert code == 0 and "K2" in out
    code, out = run("keys", "list")
    assert out.split()[:2] == ["K1", "verifies"]


def test_db_upgrade_reports_the_revision(data_dir: Path) -> None:
    head = migrate.head_revision()
    code, out = run("db", "upgrade")
    assert code == 0 and head in out
    assert f"already at revision {head}" in run("db", "upgrade")[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--config", "/nonexistent.toml", "status"],
            "config file /nonexistent.toml does not exist",
        ),
        (["lot", "load", "/nonexistent.toml"], "layout file /nonexistent.toml does not exist"),
        (["exit", "not-a-code"], "could not be read as a Lotkeeper ticket"),
        (["enter", "--size", "bus"], "Unknown car size 'bus'"),
        (["keys", "retire", "K1"], "rotate to a new key before retiring it"),
    ],
)
def test_errors_exit_non_zero_with_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(*argv)[0] == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_is_installed(data_dir: Path) -> None:
    beside_python = Path(sys.executable).parent / "lotkeeper"
    exe = str(beside_python) if beside_python.exists() else shutil.which("lotkeeper")
    assert exe is not None, "pip install -e . installs the `lotkeeper` script"
    result = subprocess.run([exe, "status", "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sizes"][1]["total"] == 315


def test_events_follow_prints_what_another_process_does(data_dir: Path) -> None:
    import selectors
    import time

    run("status")  # first start: create and seed the lot
    beside_python = Path(sys.executable).parent / "lotkeeper"
    follower = subprocess.Popen(
        [str(beside_python), "events", "--follow", "--json", "--limit", "1", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(follower.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 30

    def next_event() -> dict[str, object]:
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                return dict(json.loads(follower.stdout.readline()))  # type: ignore[union-attr]
        raise AssertionError("the follower printed nothing")

    try:
        # The newest event first: the follower is running and has its cursor.
        assert next_event()["kind"] == "lot_loaded"
        assert run("enter", "--size", "small", "--plate", "FOLLOW1")[0] == 0
        event = next_event()
        assert event["kind"] == "entry"
        assert event["data"] == {"plate": "FOLLOW1", "size": "small", "spot_size": "small"}
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_payments_reconcile_settles_what_a_crashed_kiosk_left_pending(data_dir: Path) -> None:
    site = open_site(load_settings())
    try:
        ticket = lk.enter(site, "small")
        started = lk.start_payment(site, PaymentPurpose.STAY, 300, stay_id=ticket.id)
        row = site.db.read(lambda s: s.get(PaymentRow, started.id))
        assert row is not None and row.provider_ref is not None
        site.payments.poll(payments._request(site, row), row.provider_ref)  # reader approved
    finally:
        site.close()
    code, out = run("payments", "reconcile")
    assert code == 0 and "Checked 0 pending" in out  # too recent to touch
    code, out = run("payments", "reconcile", "--older-than", "0")
    assert code == 0
    assert f"payment {started.id}: charge of $3.00 -> succeeded" in out
    assert "Checked 1 pending payment(s): 1 settled" in out


def test_staff_add_list_disable_and_audit_verify(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("2468\n2468\n"))
    assert run("staff", "add", "--name", "Sam", "--role", "supervisor") == (
        0,
        "Sam can now sign in to the console as supervisor.\n",
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO("1111\n2222\n"))
    assert run("staff", "add", "--name", "Ana", "--role", "attendant")[0] == 1
    code, out = run("staff", "list")
    assert code == 0 and out.split() == ["Sam", "supervisor"]
    assert run("staff", "disable", "Sam", "--reason", "left")[0] == 0
    assert "disabled" in run("staff", "list")[1]
    assert run("audit", "verify") == (0, "audit trail intact: 2 rows, chain intact\n")

    site = open_site(load_settings())
    try:
        from sqlalchemy import update

        from core.storage.models import AuditRow

        site.db.write(lambda s: s.execute(update(AuditRow).values(reason="edited")))  # every row
    finally:
        site.close()
    code, out = run("audit", "verify")
    assert code == 1 and out.splitlines()[:2] == [
        "audit trail BROKEN: 1 problem(s) in 2 rows",
        "  rows 1 to 2 were changed after they were written",
    ]


def test_worker_once_runs_every_job_and_status_shows_them(data_dir: Path) -> None:
    import logging

    assert run("worker", "--status") == (
        0,
        "No runs yet: start `lotkeeper worker` (or `--once`).\n",
    )
    code, _ = run("worker", "--once", "--worker-id", "booth-pc:1")
    assert code == 0
    code, out = run("worker", "--status")
    jobs = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and set(jobs) == {
        "expire_holds",
        "release_no_shows",
        "overstays",
        "plan_notices",
        "deliver_notices",
        "reconcile",
    }
    assert all(": ok" in line and "taken by" not in line for line in jobs.values())
    logging.getLogger().handlers.clear()  # basicConfig's handler holds a closed stream


def test_a_supervisor_closes_a_disabled_attendants_open_shift_from_the_command_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.services.shifts import open_shift
    from core.services.staff import add_staff

    site = open_site(load_settings())
    try:
        bob = add_staff(site, "Bob", "attendant", "1357")
        add_staff(site, "Sue", "supervisor", "2468")
        open_shift(site, bob, 10_000)
    finally:
        site.close()
    code, out = run("shift", "list", "--open")
    assert code == 0 and "Bob" in out and "OPEN" in out and out.split()[0] == "1"
    code, out = run("staff", "disable", "Bob", "--reason", "left")
    assert code == 0 and "Shift 1 of Bob" in out and "lotkeeper shift close 1" in out

    monkeypatch.setattr(sys, "stdin", io.StringIO("1357\n"))
    assert run("shift", "close", "1", "--counted", "100", "--supervisor", "Bob")[0] == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("2468\n"))
    code, out = run("shift", "close", "1", "--counted", "99.50", "--supervisor", "Sue")
    assert code == 0, out
    assert "Shift 1 (Bob)" in out and "-$0.50" in out and "Audit head" in out
    opened = next(line for line in out.splitlines() if line.startswith("From"))
    assert " on " in opened and "+00:00" not in opened  # site time, not ISO
    monkeypatch.setattr(sys, "stdin", io.StringIO("2468\n"))
    assert run("shift", "close", "1", "--counted", "100", "--supervisor", "Sue")[0] == 1
    assert run("shift", "list", "--open") == (0, "No open shifts.\n")
    assert "closed" in run("shift", "list")[1]
    assert run("audit", "verify")[0] == 0


def test_device_list_and_decommission_of_a_removed_kiosk(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from core.clock import FixedClock
    from core.services.devices import Component
    from core.services.staff import add_staff

    assert run("device", "list") == (0, "No device has reported yet.\n")
    site = open_site(load_settings(), clock=FixedClock(datetime.now(UTC) - timedelta(hours=1)))
    try:
        add_staff(site, "Ana", "attendant", "1357")
        lk.report_heartbeat(site, "old-lane", "entry", {"printer": Component("ok")})
    finally:
        site.close()
    code, out = run("device", "list")
    assert code == 0 and "old-lane" in out and "SILENT" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("1357\n"))
    code, out = run(
        "device", "decommission", "old-lane", "--staff", "Ana", "--reason", "kiosk removed"
    )
    assert code == 0 and out.startswith("old-lane decommissioned")
    assert run("device", "list") == (0, "No device has reported yet.\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1357\n"))
    assert run("device", "decommission", "old-lane", "--staff", "Ana", "--reason", "again")[0] == 1
