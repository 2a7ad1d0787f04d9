"""Driver accounts: create, sign in, change password, registered vehicles,
and tickets added to an account by their code.

Passwords are hashed with Argon2id at OWASP's parameters (19 MiB, t=2, p=1)
and never stored or logged. A wrong password and an unknown email give the
same answer, cost the same hashing work, and count alike against the
sign-in throttle, which has two parts:

- per email *and client* (an address, a kiosk): after `FREE_FAILURES`
  failures in a row from that client, each further failure blocks that
  email *from that client* for twice as long as the last (1 s, 2 s, 4 s,
  ... up to 15 minutes). A stranger guessing from one place never locks
  the owner out anywhere else.
- per email across all clients: after `EMAIL_FREE_FAILURES` failures within
  `EMAIL_WINDOW`, each further failure holds the email back for at most
  `EMAIL_MAX_BLOCK` (a few seconds), and only for clients that themselves
  failed on it: it spaces out guesses spread over many addresses, and the
  owner signing in from a client of their own is never kept waiting by it.

A success clears the client's count and the email's. Failures are written
by conditional UPDATEs (an INSERT the first time), never a read then a
write. Hashing runs outside any database transaction, so it never holds a
lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, case, delete, null, select, update
from sqlalchemy.orm import Session

from core.domain import Account, Size, Vehicle, normalize_plate
from core.errors import (
    EmailTaken,
    InvalidInput,
    LotkeeperError,
    NotFound,
    PlateTaken,
    SignInFailed,
    SignInThrottled,
    TicketAlreadyUsed,
    TicketError,
)
from core.services.entry import record_rejection, source_name
from core.services.events import record_event
from core.services.stays import StayStatus, _status, _stay_by_code
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import Account as AccountRow
from core.storage.models import SignInThrottle, UTCDateTime, stays_table
from core.storage.models import Vehicle as VehicleRow

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
FREE_FAILURES = 5
MAX_BLOCK = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=24)
"""A client's failures older than this (counted from its last) are forgotten."""
EMAIL_FREE_FAILURES = 10
EMAIL_MAX_BLOCK = timedelta(seconds=4)
EMAIL_WINDOW = timedelta(minutes=15)
ALL_CLIENTS = "*"
"""The `client` of the row counting an email's failures from every client."""
TICKET_TRIES = "ticket:{account_id}"
"""Throttle key for codes typed into an account (an email always has an @)."""
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


@dataclass(frozen=True)
class _Throttle:
    """How failures under one throttle row turn into a block."""

    free: int  # failures allowed before the first block
    max_block: timedelta
    forget_after: timedelta  # since the last failure: the count starts again

    def block(self, failures: int, now: datetime) -> datetime | None:
        if failures < self.free:
            return None
        doubling = min(failures - self.free, 20)
        return now + min(timedelta(seconds=2**doubling), self.max_block)


_PER_CLIENT = _Throttle(FREE_FAILURES, MAX_BLOCK, FORGET_AFTER)
_PER_EMAIL = _Throttle(EMAIL_FREE_FAILURES, EMAIL_MAX_BLOCK, EMAIL_WINDOW)


def _client_key(client: str) -> str:
    """A client as stored: trimmed to the column, never the all-clients row."""
    cleaned = client.strip()[:64]
    return "?" if cleaned == ALL_CLIENTS else cleaned


def _blocked_for(site: Site, email: str, now: datetime, client: str = "") -> int:
    """Seconds this email must still wait before another attempt from
    `client` (0: none): the client's own block, and the email's block across
    all clients if this client failed on it too."""
    client = _client_key(client)
    rows = site.db.read(
        lambda s: s.execute(
            select(
                SignInThrottle.client, SignInThrottle.blocked_until, SignInThrottle.last_failed_at
            ).where(
                SignInThrottle.site_id == site.id,
                SignInThrottle.email == email,
                SignInThrottle.client.in_([client, ALL_CLIENTS]),
            )
        ).all()
    )
    found = {row.client: row for row in rows}
    mine, everyone = found.get(client), found.get(ALL_CLIENTS)
    if mine is None:  # never failed from here: nothing holds it back
        return 0
    blocked = [mine.blocked_until]
    # The email's block holds back only clients that failed on it lately.
    if everyone is not None and mine.last_failed_at > now - EMAIL_WINDOW:
        blocked.append(everyone.blocked_until)
    wait = max((b for b in blocked if b is not None and b > now), default=None)
    if wait is None:
        return 0
    return max(1, int((wait - now).total_seconds() + 0.999))


