"""Attendant overrides. Each needs a reason, is done by a signed-in staff
member, and writes an audit row (hash-chained, `core.services.audit`) and an
`override` event for the live feed in the same transaction as the change.
Waiving or discounting a fee is for supervisors only.

What is here: open the gate, manual exit (the fee paid, or waived by a
supervisor), waive or discount a fee, move a car to another spot, mark a
spot out of service or back in service, cancel a reservation, refund a
payment (supervisor), acknowledge alerts (kept in `alert_acks`, shared by
every console). Cancelling and refunding write their audit row in
the very transaction that changes the reservation or the ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, exists, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.domain import ClaimKind, EventKind, ExitResult, Payment, PaymentPurpose
from core.errors import InvalidInput, NotFound, NothingToPay, PaymentRequired, TicketError
from core.services.audit import record_audit
from core.services.claims import is_live, take_spot
from core.services.entry import amount_due, end_stay
from core.services.events import record_event
from core.services.payments import record_cash_payment, refund_payment, with_fresh_quote
from core.services.reservations import Cancellation, find_reservation
from core.services.reservations import cancel_reservation as cancel_booking
from core.services.staff import Staff
from core.services.stays import _open_stay
from core.site import Site
from core.storage.database import Conflict, rows_touched
from core.storage.models import ALERT_KEY_CHARS, AlertAck, Claim, Spot, Stay
from core.tariff import format_money


class NotAllowed(InvalidInput):
    """This staff member's role may not do that."""

    code = "not_allowed"


def check_reason(reason: str) -> str:
    """The reason an override is given, tidied (whitespace collapsed, at
    most 255 characters); `InvalidInput` when it is not a few words. One
    rule for every override, asked by the console before its form closes."""
    cleaned = " ".join(reason.split())
    if len(cleaned) < 3:
        raise InvalidInput("Every override needs a reason (a few words).")
    return cleaned[:255]


def _supervisor(staff: Staff, what: str) -> None:
    if not staff.supervisor:
        raise NotAllowed("Only a supervisor may {what}; ask one to sign in.", what=what)


def _override(
    session: Session,
    site: Site,
    staff: Staff,
    action: str,
    message: str,
    reason: str,
    *,
    target: str = "",
    spot_id: int | None = None,
    spot_label: str | None = None,
    stay_id: int | None = None,
    data: dict[str, object] | None = None,
) -> None:
    """The audit row and the feed's event, in the caller's transaction."""
    now = site.clock.now()
    seq = record_audit(
        session, site, staff.actor, action, target=target, reason=reason, data=data, at=now
    )
    record_event(
        session,
        site.id,
        now,
        EventKind.OVERRIDE,
        f"{message} by {staff.name}: {reason}",
        source=f"staff:{staff.name}",
        spot_id=spot_id,
        spot_label=spot_label,
        stay_id=stay_id,
        data={"action": action, "staff": staff.name, "reason": reason, "audit_seq": seq}
        | (data or {}),
    )


def open_gate(site: Site, staff: Staff, lane: str, reason: str) -> None:
    """Record that the attendant opened `lane`'s gate by hand (the console
    then drives the gate itself)."""
    why = check_reason(reason)
    site.db.write(
        lambda s: _override(s, site, staff, "gate_opened", f"Gate {lane} opened", why, target=lane)
    )


