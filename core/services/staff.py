"""Staff: attendants and supervisors, who sign in to the console with a PIN.

PINs are hashed with Argon2id like driver passwords, and failures are
throttled the same way (per staff name). Adding and disabling staff is
audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound, SignInFailed, SignInThrottled
from core.services.accounts import HASHER, _blocked_for, _clear_failures, _record_failure, _verify
from core.services.audit import CLI, Actor, record_audit
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import StaffMember

Role = Literal["attendant", "supervisor"]
ROLES: tuple[Role, ...] = ("attendant", "supervisor")
PIN_LENGTH = (4, 12)
# Checked when the name is unknown, so that path costs the same.
_DUMMY_HASH = HASHER.hash("lotkeeper: no such staff member")


@dataclass(frozen=True)
class Staff:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def actor(self) -> Actor:
        """As the audit trail names them."""
        return Actor(self.name, self.id, self.role)


def _staff(row: StaffMember) -> Staff:
    return Staff(row.id, row.name, row.role, row.created_at, row.disabled_at)  # type: ignore[arg-type]


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= 64:
        raise InvalidInput("A staff name has 1 to 64 characters.")
    return cleaned


def check_pin(pin: str) -> None:
    """A PIN is 4 to 12 digits."""
    low, high = PIN_LENGTH
    if not (pin.isascii() and pin.isdigit() and low <= len(pin) <= high):
        raise InvalidInput("A PIN is {low} to {high} digits.", low=low, high=high)


def add_staff(site: Site, name: str, role: str, pin: str, by: Actor = CLI) -> Staff:
    """A new attendant or supervisor. Raises `InvalidInput` for a bad name,
    role or PIN, or a name already in use."""
    name = _clean_name(name)
    if role not in ROLES:
        raise InvalidInput("A role is one of: {roles}.", roles=", ".join(ROLES))
    check_pin(pin)
    hashed = HASHER.hash(pin)

    def work(session: Session) -> Staff | InvalidInput:
        taken = session.scalar(
            select(StaffMember.id).where(StaffMember.site_id == site.id, StaffMember.name == name)
        )
        if taken is not None:
            return InvalidInput("There is already a staff member called {name}.", name=name)
        now = site.clock.now()
        row = StaffMember(site_id=site.id, name=name, role=role, pin_hash=hashed, created_at=now)
        session.add(row)
        session.flush()
        record_audit(session, site, by, "staff_added", target=name, data={"role": role}, at=now)
        return _staff(row)

    result = site.db.write(work)
    if isinstance(result, InvalidInput):
        raise result
    return result


def list_staff(site: Site) -> list[Staff]:
    """Everyone, enabled or not, by name."""
    rows = site.db.read(
        lambda s: list(
            s.scalars(
                select(StaffMember).where(StaffMember.site_id == site.id).order_by(StaffMember.name)
            )
        )
    )
    return [_staff(r) for r in rows]


# A sign-in and a disable decide on the same row, so exactly one wins: a
# sign-in counts only if this write touched the row while it was enabled
# (and still had the PIN that was checked); a disable only once.
_SIGNED_IN = (
    update(StaffMember)
    .where(
        StaffMember.id == bindparam("b_staff"),
        StaffMember.disabled_at.is_(None),
        StaffMember.pin_hash == bindparam("b_pin_hash"),
    )
    .values(last_sign_in_at=bindparam("now"))
)
_DISABLE = (
    update(StaffMember)
    .where(StaffMember.id == bindparam("b_staff"), StaffMember.disabled_at.is_(None))
    .values(disabled_at=bindparam("now"))
)


def disable_staff(site: Site, name: str, reason: str = "", by: Actor = CLI) -> Staff:
    """Stop a staff member from signing in; their history stays. A sign-in
    racing with this either finished before it or is refused."""
    name = _clean_name(name)

    def work(session: Session) -> Staff | None:
        staff_id = session.scalar(
            select(StaffMember.id).where(StaffMember.site_id == site.id, StaffMember.name == name)
        )
        if staff_id is None:
            return None
        now = site.clock.now()
        if rows_touched(session.execute(_DISABLE, {"b_staff": staff_id, "now": now})) == 1:
            record_audit(session, site, by, "staff_disabled", target=name, reason=reason, at=now)
        return _staff(session.get_one(StaffMember, staff_id, populate_existing=True))

    result = site.db.write(work)
    if result is None:
        raise NotFound("There is no staff member called {name}.", name=name)
    return result


def staff_sign_in(site: Site, name: str, pin: str) -> Staff:
    """The enabled staff member with this name and PIN. Raises `SignInFailed`
    (the same for a wrong PIN, an unknown or a disabled name) or
    `SignInThrottled` after repeated failures."""
    key = f"staff:{' '.join(name.split()).lower()}"
    now = site.clock.now()
    wait = _blocked_for(site, key, now)
    if wait:
        raise SignInThrottled(wait)
    row = site.db.read(
        lambda s: s.scalars(
            select(StaffMember).where(
                StaffMember.site_id == site.id, StaffMember.name == " ".join(name.split())
            )
        ).one_or_none()
    )
    matched = _verify(row.pin_hash if row else _DUMMY_HASH, pin)
    if row is None or not matched or row.disabled_at is not None or not _signed_in(site, row):
        _record_failure(site, key)
        raise SignInFailed("That name and PIN do not match a staff member who may sign in.")
    _clear_failures(site, key)
    return _staff(row)


def _signed_in(site: Site, row: StaffMember) -> bool:
    """Record the sign-in on the staff row (and in the audit trail); false
    when the row was disabled, or its PIN changed, since it was read."""

    def work(session: Session) -> bool:
        now = site.clock.now()
        params = {"b_staff": row.id, "b_pin_hash": row.pin_hash, "now": now}
        if rows_touched(session.execute(_SIGNED_IN, params)) != 1:
            return False
        actor = Actor(row.name, row.id, row.role)
        record_audit(session, site, actor, "signed_in", target=row.name, at=now)
        return True

    return site.db.write(work)