def _count_failure(
    session: Session, site: Site, key: str, client: str, rule: _Throttle, now: datetime
) -> None:
    """One more failure on the (key, client) row, in one conditional UPDATE
    (its count, and the block that count earns, worked out by the database
    from the row as it is), or an INSERT when there is no row yet; two
    first failures at once: the second INSERT is a duplicate key and
    `Database.write` reruns, and then it updates."""
    t = SignInThrottle
    failures = case((t.last_failed_at < now - rule.forget_after, 0), else_=t.failures) + 1
    steps = []
    count = rule.free
    while (until := rule.block(count, now)) is not None and until < now + rule.max_block:
        steps.append((failures == count, bindparam(None, until, type_=UTCDateTime())))
        count += 1
    blocked = case(
        (failures < rule.free, null()),
        *steps,
        else_=bindparam(None, now + rule.max_block, type_=UTCDateTime()),
    )
    touched = rows_touched(
        session.execute(
            update(t)
            .where(t.site_id == site.id, t.email == key, t.client == client)
            # MariaDB assigns left to right, each seeing the ones before: the
            # columns the others read are written last.
            .ordered_values(
                (t.blocked_until, blocked),
                (t.failures, failures),
                (t.last_failed_at, now),
            )
        )
    )
    if touched == 0:
        session.add(
            SignInThrottle(
                site_id=site.id,
                email=key,
                client=client,
                failures=1,
                last_failed_at=now,
                blocked_until=rule.block(1, now),
            )
        )
        session.flush()


def _record_failure(site: Site, email: str, client: str = "") -> None:
    """Count a failed attempt on `email` from `client`, and on the email
    across all clients."""
    client = _client_key(client)

    def work(session: Session) -> None:
        now = site.clock.now()
        _count_failure(session, site, email, client, _PER_CLIENT, now)
        _count_failure(session, site, email, ALL_CLIENTS, _PER_EMAIL, now)

    site.db.write(work)


def _clear_failures(site: Site, email: str, client: str = "") -> None:
    """A success from `client`: its count and the email's across clients
    start again; other clients' counts stay (a stranger's block is theirs)."""
    client = _client_key(client)
    site.db.write(
        lambda s: s.execute(
            delete(SignInThrottle).where(
                SignInThrottle.site_id == site.id,
                SignInThrottle.email == email,
                SignInThrottle.client.in_([client, ALL_CLIENTS]),
            )
        )
    )


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sign_in(site: Site, email: str, password: str, client: str = "") -> Account:
    """The account for this email and password. Raises `SignInFailed` (the
    same for a wrong password and an unknown email) or `SignInThrottled`.
    `client` is where the attempt comes from (the API: the client's address;
    a kiosk: its id): failures are throttled per email and client."""
    try:
        email = normalize_email(email)
    except InvalidInput:
        raise SignInFailed() from None
    now = site.clock.now()
    wait = _blocked_for(site, email, now, client)
    if wait:
        raise SignInThrottled(wait)
    row = site.db.read(
        lambda s: s.scalars(
            select(AccountRow).where(AccountRow.site_id == site.id, AccountRow.email == email)
        ).one_or_none()
    )
    matched = _verify(row.password_hash if row else _DUMMY_HASH, password)
    if row is None or not matched:
        _record_failure(site, email, client)
        raise SignInFailed()
    _clear_failures(site, email, client)
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


