"""Staff with PINs, and the audit trail chained under the site's key: editing,
deleting, inserting or cutting off rows is detected and every broken row
named, also when the forger recomputed plain SHA-256 hashes (what database
access without the site secret allows); rows written before the chain was
keyed are sealed once and pinned by that seal."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from _audit_race import write_unkeyed
from conftest import settings_for
from pydantic import SecretStr
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from core.clock import FixedClock
from core.errors import InvalidInput, NotFound, SignInFailed, SignInThrottled
from core.services.audit import (
    SEAL_ACTION,
    Actor,
    AuditCheck,
    _row_content,
    audit_entries,
    audit_key,
    record_audit,
    verify_audit,
)
from core.services.staff import add_staff, disable_staff, list_staff, staff_sign_in
from core.site import Site, open_site
from core.storage.models import AuditHead, AuditRow
from core.ticket_codes import derive_key


def test_staff_sign_in_with_name_and_pin_and_the_addition_is_audited(site: Site) -> None:
    sam = add_staff(site, "Sam  Reyes", "supervisor", "2468")
    assert sam.name == "Sam Reyes" and sam.supervisor
    assert staff_sign_in(site, "Sam Reyes", "2468").id == sam.id
    with pytest.raises(SignInFailed, match="name and PIN"):
        staff_sign_in(site, "Sam Reyes", "1357")
    with pytest.raises(SignInFailed, match="name and PIN"):
        staff_sign_in(site, "Nobody", "2468")
    signed_in, entry = audit_entries(site)  # newest first; failures are not audited
    assert (entry.staff_name, entry.action, entry.target) == ("cli", "staff_added", "Sam Reyes")
    assert entry.data == {"role": "supervisor"}
    assert (signed_in.staff_name, signed_in.action) == ("Sam Reyes", "signed_in")


def test_bad_staff_details_are_refused_with_a_clear_message(site: Site) -> None:
    with pytest.raises(InvalidInput, match="4 to 12 digits"):
        add_staff(site, "Sam", "attendant", "12ab")
    with pytest.raises(InvalidInput, match="attendant, supervisor"):
        add_staff(site, "Sam", "manager", "2468")
    add_staff(site, "Sam", "attendant", "2468")
    with pytest.raises(InvalidInput, match="already a staff member called Sam"):
        add_staff(site, "Sam", "attendant", "1111")
    assert [s.name for s in list_staff(site)] == ["Sam"]


def test_a_disabled_staff_member_can_no_longer_sign_in(site: Site) -> None:
    add_staff(site, "Sam", "attendant", "2468")
    disable_staff(site, "Sam", reason="left the company")
    with pytest.raises(SignInFailed):
        staff_sign_in(site, "Sam", "2468")
    with pytest.raises(NotFound):
        disable_staff(site, "Nobody")
    assert [e.action for e in audit_entries(site)] == ["staff_disabled", "staff_added"]


def test_repeated_wrong_pins_are_slowed_down(site: Site) -> None:
    add_staff(site, "Sam", "attendant", "2468")
    for _ in range(5):
        with pytest.raises(SignInFailed):
            staff_sign_in(site, "Sam", "0000")
    with pytest.raises(SignInThrottled):
        staff_sign_in(site, "Sam", "2468")


def chain(site: Site, rows: int) -> None:
    actor = Actor("Sam", 1, "attendant")
    for n in range(rows):

        def work(s: Session, n: int = n) -> int:
            return record_audit(
                s, site, actor, "gate_opened", target="lane-1", reason=f"stuck barrier {n}"
            )

        site.db.write(work)


def found(check: AuditCheck) -> list[tuple[int, int, str]]:
    """(first row, last row, kind) of every problem."""
    return [(p.seq, p.last, p.kind) for p in check.problems]


def sha256_of(row: AuditRow) -> str:
    """The plain hash a forger without the site secret can compute."""
    return hashlib.sha256(_row_content(row)).hexdigest()


def rewrite(site: Site, seq: int, **values: Any) -> None:
    """Edit row `seq` and give it a freshly computed SHA-256 hash."""

    def work(s: Session) -> None:
        row = s.get_one(AuditRow, (site.id, seq))
        for name, value in values.items():
            setattr(row, name, value)
        row.hash = sha256_of(row)

    site.db.write(work)


def test_an_untouched_chain_verifies_and_its_rows_carry_keyed_macs(site: Site) -> None:
    chain(site, 5)
    check = verify_audit(site)
    assert check.ok and check.rows == 5 and check.problems == ()
    assert check.broken_at is None and check.problem == "5 rows, chain intact"
    rows = site.db.read(lambda s: list(s.scalars(select(AuditRow))))
    assert all(row.hash != sha256_of(row) for row in rows)  # not the unkeyed hash
    assert check.head_seq == 5


def test_an_edited_row_is_named(site: Site) -> None:
    chain(site, 5)
    site.db.write(
        lambda s: s.execute(
            update(AuditRow).where(AuditRow.seq == 3).values(reason="nothing to see here")
        )
    )
    check = verify_audit(site)
    assert not check.ok and check.broken_at == 3 and "changed" in check.problem
    assert found(check) == [(3, 3, "changed")]


def test_a_deleted_row_is_found(site: Site) -> None:
    chain(site, 5)
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 2)))
    check = verify_audit(site)
    assert check.broken_at == 2 and "missing" in check.problem
    assert found(check) == [(2, 2, "missing")]


def test_a_deleted_newest_row_is_found(site: Site) -> None:
    chain(site, 5)
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 5)))
    check = verify_audit(site)
    assert check.broken_at == 5 and "5 rows were written" in check.problem
    assert found(check) == [(5, 5, "missing")]


def test_a_row_rewritten_with_a_recomputed_sha256_is_detected(site: Site) -> None:
    """A forger with database access but no secret recomputes the edited
    row's hash: it is not the row's MAC, and only that row is blamed (the
    row after it is genuine)."""
    chain(site, 4)
    rewrite(site, 2, reason="forged")
    check = verify_audit(site)
    assert check.broken_at == 2 and "without the site key" in check.problem
    assert found(check) == [(2, 2, "unkeyed")]


def test_a_chain_rewritten_to_its_head_with_sha256_is_detected(site: Site) -> None:
    """The forger rewrites row 2 and re-links every row after it, moving the
    head too: a consistent unkeyed chain, and every rewritten row named."""
    chain(site, 4)

    def forge(s: Session) -> None:
        prev = s.get_one(AuditRow, (site.id, 1)).hash
        for seq in (2, 3, 4):
            row = s.get_one(AuditRow, (site.id, seq))
            row.prev_hash = prev
            if seq == 2:
                row.reason = "forged"
            row.hash = prev = sha256_of(row)
        s.execute(update(AuditHead).values(hash=prev))

    site.db.write(forge)
    assert found(verify_audit(site)) == [(2, 4, "unkeyed")]


def test_every_broken_row_is_named_not_only_the_first(site: Site) -> None:
    chain(site, 10)
    rewrite(site, 2, reason="forged")
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq.in_([5, 6]))))
    site.db.write(
        lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 8).values(target="lane-9"))
    )

    def insert_out_of_turn(s: Session) -> None:
        # A row appended by hand, the head left where it was.
        row = s.get_one(AuditRow, (site.id, 10))
        s.execute(
            insert(AuditRow).values(
                site_id=site.id, seq=11, at=row.at, staff_id=1, staff_name="Sam",
                action="gate_opened", target="lane-1", reason="", data="{}",
                prev_hash=row.hash, hash="0" * 64,
            )
        )  # fmt: skip

    site.db.write(insert_out_of_turn)
    check = verify_audit(site)
    assert found(check) == [
        (2, 2, "unkeyed"),
        (5, 6, "missing"),
        (8, 8, "changed"),
        (11, 11, "changed"),
        (11, 11, "inserted"),
    ]
    assert check.broken_at == 2 and check.rows == 9


def test_a_removed_tail_and_an_edit_are_both_named(site: Site) -> None:
    chain(site, 6)
    site.db.write(
        lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 1).values(staff_name="Ana"))
    )
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq >= 5)))
    check = verify_audit(site)
    assert found(check) == [(1, 1, "changed"), (5, 6, "missing")]
    assert "6 rows were written" in check.problems[-1].description


def test_a_site_with_another_secret_fails_verification(
    site: Site, db_url: str, tmp_path: Path, clock: FixedClock
) -> None:
    chain(site, 3)
    settings = settings_for(db_url, tmp_path)
    tickets = settings.tickets.model_copy(
        update={"secret": SecretStr("another-secret-" + "y" * 40)}
    )
    other = open_site(settings.model_copy(update={"tickets": tickets}), clock=clock)
    try:
        check = verify_audit(other)
        assert found(check) == [(1, 3, "changed")]
        assert check.problem == "rows 1 to 3 were changed after they were written"
    finally:
        other.close()
    assert verify_audit(site).ok


def test_the_audit_key_is_neither_a_ticket_key_nor_another_sites() -> None:
    secret = b"s" * 48
    assert audit_key(secret, "demo") != audit_key(secret, "north")
    assert audit_key(secret, "demo") != audit_key(b"t" * 48, "demo")
    assert audit_key(secret, "demo") != derive_key(secret, "demo", "K1", "")


# -- rows written before the chain was keyed ----------------------------------


def test_unkeyed_rows_are_sealed_by_the_next_audited_write(site: Site) -> None:
    write_unkeyed(site, 3)
    check = verify_audit(site)
    assert found(check) == [(1, 3, "unsealed")]
    chain(site, 2)
    check = verify_audit(site)
    assert check.ok and check.rows == 6
    seal = audit_entries(site)[2]
    assert (seal.seq, seal.action, seal.data) == (4, SEAL_ACTION, {"legacy_rows": 3})
    assert [e.action for e in audit_entries(site)].count(SEAL_ACTION) == 1


def test_an_unkeyed_row_edited_after_its_seal_is_named(site: Site) -> None:
    write_unkeyed(site, 3)
    chain(site, 1)
    site.db.write(
        lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 2).values(reason="forged"))
    )
    assert found(verify_audit(site)) == [(2, 2, "changed")]


def test_unkeyed_rows_rehashed_after_their_seal_are_caught_by_the_seal(site: Site) -> None:
    """Anyone can recompute unkeyed hashes; the seal's MAC pins the last one."""
    write_unkeyed(site, 3)
    chain(site, 1)

    def forge(s: Session) -> None:
        prev = s.get_one(AuditRow, (site.id, 1)).hash
        for seq in (2, 3):
            row = s.get_one(AuditRow, (site.id, seq))
            row.prev_hash = prev
            if seq == 2:
                row.reason = "forged"
            row.hash = prev = sha256_of(row)

    site.db.write(forge)
    check = verify_audit(site)
    assert found(check) == [(1, 3, "resealed")]
    assert "sealed by row 4" in check.problem


