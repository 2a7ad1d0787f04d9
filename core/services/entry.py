"""Walk-in entry and exit."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.domain import ClaimKind, EventKind, ExitResult, Size, Ticket, normalize_plate
from core.errors import (
    LotFull,
    TicketAlreadyUsed,
    TicketError,
    TicketKeyUnknown,
    TicketSignatureInvalid,
    TicketUnknown,
)
from core.services.claims import claim_best_spot
from core.services.events import record_event
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import claims_table, spots_table, stays_table
from core.ticket_codes import ShortCode, SignedCode, parse_code

S = spots_table.c
T = stays_table.c
C = claims_table.c

# Hot-path statements are built once; only their parameters change.
_INSERT_STAY = insert(stays_table)
_STAY_FOR_EXIT = (
    select(T.id, T.claim_id, T.spot_id, T.key_id, T.entered_at, S.label, S.level)
    .join_from(stays_table, spots_table, S.id == T.spot_id)
    .where(T.id == bindparam("stay"), T.site_id == bindparam("site"))
)
_END_STAY = (
    update(stays_table)
    .where(T.id == bindparam("stay"), T.exited_at.is_(None))
    .values(exited_at=bindparam("now"), exit_kiosk=bindparam("kiosk"))
)
_CUT_CLAIM = (
    update(claims_table)
    .where(C.id == bindparam("claim"), C.ends_at > bindparam("now"))
    .values(ends_at=bindparam("now"))
)


def _source(kiosk: str) -> str:
    return kiosk.strip()[:64]


def enter(site: Site, size: Size | str, plate: str | None = None, kiosk: str = "") -> Ticket:
    """Admit a walk-in: claim the best-fitting spot for [now, now + max stay)
    and issue a signed ticket. Raises `LotFull` (recorded as an event) when no
    fitting spot is free for the whole window, `InvalidInput` for a bad size
    or plate."""
    car = Size.parse(size)
    plate = normalize_plate(plate)
    source = _source(kiosk)
    keyring = site.keyring()

    def work(session: Session) -> Ticket | LotFull:
        now = site.clock.now()
        until = now + site.max_stay
        taken = claim_best_spot(session, site, car, ClaimKind.STAY, now, until, now)
        if taken is None:
            refusal = LotFull(car.label)
            record_event(
                session,
                site.id,
                now,
                EventKind.REFUSED_FULL,
                f"Entry refused: full for a {car.label} car",
                source=source,
                data={"size": car.label, "plate": plate},
            )
            return refusal
        spot, claim_id = taken
        stay_id = int(
            session.execute(
                _INSERT_STAY,
                {
                    "site_id": site.id,
                    "claim_id": claim_id,
                    "spot_id": spot.id,
                    "car_size": int(car),
                    "plate": plate,
                    "key_id": keyring.active_id,
                    "entered_at": now,
                    "max_stay_until": until,
                    "entry_kiosk": source,
                },
            ).inserted_primary_key[0]  # type: ignore[attr-defined]
        )
        code = keyring.sign(stay_id, int(now.timestamp()))
        short = keyring.short_code(keyring.active_id, stay_id)
        record_event(
            session,
            site.id,
            now,
            EventKind.ENTRY,
            f"Entry: {car.label} car{f' {plate}' if plate else ''} to {spot.label}",
            source=source,
            spot_id=spot.id,
            spot_label=spot.label,
            stay_id=stay_id,
            data={"size": car.label, "spot_size": Size(spot.size).label, "plate": plate},
        )
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

    result = site.db.write(work)
    if isinstance(result, LotFull):
        raise result
    return result


def _record_rejection(site: Site, raw: str, error: TicketError, source: str) -> None:
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


def exit(site: Site, code: str, kiosk: str = "") -> ExitResult:
    """Let a car out with its ticket (full code or short code): the stay ends,
    its claim is cut to now and the spot is free. A ticket exits once, even
    when two lanes scan it at the same moment. Raises a `TicketError`
    subclass (recorded as an event for the attendant) when the code is
    malformed, forged, altered, signed with an unknown key, or already used."""
    source = _source(kiosk)
    try:
        parsed = parse_code(code)
        if isinstance(parsed, SignedCode):
            _verify_signature(site, parsed)
    except TicketError as error:
        _record_rejection(site, code, error, source)
        raise
    keyring = site.keyring()

    def work(session: Session) -> ExitResult | TicketError:
        now = site.clock.now()
        stay = session.execute(
            _STAY_FOR_EXIT, {"stay": parsed.ticket_id, "site": site.id}
        ).one_or_none()
        if stay is None:
            return TicketUnknown()
        if isinstance(parsed, ShortCode):
            # A key rotated by another process a moment ago: re-read the ring.
            ring = keyring if stay.key_id in keyring.keys else site.keyring(refresh=True)
            try:
                ring.verify_short(stay.key_id, parsed)
            except TicketError as error:
                return error
        elif parsed.key_id != stay.key_id or parsed.issued_at != int(stay.entered_at.timestamp()):
            return TicketSignatureInvalid()
        ended = session.execute(_END_STAY, {"stay": stay.id, "now": now, "kiosk": source})
        if rows_touched(ended) != 1:
            exited_at = session.scalar(select(T.exited_at).where(T.id == stay.id))
            return TicketAlreadyUsed(
                site.describe_time(exited_at) if exited_at else "an earlier time"
            )
        session.execute(_CUT_CLAIM, {"claim": stay.claim_id, "now": now})
        record_event(
            session,
            site.id,
            now,
            EventKind.EXIT,
            f"Exit: ticket {stay.id} from {stay.label}",
            source=source,
            spot_id=stay.spot_id,
            spot_label=stay.label,
            stay_id=stay.id,
            data={"minutes": int((now - stay.entered_at).total_seconds() // 60)},
        )
        return ExitResult(stay.id, stay.label, stay.level, stay.entered_at, now)

    result = site.db.write(work)
    if isinstance(result, TicketError):
        _record_rejection(site, code, result, source)
        raise result
    return result
