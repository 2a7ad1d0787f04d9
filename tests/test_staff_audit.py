"""Staff with PINs, and the hash-chained audit trail: editing, deleting or
cutting off a row is detected and the first broken link named."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from core.errors import InvalidInput, NotFound, SignInFailed, SignInThrottled
from core.services.audit import Actor, audit_entries, record_audit, verify_audit
from core.services.staff import add_staff, disable_staff, list_staff, staff_sign_in
from core.site import Site
from core.storage.models import AuditRow


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
        site.db.write(
            lambda s, n=n: record_audit(
                s, site, actor, "gate_opened", target="lane-1", reason=f"stuck barrier {n}"
            )
        )


def test_an_untouched_chain_verifies(site: Site) -> None:
    chain(site, 5)
    check = verify_audit(site)
    assert check.ok and check.rows == 5


def test_an_edited_row_is_the_first_broken_link(site: Site) -> None:
    chain(site, 5)
    site.db.write(
        lambda s: s.execute(
            update(AuditRow).where(AuditRow.seq == 3).values(reason="nothing to see here")
        )
    )
    check = verify_audit(site)
    assert not check.ok and check.broken_at == 3 and "changed" in check.problem


def test_a_deleted_row_is_found(site: Site) -> None:
    chain(site, 5)
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 2)))
    check = verify_audit(site)
    assert check.broken_at == 2 and "missing" in check.problem


def test_a_deleted_newest_row_is_found(site: Site) -> None:
    chain(site, 5)
    site.db.write(lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 5)))
    check = verify_audit(site)
    assert check.broken_at == 5 and "5 rows were written" in check.problem


def test_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link(site: Site) -> None:
    """A forger who recomputes the edited row's own hash still breaks the
    link from the row after it."""
    from core.services.audit import _digest

    chain(site, 4)

    def forge(s: object) -> None:
        row = s.get(AuditRow, (site.id, 2))  # type: ignore[attr-defined]
        row.reason = "forged"
        row.hash = _digest(
            row.prev_hash, row.seq, row.at, row.staff_id, row.staff_name,
            row.action, row.target, row.reason, row.data,
        )  # fmt: skip

    site.db.write(forge)
    check = verify_audit(site)
    assert check.broken_at == 3 and "does not follow" in check.problem