def waive_fee(
    site: Site, staff: Staff, stay_id: int, reason: str, amount: int | None = None
) -> int:
    """A supervisor waives what a stay owes (or `amount` of it, a discount).
    Recorded in the ledger as a waiver, never as revenue. Returns the amount
    waived."""
    _supervisor(staff, "waive or discount a fee")
    why = check_reason(reason)

    def waive() -> int:
        stay = site.db.read(lambda s: _open_stay(s, site, stay_id))
        due = amount_due(site, stay, site.clock.now())
        if due == 0:
            raise NothingToPay("Nothing is left to pay for this stay.")
        waived = due if amount is None else amount
        if isinstance(waived, bool) or not 0 < waived <= due:
            raise InvalidInput(
                "A discount is between 1 and {due} (what the stay owes), in cents.", due=due
            )
        money = format_money(waived, site.tariff.currency)

        def audit(session: Session) -> None:
            _override(
                session,
                site,
                staff,
                "fee_waived",
                f"{money} waived on ticket {stay_id}",
                why,
                target=f"ticket {stay_id}",
                stay_id=stay_id,
                spot_id=stay.spot_id,
                spot_label=stay.label,
                data={"amount": waived, "of": due},
            )

        # The waiver is settled as a payment (one at a time per stay, like
        # every charge); its audit row is in that transaction.
        record_cash_payment(
            site,
            PaymentPurpose.STAY,
            waived,
            stay_id=stay_id,
            paid_seen=stay.paid_amount,
            source=f"staff:{staff.name}",
            method="waiver" if waived == due else "discount",
            also=audit,
        )
        return waived

    return with_fresh_quote(waive)


def manual_exit(site: Site, staff: Staff, stay_id: int, reason: str) -> ExitResult:
    """Let a car out from the booth (no ticket at hand, a broken reader...).
    The stay must be paid, or its fee waived first (`waive_fee`, supervisor);
    otherwise `PaymentRequired`."""
    why = check_reason(reason)

    def work(session: Session) -> ExitResult | TicketError | PaymentRequired:
        now = site.clock.now()
        stay = _open_stay(session, site, stay_id)
        due = amount_due(site, stay, now)
        if due > 0:
            return PaymentRequired(stay.id, format_money(due, site.tariff.currency))
        result = end_stay(session, site, stay, now, f"staff:{staff.name}", how="Manual exit")
        if isinstance(result, ExitResult):
            _override(
                session,
                site,
                staff,
                "manual_exit",
                f"Manual exit of ticket {stay_id}",
                why,
                target=f"ticket {stay_id}",
                stay_id=stay_id,
                spot_id=stay.spot_id,
                spot_label=stay.label,
            )
        return result

    result = site.db.write(work)
    if isinstance(result, (PaymentRequired, TicketError)):
        raise result
    return result


# The write that decides a move: the stay still inside and still on the claim
# the move started from (an exit or another move a moment ago loses it; the
# rerun then sees the car gone, or where it is now).
_MOVE_STAY = (
    update(Stay)
    .where(
        Stay.id == bindparam("b_stay"),
        Stay.exited_at.is_(None),
        Stay.claim_id == bindparam("b_old"),
    )
    .values(spot_id=bindparam("b_spot"), claim_id=bindparam("b_claim"))
)


def move_car(site: Site, staff: Staff, stay_id: int, to_spot: str, reason: str) -> str:
    """Record that a car was moved to `to_spot`: the stay takes a claim on it
    (through `take_spot`, like every claim: refused if it is not free for the
    rest of the stay or too small) and its old claim ends now. Returns the new
    spot's label."""
    why = check_reason(reason)

    def work(session: Session) -> str:
        now = site.clock.now()
        stay = _open_stay(session, site, stay_id)
        target = session.scalars(
            select(Spot).where(
                Spot.site_id == site.id, Spot.label == to_spot.strip(), Spot.removed.is_(False)
            )
        ).one_or_none()
        if target is None:
            raise NotFound("There is no spot {to_spot} in this garage.", to_spot=to_spot)
        if target.id == stay.spot_id:
            raise InvalidInput("The car is already in {spot}.", spot=target.label)
        old = session.get_one(Claim, stay.claim_id)
        # The rest of the stay's window (an overstayer's has run out: 15 min).
        end = old.ends_at if old.ends_at > now else now + timedelta(minutes=15)
        claimed = take_spot(
            session, site.id, target.id, stay.car_size, ClaimKind.STAY, now, end, now
        )
        if claimed is None:
            raise InvalidInput(
                "Spot {spot} is not free for this car (taken, booked, closed or too small).",
                spot=target.label,
            )
        session.execute(
            update(Claim).where(Claim.id == old.id, Claim.ends_at > now).values(ends_at=now)
        )
        moved = session.execute(
            _MOVE_STAY,
            {"b_stay": stay.id, "b_old": old.id, "b_spot": target.id, "b_claim": claimed.claim_id},
        )
        if rows_touched(moved) != 1:
            raise Conflict("the car left or was moved meanwhile")
        _override(
            session,
            site,
            staff,
            "car_moved",
            f"Ticket {stay.id} moved from {stay.label} to {target.label}",
            why,
            target=f"ticket {stay.id}",
            stay_id=stay.id,
            spot_id=target.id,
            spot_label=target.label,
            data={"from": stay.label, "to": target.label},
        )
        return target.label

    return site.db.write(work)


