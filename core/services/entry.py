"""Walk-in entry and exit, and the ticket code checks every use of a ticket
goes through."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.allocation import SpotRow
from core.domain import ClaimKind, EventKind, ExitResult, Need, Size, Ticket, normalize_plate
from core.errors import (
    LotFull,
    PaymentRequired,
    TicketAlreadyUsed,
    TicketError,
    TicketKeyUnknown,
    TicketSignatureInvalid,
    TicketUnknown,
    WrongKindOfCode,
)
from core.services.claims import Claimed, claim_best_spot
from core.services.events import event_step, record_event
from core.services.keys import key_in_use
from core.site import Site
from core.storage.batch import Step, id_before, rows_before, send
from core.storage.models import claims_table, spots_table, stays_table
from core.tariff import StayFacts, format_money
from core.ticket_codes import VERSION, KeyRing, ShortCode, SignedCode, parse_code

S = spots_table.c
T = stays_table.c
C = claims_table.c

# A row of `_STAY_FOR_EXIT` (typed loosely: Row's generics differ between
# SQLAlchemy 2.0 and 2.1).
StayRow = Any

# Hot-path statements are built once; only their parameters change.
# A batch step (`core.storage.batch`): the stay for the claim inserted by
# the step before, if it inserted one.
_STAY_COLUMNS = [
    c
    for c in stays_table.c
    if c.key not in ("id", "exited_at", "exit_kiosk", "overstay_noted_at", "pending_payment")
]
_INSERT_STAY_FOR_NEW_CLAIM = insert(stays_table).from_select(
    [c.key for c in _STAY_COLUMNS],
    select(
        *[
            id_before() if c.key == "claim_id" else bindparam(c.key, type_=c.type)
            for c in _STAY_COLUMNS
        ]
    ).where(rows_before() == 1),
)
_STAY_FOR_EXIT = (
    select(
        T.id,
        T.claim_id,
        T.spot_id,
        T.key_id,
        T.entered_at,
        T.exited_at,
        T.car_size,
        T.plate,
        T.max_stay_until,
        T.paid_amount,
        T.paid_until,
        T.billed_from,
        T.lost_ticket,
        T.account_id,
        T.reservation_id,
        S.label,
        S.level,
    )
    .join_from(stays_table, spots_table, S.id == T.spot_id)
    .where(T.id == bindparam("stay"), T.site_id == bindparam("site"))
)
# The write that decides an exit: a stay ends once. With a ticket (or an
# exit pass), only while the key that signed it is not retired.
_END_STAY = (
    update(stays_table)
    .where(T.id == bindparam("stay"), T.exited_at.is_(None))
    .values(exited_at=bindparam("now"), exit_kiosk=bindparam("kiosk"))
)
_END_STAY_WITH_TICKET = _END_STAY.where(key_in_use(T.site_id, T.key_id))
# Sent after the exit event, which is written only if the stay was ended:
# the claim the stay holds *now* (a car moved a moment ago has a new one).
_CUT_CLAIM = (
    update(claims_table)
    .where(
        C.id == select(T.claim_id).where(T.id == bindparam("stay")).scalar_subquery(),
        C.ends_at > bindparam("now"),
        rows_before() == 1,
    )
    .values(ends_at=bindparam("now"))
)


def source_name(kiosk: str) -> str:
    return kiosk.strip()[:64]


def enter(
    site: Site,
    size: Size | str,
    plate: str | None = None,
    kiosk: str = "",
    need: str | None = None,
) -> Ticket:
    """Admit a walk-in: claim the best-fitting spot for [now, now + max stay)
    and issue a signed ticket. `need` ("accessible" or "ev") asks for a spot
    with that feature, and only such a spot is given; without it, accessible
    and EV spots are given only when no ordinary fitting spot is free.
    Raises `LotFull` (recorded as an event; its `need` says what was asked)
    when no suitable spot is free for the whole window, `InvalidInput` for a
    bad size, need or plate."""
    car = Size.parse(size)
    wants = Need.parse(need)
    plate = normalize_plate(plate)
    source = source_name(kiosk)

    def work(session: Session) -> Ticket | LotFull:
        now = site.clock.now()
        until = now + site.max_stay
        keyring = site.keyring()

        def stay(spot: SpotRow) -> list[Step]:
            return stay_steps(site, keyring, spot, car, plate, now, until, source)

        taken = claim_best_spot(
            session, site, car, ClaimKind.STAY, now, until, now, then=stay, need=wants
        )
        if taken is None:
            refusal = LotFull(car.label, wants)
            record_event(
                session,
                site.id,
                now,
                EventKind.REFUSED_FULL,
                f"Entry refused: no {wants.label} spot free for a {car.label} car"
                if wants
                else f"Entry refused: full for a {car.label} car",
                source=source,
                data={"size": car.label, "plate": plate} | ({"need": wants.value} if wants else {}),
            )
            return refusal
        spot, claimed = taken
        return make_ticket(keyring, claimed, spot, car, plate, now, until)

    result = site.db.write(work)
    if isinstance(result, LotFull):
        raise result
    return result


def stay_steps(
    site: Site,
    keyring: KeyRing,
    spot: SpotRow,
    car: Size,
    plate: str | None,
    now: datetime,
    until: datetime,
    source: str,
    *,
    reservation_id: int | None = None,
    account_id: int | None = None,
    billed_from: datetime | None = None,
) -> list[Step]:
    """The stay row and its entry event, as steps sent with the claim they
    build on (`take_spot(..., then=...)`): a walk-in, or a reservation
    checking in. `make_ticket` then turns the result into the ticket."""
    values: dict[str, object] = {
        "site_id": site.id,
        "spot_id": spot.id,
        "car_size": int(car),
        "plate": plate,
        "key_id": keyring.active_id,
        "entered_at": now,
        "max_stay_until": until,
        "entry_kiosk": source,
        "reservation_id": reservation_id,
        "account_id": account_id,
        "paid_amount": 0,
        "lost_ticket": False,
        "billed_from": billed_from,
        # A reservation is prepaid until it ends; billed by time after that.
        "paid_until": (
            (billed_from or until) + site.tariff.exit_grace if reservation_id is not None else None
        ),
    }
    how = f"reservation {reservation_id}" if reservation_id is not None else "entry"
    event = event_step(
        site.id,
        now,
        EventKind.ENTRY,
        f"Entry ({how}): {car.label} car{f' {plate}' if plate else ''} to {spot.label}",
        source=source,
        spot_id=spot.id,
        spot_label=spot.label,
        new_stay=True,
        data={"size": car.label, "spot_size": Size(spot.size).label, "plate": plate}
        | ({"reservation_id": reservation_id} if reservation_id is not None else {}),
    )
    return [(_INSERT_STAY_FOR_NEW_CLAIM, values), event]


def make_ticket(
    keyring: KeyRing,
    claimed: Claimed,
    spot: SpotRow,
    car: Size,
    plate: str | None,
    now: datetime,
    until: datetime,
) -> Ticket:
    """The signed ticket for the stay that `stay_steps` inserted."""
    stay_id = claimed.then[0].new_id if claimed.then else None
    if stay_id is None:  # the stay step always follows a taken claim
        raise RuntimeError(f"claim {claimed.claim_id} was taken but its stay was not written")
    code = keyring.sign(stay_id, int(now.timestamp()))
    short = keyring.short_code(keyring.active_id, stay_id)
    return Ticket(
        id=stay_id,
        code=code.text,
        short_code=short.text,
        spot_label=spot.label,
        level=spot.level,
        size=car,
        spot_size=Size(spot.size),
        plate=plate,
        entered_at=now,
        max_stay_until=until,
    )


def record_rejection(site: Site, raw: str, error: TicketError, source: str) -> None:
    shown = "".join(raw.split())[:48]
    site.db.write(
        lambda session: record_event(
            session,
            site.id,
            site.clock.now(),
            EventKind.INVALID_TICKET,
            f"Ticket refused ({error.reason}): {shown or '(empty)'}",
            source=source,
            data={"reason": error.reason, "code": shown},
        )
    )


def _verify_signature(site: Site, code: SignedCode) -> None:
    try:
        site.keyring().verify(code)
    except TicketKeyUnknown:
        # Maybe another process rotated keys a moment ago.
        site.keyring(refresh=True).verify(code)


def parse_ticket_code(site: Site, code: str, source: str) -> SignedCode | ShortCode:
    """Read a scanned or typed ticket code and check its signature. Raises a
    `TicketError` (recorded as an event for the attendant) for a malformed,
    forged or unknown-key code, or a reservation code."""
    try:
        parsed = parse_code(code)
        if parsed.version != VERSION:
            raise WrongKindOfCode(
                "This is a reservation code: use it at the entry to check in. "
                "To leave, scan the ticket you got when you came in."
            )
        if isinstance(parsed, SignedCode):
            _verify_signature(site, parsed)
    except TicketError as error:
        record_rejection(site, code, error, source)
        raise
    return parsed


def match_stay(
    session: Session, site: Site, parsed: SignedCode | ShortCode
) -> StayRow | TicketError:
    """The stay a verified code names, or why the code does not fit it."""
    stay = session.execute(
        _STAY_FOR_EXIT, {"stay": parsed.ticket_id, "site": site.id}
    ).one_or_none()
    if stay is None:
        return TicketUnknown()
    if isinstance(parsed, ShortCode):
        keyring = site.keyring()
        # A key rotated by another process a moment ago: re-read the ring.
        ring = keyring if stay.key_id in keyring.keys else site.keyring(refresh=True)
        try:
            ring.verify_short(stay.key_id, parsed)
        except TicketError as error:
            return error
    elif parsed.key_id != stay.key_id or parsed.issued_at != int(stay.entered_at.timestamp()):
        return TicketSignatureInvalid()
    return stay


def stay_facts(site: Site, stay: StayRow) -> StayFacts:
    """What the tariff needs of a stay row. A reservation's stay is prepaid
    until the reservation's end (its `max_stay_until`): past it, it pays
    parking from there and the overstay fee; its entry time stays real."""
    return StayFacts(
        Size(stay.car_size),
        stay.entered_at,
        stay.max_stay_until,
        stay.paid_amount,
        stay.lost_ticket,
        billed_from=stay.billed_from,
    )


def amount_due(site: Site, stay: StayRow, now: datetime) -> int:
    """What the driver must still pay to leave now (0 within the exit grace
    after paying, or within the free minutes after entry)."""
    if stay.paid_until is not None and now <= stay.paid_until:
        return 0
    return site.tariff.quote(stay_facts(site, stay), now).due


def exit(site: Site, code: str, kiosk: str = "") -> ExitResult:
    """Let a car out with its ticket (full code or short code): the stay ends,
    its claim is cut to now and the spot is free. A ticket exits once, even
    when two lanes scan it at the same moment. Raises `PaymentRequired` when
    the stay has something left to pay (free within the grace minutes, or
    within the exit grace after paying), and a `TicketError` subclass
    (recorded as an event for the attendant) when the code is malformed,
    forged, altered, signed with an unknown key, or already used."""
    source = source_name(kiosk)
    parsed = parse_ticket_code(site, code, source)

    def work(session: Session) -> ExitResult | TicketError | PaymentRequired:
        now = site.clock.now()
        stay = match_stay(session, site, parsed)
        if isinstance(stay, TicketError):
            return stay
        if stay.exited_at is None:
            due = amount_due(site, stay, now)
            if due > 0:
                return PaymentRequired(stay.id, format_money(due, site.tariff.currency))
        return end_stay(session, site, stay, now, source, with_ticket=True)

    result = site.db.write(work)
    if isinstance(result, PaymentRequired):
        raise result
    if isinstance(result, TicketError):
        record_rejection(site, code, result, source)
        raise result
    return result


def end_stay(
    session: Session,
    site: Site,
    stay: StayRow,
    now: datetime,
    source: str,
    how: str = "Exit",
    *,
    with_ticket: bool = False,
) -> ExitResult | TicketError:
    """End the stay (once: the UPDATE touches a row only while it is open,
    and `with_ticket` only while the ticket's key is not retired), log the
    exit and cut its claim to now, in one round trip."""
    event = event_step(
        site.id,
        now,
        EventKind.EXIT,
        f"{how}: ticket {stay.id} from {stay.label}",
        source=source,
        spot_id=stay.spot_id,
        spot_label=stay.label,
        stay_id=stay.id,
        data={"minutes": int((now - stay.entered_at).total_seconds() // 60)},
    )
    ended, _, _ = send(
        session,
        [
            (
                _END_STAY_WITH_TICKET if with_ticket else _END_STAY,
                {"stay": stay.id, "now": now, "kiosk": source},
            ),
            event,
            (_CUT_CLAIM, {"stay": stay.id, "now": now}),
        ],
    )
    if ended.rows != 1:
        exited_at = session.scalar(select(T.exited_at).where(T.id == stay.id))
        if exited_at is None and with_ticket:
            return TicketKeyUnknown(stay.key_id)  # retired a moment ago
        return TicketAlreadyUsed(site.describe_time(exited_at) if exited_at else "an earlier time")
    return ExitResult(stay.id, stay.label, stay.level, stay.entered_at, now)
