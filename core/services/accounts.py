"""Driver accounts: create, sign in, change password, registered vehicles.

Passwords are hashed with Argon2id at OWASP's parameters (19 MiB, t=2, p=1)
and never stored or logged. A wrong password and an unknown email give the
same answer, cost the same hashing work, and count against the same
per-email throttle: after `FREE_FAILURES` failures in a row, each further
failure blocks that email for twice as long as the last (1 s, 2 s, 4 s, ...
up to 15 minutes); a success clears it. Hashing runs outside any database
transaction, so it never holds a lock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.domain import Account, Size, Vehicle, normalize_plate
from core.errors import (
    EmailTaken,
    InvalidInput,
    NotFound,
    PlateTaken,
    SignInFailed,
    SignInThrottled,
)
from core.site import Site
from core.storage.models import Account as AccountRow
from core.storage.models import SignInThrottle
from core.storage.models import Vehicle as VehicleRow

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
FREE_FAILURES = 5
MAX_BLOCK = timedelta(minutes=15)
MIN_PASSWORD = 8
MAX_PASSWORD = 256
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# Verified against when the email is unknown, so that path costs the same.
_DUMMY_HASH = HASHER.hash("lotkeeper: no such account")


def normalize_email(email: str) -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not _EMAIL.match(cleaned):
        raise InvalidInput("Please enter a valid email address, like name@example.com.")
    return cleaned


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            "Please choose a password of at least {count} characters.", count=MIN_PASSWORD
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("A password can be at most {count} characters.", count=MAX_PASSWORD)


def _account(row: AccountRow) -> Account:
    return Account(row.id, row.name, row.email, row.created_at)


def create_account(site: Site, name: str, email: str, password: str) -> Account:
    """Open an account. Raises `InvalidInput` for a bad name, email or
    password, `EmailTaken` when the email already has an account."""
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise InvalidInput("Please enter your name (up to 100 characters).")
    email = normalize_email(email)
    _check_password(password)
    hashed = HASHER.hash(password)

    def work(session: Session) -> Account | EmailTaken:
        taken = session.scalar(
            select(AccountRow.id).where(AccountRow.site_id == site.id, AccountRow.email == email)
        )
        if taken is not None:
            return EmailTaken()
        now = site.clock.now()
        row = AccountRow(
            site_id=site.id,
            name=name,
            email=email,
            password_hash=hashed,
            created_at=now,
            password_changed_at=now,
        )
        session.add(row)
        session.flush()
        return _account(row)

    # Two sign-ups with one email at the same moment: the unique key stops
    # the second insert, the rerun finds the first account and says so.
    result = site.db.write(work)
    if isinstance(result, EmailTaken):
        raise result
    return result


def _blocked_for(site: Site, email: str, now: datetime, client: str = "") -> int:
    """Seconds this email must still wait before another attempt (0: none)."""
    blocked_until = site.db.read(
        lambda s: s.scalar(
            select(SignInThrottle.blocked_until).where(
                SignInThrottle.site_id == site.id,
                SignInThrottle.email == email,
                SignInThrottle.client == client,
            )
        )
    )
    if blocked_until is None or blocked_until <= now:
        return 0
    return max(1, int((blocked_until - now).total_seconds() + 0.999))


def _record_failure(site: Site, email: str, client: str = "") -> None:
    def work(session: Session) -> None:
        now = site.clock.now()
        row = session.get(SignInThrottle, (site.id, email, client), with_for_update=True)
        if row is None:
            row = SignInThrottle(
                site_id=site.id, email=email, client=client, failures=0, last_failed_at=now
            )
            session.add(row)
        row.failures += 1
        row.last_failed_at = now
        if row.failures >= FREE_FAILURES:
            doubling = min(row.failures - FREE_FAILURES, 20)
            row.blocked_until = now + min(timedelta(seconds=2**doubling), MAX_BLOCK)

    site.db.write(work)


def _clear_failures(site: Site, email: str) -> None:
    site.db.write(
        lambda s: s.execute(
            delete(SignInThrottle).where(
                SignInThrottle.site_id == site.id, SignInThrottle.email == email
            )
        )
    )


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sign_in(site: Site, email: str, password: str) -> Account:
    """The account for this email and password. Raises `SignInFailed` (the
    same for a wrong password and an unknown email) or `SignInThrottled`."""
    try:
        email = normalize_email(email)
    except InvalidInput:
        raise SignInFailed() from None
    now = site.clock.now()
    wait = _blocked_for(site, email, now)
    if wait:
        raise SignInThrottled(wait)
    row = site.db.read(
        lambda s: s.scalars(
            select(AccountRow).where(AccountRow.site_id == site.id, AccountRow.email == email)
        ).one_or_none()
    )
    matched = _verify(row.password_hash if row else _DUMMY_HASH, password)
    if row is None or not matched:
        _record_failure(site, email)
        raise SignInFailed()
    _clear_failures(site, email)
    if HASHER.check_needs_rehash(row.password_hash):
        _store_hash(site, row.id, HASHER.hash(password), touch=False)
    return _account(row)


def _store_hash(site: Site, account_id: int, hashed: str, touch: bool = True) -> None:
    def work(session: Session) -> None:
        row = session.get(AccountRow, account_id)
        if row is None or row.site_id != site.id:
            raise NotFound("That account does not exist.")
        row.password_hash = hashed
        if touch:
            row.password_changed_at = site.clock.now()

    site.db.write(work)


def change_password(site: Site, account_id: int, current: str, new: str) -> None:
    """Replace the password after checking the current one. Raises
    `SignInFailed` when the current password is wrong (throttled like a
    sign-in), `InvalidInput` for a weak new one."""
    _check_password(new)
    account = get_account(site, account_id)
    sign_in(site, account.email, current)
    _store_hash(site, account_id, HASHER.hash(new))


def get_account(site: Site, account_id: int) -> Account:
    row = site.db.read(lambda s: s.get(AccountRow, account_id))
    if row is None or row.site_id != site.id:
        raise NotFound("That account does not exist.")
    return _account(row)


def add_vehicle(site: Site, account_id: int, plate: str, size: Size | str) -> Vehicle:
    """Register a car to the account (its size is what the account reserves
    for). Registering the account's own plate again updates its size. Raises
    `PlateTaken` when another account has the plate."""
    car = Size.parse(size)
    cleaned = normalize_plate(plate)
    if cleaned is None:
        raise InvalidInput("Please enter the car's licence plate.")
    get_account(site, account_id)

    def work(session: Session) -> Vehicle | PlateTaken:
        row = session.scalars(
            select(VehicleRow).where(VehicleRow.site_id == site.id, VehicleRow.plate == cleaned)
        ).one_or_none()
        if row is not None and row.account_id != account_id:
            return PlateTaken(cleaned)
        if row is None:
            row = VehicleRow(
                site_id=site.id,
                account_id=account_id,
                plate=cleaned,
                size=int(car),
                created_at=site.clock.now(),
            )
            session.add(row)
        row.size = int(car)
        return Vehicle(cleaned, car)

    result = site.db.write(work)
    if isinstance(result, PlateTaken):
        raise result
    return result


def remove_vehicle(site: Site, account_id: int, plate: str) -> None:
    """Unregister a plate from the account (then another account may take it)."""
    cleaned = normalize_plate(plate)

    def work(session: Session) -> int:
        result = session.execute(
            delete(VehicleRow).where(
                VehicleRow.site_id == site.id,
                VehicleRow.account_id == account_id,
                VehicleRow.plate == cleaned,
            )
        )
        return int(getattr(result, "rowcount", 0))

    if site.db.write(work) == 0:
        raise NotFound(f"The plate {cleaned} is not registered to this account.")


def list_vehicles(site: Site, account_id: int) -> list[Vehicle]:
    rows = site.db.read(
        lambda s: s.execute(
            select(VehicleRow.plate, VehicleRow.size)
            .where(VehicleRow.site_id == site.id, VehicleRow.account_id == account_id)
            .order_by(VehicleRow.created_at, VehicleRow.id)
        ).all()
    )
    return [Vehicle(plate, Size(size)) for plate, size in rows]