def cancel_reservation(site: Site, staff: Staff, code: str, reason: str) -> Cancellation:
    """Cancel a reservation named by its code (full or short, checked like at
    check-in) for a driver at the booth or on the phone. The spot is free
    again at once; what the tariff's cancellation rule gives back is
    refunded (a supervisor can refund more with `refund`)."""
    why = check_reason(reason)
    booked = find_reservation(site, code, f"staff:{staff.name}")

    def audit(session: Session, refund: int) -> None:
        _override(
            session,
            site,
            staff,
            "reservation_cancelled",
            f"Reservation {booked.short_code} cancelled",
            why,
            target=f"reservation {booked.id}",
            spot_label=booked.spot_label,
            data={"reservation_id": booked.id, "refund": refund},
        )

    return cancel_booking(
        site,
        booked.id,
        reason=f"by {staff.name}: {why}",
        kiosk=f"staff:{staff.name}",
        also=audit,
    )


def refund(
    site: Site, staff: Staff, payment_id: int, reason: str, amount: int | None = None
) -> Payment:
    """A supervisor gives back `amount` (default: all that is left) of a
    completed charge: a refund row in the ledger, sent to the card's
    provider (cash is handed back at the booth)."""
    _supervisor(staff, "refund a payment")
    why = check_reason(reason)
    if amount is not None and (isinstance(amount, bool) or amount <= 0):
        raise InvalidInput("A refund is a positive amount, in cents.")

    def audit(session: Session, refunded: int) -> None:
        money = format_money(refunded, site.tariff.currency)
        _override(
            session,
            site,
            staff,
            "refund",
            f"{money} refunded on payment {payment_id}",
            why,
            target=f"payment {payment_id}",
            data={"payment_id": payment_id, "amount": refunded},
        )

    return refund_payment(
        site, payment_id, amount, reason=why, source=f"staff:{staff.name}", also=audit
    )


def _stored_key(key: str) -> str:
    """An alert key as the unique index holds it: a key too long for it
    keeps its start, readable, and a digest of the whole, still unique."""
    if len(key) <= ALERT_KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: ALERT_KEY_CHARS - len(digest) - 1]}~{digest}"


# The write that decides an acknowledgement: a new row, kept by the unique
# index (site_id, alert_key). A second console acknowledging the same alert
# inserts nothing (no error, no audit row): it finds the key taken.
_ACKS = cast(Table, AlertAck.__table__)
_ACKNOWLEDGE = {
    "sqlite": sqlite_insert(_ACKS).on_conflict_do_nothing(),
    "mysql": mysql_insert(_ACKS).prefix_with("IGNORE"),
}
_ACKNOWLEDGE["mariadb"] = _ACKNOWLEDGE["mysql"]


