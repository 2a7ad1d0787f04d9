"""The audit chain's head on every report: the shift report (on screen, in
its CSV, on the printed slip) and the day report (command line, CSV) show
the head's row and the first 16 hex of its MAC, and the chain's row count,
so a later rewrite differs from the paper; `lotkeeper audit verify` names
every problem and checks a head taken from paper."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.clock import FixedClock
from core.services.audit import audit_entries
from core.services.overrides import open_gate
from core.services.shifts import Report, close_shift, day_report, open_shift
from core.services.staff import add_staff
from core.site import Site
from core.storage.models import AuditHead, AuditRow

HEAD = "Audit head (row:MAC)"


def chain_head(site: Site) -> tuple[int, str, int]:
    """(head seq, head MAC, rows) as the database holds them."""

    def work(s: Session) -> tuple[int, str, int]:
        head = s.get_one(AuditHead, site.id)
        rows = s.scalar(select(func.count()).select_from(AuditRow))
        return head.seq, head.hash, int(rows or 0)

    return site.db.read(work)


def printed_head(report: Report) -> str:
    return dict(report.lines())[HEAD]


@pytest.fixture
def cli(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`lotkeeper ...` on the test's site: (exit code, output)."""
    from core.cli import main

    monkeypatch.setenv("LOTKEEPER_DATABASE__URL", site.db.url)
    monkeypatch.setenv("LOTKEEPER_PATHS__DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("LOTKEEPER_TICKETS__SECRET", SECRET)

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(list(argv), out=out), out.getvalue()

    yield run


def test_a_shift_report_shows_the_chain_head_and_row_count(site: Site, clock: FixedClock) -> None:
    ana = add_staff(site, "Ana", "attendant", "1357")
    open_shift(site, ana, 5_000)
    open_gate(site, ana, "exit-1", "van stuck at the barrier")
    clock.advance(minutes=30)
    report = close_shift(site, ana, 5_000)
    seq, mac, rows = chain_head(site)
    assert seq == rows == 4  # staff added, shift opened, gate, shift closed
    assert audit_entries(site)[0].action == "shift_closed"  # the head includes the close
    lines = dict(report.lines())
    assert lines["Audit rows"] == "4"
    assert lines[HEAD] == f"4:{mac[:16]}" and len(mac[:16]) == 16
    assert f"{HEAD},4:{mac[:16]}" in report.csv().splitlines()
    assert "Audit rows,4" in report.csv().splitlines()


def test_the_day_report_shows_the_head_on_the_command_line_and_in_csv(
    site: Site, clock: FixedClock, cli: Any
) -> None:
    add_staff(site, "Ana", "attendant", "1357")
    report = day_report(site, clock.now().date())
    seq, mac, rows = chain_head(site)
    assert (seq, rows) == (1, 1) and printed_head(report) == f"1:{mac[:16]}"
    day = clock.now().date().isoformat()
    code, out = cli("report", "--day", day)
    assert code == 0
    assert any(line.split() == ["Audit", "rows", "1"] for line in out.splitlines())
    assert any(
        line.startswith(HEAD) and line.endswith(f"1:{mac[:16]}") for line in out.splitlines()
    )
    code, out = cli("report", "--day", day, "--csv")
    assert code == 0 and f"{HEAD},1:{mac[:16]}" in out.splitlines()


def test_an_empty_chain_reports_row_zero(site: Site, clock: FixedClock) -> None:
    lines = dict(day_report(site, clock.now().date()).lines())
    assert (lines["Audit rows"], lines[HEAD]) == ("0", "0:" + "0" * 16)


def test_a_chain_cut_back_differs_from_the_head_on_paper(
    site: Site, clock: FixedClock, cli: Any
) -> None:
    """Removing the newest rows and moving the head back leaves a chain that
    verifies on its own; the head printed earlier shows the cut."""
    ana = add_staff(site, "Ana", "attendant", "1357")
    open_shift(site, ana, 0)
    open_gate(site, ana, "exit-1", "van stuck at the barrier")
    paper = printed_head(close_shift(site, ana, 0))
    assert cli("audit", "verify", "--expect", paper) == (
        0,
        f"audit trail intact: 4 rows, chain intact\nrow 4 matches the paper ({paper[2:]})\n",
    )

    def cut(s: Session) -> None:
        s.execute(delete(AuditRow).where(AuditRow.seq >= 3))
        kept = s.get_one(AuditRow, (site.id, 2))
        s.execute(update(AuditHead).values(seq=2, hash=kept.hash))

    site.db.write(cut)
    code, out = cli("audit", "verify", "--expect", paper)
    assert code == 1
    assert out.splitlines() == [
        "audit trail intact: 2 rows, chain intact",
        f"row 4 DIFFERS from the paper: {paper[2:]} printed, no such row now",
    ]
    assert printed_head(day_report(site, clock.now().date())) != paper


def test_audit_verify_prints_every_problem_and_fails(site: Site, cli: Any) -> None:
    for name in ("Ana", "Ben", "Cy", "Di"):
        add_staff(site, name, "attendant", "1357")
    site.db.write(
        lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 1).values(reason="edited"))
    )
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 3)))
    code, out = cli("audit", "verify")
    assert code == 1
    assert out.splitlines() == [
        "audit trail BROKEN: 2 problem(s) in 3 rows",
        "  row 1 was changed after it was written",
        "  row 3 is missing",
    ]