def change_password(site: Site, account_id: int, current: str, new: str, client: str = "") -> None:
    """Replace the password after checking the current one. Raises
    `SignInFailed` when the current password is wrong (throttled like a
    sign-in from `client`), `InvalidInput` for a weak new one."""
    _check_password(new)
    account = get_account(site, account_id)
    sign_in(site, account.email, current, client)
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
        raise NotFound("The plate {plate} is not registered to this account.", plate=cleaned)


def list_vehicles(site: Site, account_id: int) -> list[Vehicle]:
    rows = site.db.read(
        lambda s: s.execute(
            select(VehicleRow.plate, VehicleRow.size)
            .where(VehicleRow.site_id == site.id, VehicleRow.account_id == account_id)
            .order_by(VehicleRow.created_at, VehicleRow.id)
        ).all()
    )
    return [Vehicle(plate, Size(size)) for plate, size in rows]


class TicketInAnotherAccount(LotkeeperError):
    """The ticket was added to (or reserved by) another account."""

    code = "ticket_taken"

    def __init__(self) -> None:
        super().__init__(
            "This ticket is already in another account. Please ask the attendant if it is yours."
        )


class TooManyTicketTries(LotkeeperError):
    """Too many codes that did not check out, typed into one account."""

    code = "too_many_requests"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "Too many ticket codes that do not check out. "
            "Please wait {seconds} seconds and try again.",
            seconds=retry_after_seconds,
        )
        self.retry_after_seconds = retry_after_seconds


_T = stays_table.c
# The link is this one conditional write: a car still inside, and a ticket
# no other account holds (a reservation's stay is its account's already).
_LINK_TICKET = (
    update(stays_table)
    .where(
        _T.id == bindparam("stay"),
        _T.site_id == bindparam("site"),
        _T.exited_at.is_(None),
        (_T.account_id.is_(None)) | (_T.account_id == bindparam("account")),
    )
    .values(account_id=bindparam("account"))
)


def add_ticket_to_account(site: Site, account_id: int, code: str, source: str = "") -> StayStatus:
    """Add a walk-in's ticket to the account, by its code (the QR's full
    code or the short code printed under it), checked exactly as the pay
    station checks it: the account then sees the stay, and its reminders go
    there. Having the code is the proof of holding the ticket; a plate is
    never enough. Adding it again is a no-op.

    Raises `NotFound` for an unknown account, a `TicketError` (recorded as
    an `invalid_ticket` event) for a bad code or one that already exited,
    `TicketInAnotherAccount`, or `TooManyTicketTries` after repeated bad
    codes on this account."""
    source = source_name(source)
    get_account(site, account_id)
    tries = TICKET_TRIES.format(account_id=account_id)
    wait = _blocked_for(site, tries, site.clock.now())
    if wait:
        raise TooManyTicketTries(wait)
    try:
        stay = _stay_by_code(site, code, source)
    except TicketError:
        # Not cleared by a success: adding a ticket of one's own again must
        # not buy more guesses at others' short codes.
        _record_failure(site, tries)
        raise

    def work(session: Session) -> bool:
        linked = session.execute(
            _LINK_TICKET, {"stay": stay.id, "site": site.id, "account": account_id}
        )
        if rows_touched(linked) != 1:
            return False
        if stay.account_id != account_id:
            record_event(
                session,
                site.id,
                site.clock.now(),
                "ticket_added",
                f"Ticket {stay.id} added to account {account_id}",
                source=source,
                stay_id=stay.id,
                spot_label=stay.label,
                data={"account_id": account_id},
            )
        return True

    if site.db.write(work):
        return _status(site, stay, site.clock.now())
    # Refused: read again only to say why.
    now_row = site.db.read(
        lambda s: s.execute(
            select(_T.exited_at).where(_T.id == stay.id, _T.site_id == site.id)
        ).one()
    )
    if now_row.exited_at is not None:
        used = TicketAlreadyUsed(site.describe_time(now_row.exited_at))
        record_rejection(site, code, used, source)
        raise used
    raise TicketInAnotherAccount()