def acknowledge_alerts(site: Site, staff: Staff, alert_keys: Iterable[str]) -> tuple[str, ...]:
    """Record that `staff` has seen the alerts named by `alert_keys` (each
    alert's key names it in its state: `StandingAlert.key`, an overstay's
    ticket, an alert event's id), for every console and after restarts;
    `acknowledged_alerts` reads them back. Returns the keys this call
    acknowledged; those already acknowledged (by anyone, even at this very
    moment on another console) are left as they are. The new ones are
    audited with the staff member, in the same transaction, as overrides are."""
    keys = sorted({k for k in (key.strip() for key in alert_keys) if k})
    statement = _ACKNOWLEDGE[site.db.dialect]

    def work(session: Session) -> tuple[str, ...]:
        now = site.clock.now()
        new = []
        for key in keys:  # in order: two consoles take the keys in one order
            row = {
                "site_id": site.id,
                "alert_key": _stored_key(key),
                "acknowledged_at": now,
                "staff_id": staff.id,
                "staff_name": staff.name[:64],
            }
            if rows_touched(session.execute(statement, row)) == 1:
                new.append(key)
        if new:
            count = f"{len(new)} alert{'s' if len(new) > 1 else ''}"
            _override(
                session,
                site,
                staff,
                "alerts_acknowledged",
                f"{count} acknowledged",
                "seen at the booth",
                target=count,
                data={"keys": new},
            )
        return tuple(new)

    return site.db.write(work) if keys else ()


def acknowledged_alerts(site: Site, alert_keys: Iterable[str]) -> frozenset[str]:
    """Which of `alert_keys` have been acknowledged (`acknowledge_alerts`),
    by anyone at any console: read by the console with its alerts, by the
    unique index."""
    keys = list(dict.fromkeys(alert_keys))
    by_stored = {_stored_key(key): key for key in keys}
    stored = list(by_stored)

    def read(session: Session) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(stored), 500):
            found.update(
                session.scalars(
                    select(AlertAck.alert_key).where(
                        AlertAck.site_id == site.id,
                        AlertAck.alert_key.in_(stored[start : start + 500]),
                    )
                )
            )
        return found

    found = site.db.read(read) if stored else set()
    return frozenset(by_stored[key] for key in found if key in by_stored)


_LOCK_SPOT = update(Spot).values(version=Spot.version + 1)


def spot_in_use(session: Session, site: Site, spot_id: int, now: datetime) -> bool:
    """A car, a hold or a reservation has the spot now or later. Read after
    the spot row is locked by a write: every claim insert holds that lock
    until it commits, so this fresh statement sees every claim."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    Claim.site_id == site.id,
                    Claim.spot_id == spot_id,
                    Claim.ends_at > now,
                    is_live(now),
                )
                | exists().where(
                    Stay.site_id == site.id, Stay.spot_id == spot_id, Stay.exited_at.is_(None)
                )
            )
        )
    )


def set_out_of_service(site: Site, staff: Staff, spot_label: str, out: bool, reason: str) -> None:
    """Close a spot (or open it again). Closing is refused while a car, a hold
    or a reservation has it now or later: move the car or cancel the booking
    first. Lock-then-verify, like every claim: the spot row is locked before
    its claims are read, so no claim can slip in between."""
    why = check_reason(reason)

    def work(session: Session) -> InvalidInput | None:
        now = site.clock.now()
        spot = session.scalars(
            select(Spot).where(Spot.site_id == site.id, Spot.label == spot_label.strip())
        ).one_or_none()
        if spot is None or spot.removed:
            raise NotFound("There is no spot {spot_label} in this garage.", spot_label=spot_label)
        locked = session.execute(_LOCK_SPOT.where(Spot.id == spot.id, Spot.site_id == site.id))
        if rows_touched(locked) != 1:
            raise NotFound("There is no spot {spot_label} in this garage.", spot_label=spot_label)
        if out and spot_in_use(session, site, spot.id, now):
            return InvalidInput(
                "Spot {spot} has a car or a booking: move the car or cancel the booking first.",
                spot=spot.label,
            )
        session.execute(update(Spot).where(Spot.id == spot.id).values(out_of_service=out))
        action = "spot_closed" if out else "spot_reopened"
        what = "out of service" if out else "back in service"
        _override(
            session,
            site,
            staff,
            action,
            f"Spot {spot.label} {what}",
            why,
            target=spot.label,
            spot_id=spot.id,
            spot_label=spot.label,
        )
        return None

    refused = site.db.write(work)
    if refused is not None:
        raise refused
    site.forget_spots()