def test_audit_verify_with_another_secret_says_so(
    site: Site, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("Ana", "Ben"):
        add_staff(site, name, "attendant", "1357")
    monkeypatch.setenv("LOTKEEPER_TICKETS__SECRET", "another-secret-" + "y" * 40)
    code, out = cli("audit", "verify")
    assert code == 1
    assert out.splitlines() == [
        "audit trail BROKEN: 1 problem(s) in 2 rows",
        "  rows 1 to 2 were changed after they were written",
        "No row matches the site key: if they were not all edited, check that "
        "this is the site's secret (tickets.secret, or the ticket secret file).",
    ]


def test_audit_verify_refuses_a_head_it_cannot_read(
    site: Site, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for typed in ("four:abcdef12", "4:abc", "4:abcdefgh", "\u0664:abcdef12"):
        assert cli("audit", "verify", "--expect", typed) == (1, "")
        assert "--expect takes ROW:MAC as printed on a report" in capsys.readouterr().err


# A UI journey: the service tests above cover MariaDB.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_shows_saves_and_prints_the_chain_head(site: Site) -> None:
    """The shift report as the attendant sees it, saves it and prints it."""
    from textual.widgets import Input, Static

    from attendant.app import AttendantApp, FormScreen
    from attendant.booth import ReportScreen

    add_staff(site, "Ana", "attendant", "1357")
    app = AttendantApp(site)
    shown: list[str] = []

    async def main() -> None:
        async with app.run_test(size=(160, 50)) as pilot:

            async def settle() -> None:
                for _ in range(3):
                    await app.workers.wait_for_complete()
                    await pilot.pause()

            async def answer(*values: str) -> None:
                for value in values:
                    field = app.focused
                    assert isinstance(field, Input), field
                    field.insert_text_at_cursor(value)
                    await pilot.press("enter")
                    await settle()

            await settle()
            await answer("Ana", "1357")  # the login form
            await pilot.press("s")
            await settle()
            assert isinstance(app.screen, FormScreen)
            await answer("0")
            await pilot.press("enter")  # the "shift open" message
            await pilot.press("s")
            await settle()
            await answer("0")
            assert isinstance(app.screen, ReportScreen)
            shown.append(app.screen.text)
            await pilot.press("p")
            await settle()
            assert "Report saved as" in str(app.screen.query_one("#printed", Static).render())

    asyncio.run(main())
    seq, mac, rows = chain_head(site)
    head = f"{seq}:{mac[:16]}"
    assert any(line.startswith(HEAD) and line.endswith(head) for line in shown[0].splitlines())
    assert any(line.split() == ["Audit", "rows", str(rows)] for line in shown[0].splitlines())
    (saved,) = (site.settings.paths.data_dir / "reports").glob("*.csv")
    assert f"{HEAD},{head}" in saved.read_text().splitlines()
    (printed,) = (site.settings.paths.data_dir / "printed").glob("report-*.txt")
    lines = printed.read_text().splitlines()
    assert any(line.startswith(HEAD) and line.rstrip().endswith(head) for line in lines)