def test_a_removed_seal_leaves_the_unkeyed_rows_reported(site: Site) -> None:
    """Deleting the seal and every keyed row and moving the head back does
    not pass for a chain that was never keyed."""
    write_unkeyed(site, 3)
    chain(site, 2)

    def cut(s: Session) -> None:
        s.execute(delete(AuditRow).where(AuditRow.seq > 3))
        last = s.get_one(AuditRow, (site.id, 3))
        s.execute(update(AuditHead).values(seq=3, hash=last.hash))

    site.db.write(cut)
    assert found(verify_audit(site)) == [(1, 3, "unsealed")]


def test_keyed_rows_after_unkeyed_rows_without_a_seal_are_reported(site: Site) -> None:
    """An unkeyed prefix counts only under its seal: a forger who drops the
    seal row cannot make the rows before it pass."""
    write_unkeyed(site, 2)
    chain(site, 2)  # row 3 the seal, row 4 keyed
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 3)))
    assert found(verify_audit(site)) == [(1, 2, "unsealed"), (3, 3, "missing")]


def test_a_row_stamped_in_local_time_verifies(site: Site) -> None:
    """The MAC covers the time as the database gives it back (UTC)."""
    from zoneinfo import ZoneInfo

    local = site.clock.now().astimezone(ZoneInfo("Europe/Berlin"))
    site.db.write(lambda s: record_audit(s, site, Actor("Sam"), "gate_opened", at=local))
    assert verify_audit(site).ok
