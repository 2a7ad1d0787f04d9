"""The attendant's booth: lost tickets (find the car, charge the lost-ticket
fee by card or cash, hand out an exit pass) and search by plate, ticket
code, reservation code or account email."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput, LotkeeperError, NotFound
from core.services.accounts import normalize_email
from core.services.audit import record_audit
from core.services.entry import amount_due, parse_ticket_code
from core.services.reservations import Reservation, get_reservation
from core.services.staff import Staff
from core.services.stays import (
    StayStatus,
    _open_stay,
    find_stays,
    stay_status,
    take_lost_ticket_cash,
)
from core.site import Site
from core.storage.models import Account as AccountRow
from core.ticket_codes import RESERVATION, parse_code


def lost_ticket_cash(site: Site, staff: Staff, stay_id: int) -> int:
    """Take the lost-ticket charge in cash at the booth (counted against the
    shift). Returns the amount taken."""
    return take_lost_ticket_cash(site, stay_id, f"staff:{staff.name}")


@dataclass(frozen=True)
class ExitPass:
    """What lets a paid stay out at an exit kiosk: `code`, the stay's own
    signed ticket code (for the QR), and `short_code`, the short human code
    printed under a ticket's QR (for a driver to type when the QR will not
    scan). Either exits once only, like the ticket itself."""

    code: str
    short_code: str


def exit_pass(site: Site, staff: Staff, stay_id: int) -> ExitPass:
    """The exit pass of a paid stay, printed at the booth or shown on the
    console (QR and short code). Refused while the stay owes something."""

    def work(session: Session) -> ExitPass:
        now = site.clock.now()
        stay = _open_stay(session, site, stay_id)
        if amount_due(site, stay, now) > 0:
            raise InvalidInput("This stay is not paid yet: take the lost-ticket charge first.")
        keyring = site.keyring()
        if stay.key_id not in keyring.keys:
            keyring = site.keyring(refresh=True)
        issued = ExitPass(
            code=keyring.code_for(stay.key_id, stay.id, int(stay.entered_at.timestamp())).text,
            # As `make_ticket` makes the printed ticket's: checked at the exit
            # against the stay's key (`match_stay`).
            short_code=keyring.short_code(stay.key_id, stay.id).text,
        )
        record_audit(session, site, staff.actor, "exit_pass", target=f"ticket {stay.id}", at=now)
        return issued

    return site.db.write(work)


@dataclass(frozen=True)
class Found:
    """What a search found: cars inside, reservations, accounts."""

    stays: tuple[StayStatus, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    accounts: tuple[tuple[int, str, str], ...] = ()  # (id, name, email)

    @property
    def empty(self) -> bool:
        return not (self.stays or self.reservations or self.accounts)


def search(site: Site, text: str) -> Found:
    """By ticket code (full or short), reservation code, account email or
    plate, in that order of recognition."""
    text = text.strip()
    if not text:
        raise InvalidInput("Type a plate, a ticket or reservation code, or an email.")
    if "@" in text:
        email = normalize_email(text)
        rows = site.db.read(
            lambda s: s.execute(
                select(AccountRow.id, AccountRow.name, AccountRow.email).where(
                    AccountRow.site_id == site.id, AccountRow.email == email
                )
            ).all()
        )
        return Found(accounts=tuple((r.id, r.name, r.email) for r in rows))
    try:
        parsed = parse_code(text)
    except LotkeeperError:
        parsed = None
    if parsed is not None:
        if parsed.version == RESERVATION:
            try:
                return Found(reservations=(get_reservation(site, parsed.ticket_id),))
            except NotFound:
                return Found()
        try:
            ticket = parse_ticket_code(site, text, "booth search")
            return Found(stays=(stay_status(site, ticket.ticket_id),))
        except (NotFound, LotkeeperError):
            return Found()
    return Found(stays=tuple(find_stays(site, plate=text)))
