"""Shifts and reports: a booth shift opens with a cash float and closes with
the counted cash; its report, like a day's (`lotkeeper report --day`), gives
entries, exits, revenue by method, refunds, waivers, overrides by staff and,
for a shift, cash over or short. Opening and closing are audited. Every
report also carries the audit chain's head and row count when it was made,
so a later rewrite of the chain differs from the paper."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind
from core.errors import InvalidInput, NotFound
from core.services.audit import AuditHeadInfo, read_audit_head, record_audit
from core.services.overrides import NotAllowed
from core.services.staff import Staff
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import EventRow, Payment, Shift
from core.tariff import format_money

REVENUE_METHODS = ("card", "cash")


@dataclass(frozen=True)
class Report:
    """What happened between `start` and `end` (amounts in minor units)."""

    title: str
    start: datetime
    end: datetime
    currency: str
    entries: int
    exits: int
    revenue: dict[str, int]
    """By method (card, cash): succeeded charges."""
    refunds: dict[str, int]
    waived: int
    """Waivers and discounts: paid for the stays, not revenue."""
    overrides: dict[str, int]
    """Overrides (audited actions) by staff member."""
    float_amount: int | None = None
    counted_cash: int | None = None
    notes: list[str] = field(default_factory=list)
    audit: AuditHeadInfo | None = None
    """The audit chain's head and row count when the report was made."""
    start_text: str = ""
    end_text: str = ""
    """`start` and `end` in site time, as the report prints them."""

    @property
    def net_revenue(self) -> int:
        return sum(self.revenue.values()) - sum(self.refunds.values())

    @property
    def expected_cash(self) -> int | None:
        if self.float_amount is None:
            return None
        return self.float_amount + self.revenue.get("cash", 0) - self.refunds.get("cash", 0)

    @property
    def cash_over_short(self) -> int | None:
        """Counted minus expected: positive over, negative short."""
        expected = self.expected_cash
        if expected is None or self.counted_cash is None:
            return None
        return self.counted_cash - expected

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows, as shown on screen, printed and exported."""

        def money(amount: int) -> str:
            return format_money(amount, self.currency)

        rows = [
            ("Report", self.title),
            ("From", self.start_text or self.start.isoformat()),
            ("To", self.end_text or self.end.isoformat()),
            ("Entries", str(self.entries)),
            ("Exits", str(self.exits)),
        ]
        rows += [(f"Revenue ({m})", money(self.revenue.get(m, 0))) for m in REVENUE_METHODS]
        rows += [(f"Refunds ({m})", money(self.refunds.get(m, 0))) for m in REVENUE_METHODS]
        rows += [("Net revenue", money(self.net_revenue)), ("Waived", money(self.waived))]
        rows += [(f"Overrides by {name}", str(n)) for name, n in sorted(self.overrides.items())]
        if self.float_amount is not None:
            rows.append(("Cash float", money(self.float_amount)))
            rows.append(("Cash expected", money(self.expected_cash or 0)))
        if self.counted_cash is not None and self.cash_over_short is not None:
            rows.append(("Cash counted", money(self.counted_cash)))
            over = self.cash_over_short
            rows.append(("Cash over/short", ("+" if over > 0 else "") + money(over)))
        if self.audit is not None:
            rows.append(("Audit rows", str(self.audit.rows)))
            # As `lotkeeper audit verify --expect ROW:MAC` takes it back.
            rows.append(("Audit head (row:MAC)", f"{self.audit.seq}:{self.audit.short_mac}"))
        return rows

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["item", "value"])
        writer.writerows(self.lines())
        return out.getvalue()


def _amounts(
    session: Session, site: Site, kind: str, start: datetime, end: datetime
) -> Counter[str]:
    rows = session.execute(
        select(Payment.method, func.sum(Payment.amount))
        .where(
            Payment.site_id == site.id,
            Payment.status == "succeeded",
            Payment.kind == kind,
            Payment.created_at >= start,
            Payment.created_at < end,
        )
        .group_by(Payment.method)
    )
    return Counter({method: int(total or 0) for method, total in rows})


def build_report(site: Site, title: str, start: datetime, end: datetime) -> Report:
    """The figures for [start, end), with the audit chain's head as it is
    now (read in the same transaction)."""

    def work(session: Session) -> Report:
        kinds = Counter(
            dict(
                session.execute(
                    select(EventRow.kind, func.count())
                    .where(
                        EventRow.site_id == site.id,
                        EventRow.at >= start,
                        EventRow.at < end,
                        EventRow.kind.in_([EventKind.ENTRY, EventKind.EXIT]),
                    )
                    .group_by(EventRow.kind)
                ).all()
            )
        )
        charges = _amounts(session, site, "charge", start, end)
        refunds = _amounts(session, site, "refund", start, end)
        overrides = {
            str(source).removeprefix("staff:"): int(count)
            for source, count in session.execute(
                select(EventRow.source, func.count())
                .where(
                    EventRow.site_id == site.id,
                    EventRow.at >= start,
                    EventRow.at < end,
                    EventRow.kind == EventKind.OVERRIDE,
                )
                .group_by(EventRow.source)
            )
        }
        return Report(
            title=title,
            start=start,
            end=end,
            start_text=site.describe_time(start, year=True),
            end_text=site.describe_time(end, year=True),
            currency=site.tariff.currency,
            entries=int(kinds.get(EventKind.ENTRY, 0)),
            exits=int(kinds.get(EventKind.EXIT, 0)),
            revenue={m: charges.get(m, 0) for m in REVENUE_METHODS},
            refunds={m: refunds.get(m, 0) for m in REVENUE_METHODS},
            waived=charges.get("waiver", 0) + charges.get("discount", 0),
            overrides=overrides,
            audit=read_audit_head(session, site),
        )

    return site.db.read(work)


def day_report(site: Site, day: date) -> Report:
    """A site-local calendar day (a DST day has 23 or 25 hours)."""
    start = datetime.combine(day, time(), tzinfo=site.zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=site.zone)
    return build_report(site, f"Day {day.isoformat()}", start, end)


@dataclass(frozen=True)
class ShiftInfo:
    id: int
    staff_name: str
    opened_at: datetime
    float_amount: int
    closed_at: datetime | None = None
    counted_amount: int | None = None
    staff_id: int | None = None


def _money(amount: int, what: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidInput("The {what} is a whole number of cents, 0 or more.", what=what)
    return amount


# One write decides each: the unique key (site_id, open_for) allows one open
# shift per person, however many consoles open one at once; closing is
# `UPDATE ... WHERE closed_at IS NULL`, which touches the row once.
_CLOSE_SHIFT = (
    update(Shift)
    .where(Shift.id == bindparam("shift"), Shift.closed_at.is_(None))
    .values(closed_at=bindparam("now"), counted_amount=bindparam("counted"), open_for=None)
)


def _open_shift_id(session: Session, site: Site, staff: Staff) -> int | None:
    return session.scalar(
        select(Shift.id).where(
            Shift.site_id == site.id, Shift.staff_id == staff.id, Shift.closed_at.is_(None)
        )
    )


def open_shift(site: Site, staff: Staff, float_amount: int) -> ShiftInfo:
    """Start `staff`'s shift with a cash float. One open shift per person:
    a second one, even from another console at the same moment, is refused
    with `InvalidInput`."""
    _money(float_amount, "cash float")

    def work(session: Session) -> ShiftInfo:
        # Only for the message: the unique key decides (a racing second
        # insert fails as a duplicate, and the rerun lands here).
        if _open_shift_id(session, site, staff) is not None:
            raise InvalidInput("{name} already has a shift open; close it first.", name=staff.name)
        now = site.clock.now()
        row = Shift(
            site_id=site.id,
            staff_id=staff.id,
            staff_name=staff.name,
            opened_at=now,
            float_amount=float_amount,
            open_for=staff.id,
        )
        session.add(row)
        session.flush()
        record_audit(
            session,
            site,
            staff.actor,
            "shift_opened",
            target=f"shift {row.id}",
            data={"float": float_amount},
            at=now,
        )
        return ShiftInfo(row.id, row.staff_name, now, float_amount)

    return site.db.write(work)


def _info(row: Shift) -> ShiftInfo:
    return ShiftInfo(
        row.id,
        row.staff_name,
        row.opened_at,
        row.float_amount,
        row.closed_at,
        row.counted_amount,
        row.staff_id,
    )


def open_shift_of(site: Site, staff: Staff) -> ShiftInfo | None:
    """`staff`'s open shift, wherever and whenever it was opened (another
    console, before a restart or a lock), or None."""

    def work(session: Session) -> ShiftInfo | None:
        shift_id = _open_shift_id(session, site, staff)
        return None if shift_id is None else _info(session.get_one(Shift, shift_id))

    return site.db.read(work)


def list_shifts(site: Site, *, open_only: bool = False, limit: int = 50) -> list[ShiftInfo]:
    """The newest shifts first (only the open ones with `open_only`)."""
    query = select(Shift).where(Shift.site_id == site.id)
    if open_only:
        query = query.where(Shift.closed_at.is_(None))
    query = query.order_by(Shift.id.desc()).limit(limit)
    return site.db.read(lambda s: [_info(row) for row in s.scalars(query)])


def _close(
    site: Site,
    by: Staff,
    find: Callable[[Session], int | None],
    counted_amount: int,
    nothing_open: NotFound,
) -> Report:
    """Close the shift `find` names, as `by`: one conditional write decides
    (`closed_at IS NULL`), so a second close anywhere gets `NotFound`."""
    _money(counted_amount, "counted cash")

    def work(session: Session) -> ShiftInfo:
        shift_id = find(session)
        now = site.clock.now()
        closed = session.execute(
            _CLOSE_SHIFT, {"shift": shift_id or 0, "now": now, "counted": counted_amount}
        )
        if shift_id is None or rows_touched(closed) != 1:
            raise nothing_open
        row = session.get_one(Shift, shift_id, populate_existing=True)
        record_audit(
            session,
            site,
            by.actor,
            "shift_closed",
            target=f"shift {row.id}",
            reason="" if row.staff_id == by.id else f"closed for {row.staff_name}",
            data={"counted": counted_amount, "staff": row.staff_name},
            at=now,
        )
        return _info(row)

    shift = site.db.write(work)
    assert shift.closed_at is not None
    report = build_report(
        site, f"Shift {shift.id} ({shift.staff_name})", shift.opened_at, shift.closed_at
    )
    return replace(report, float_amount=shift.float_amount, counted_cash=shift.counted_amount)


def close_shift(site: Site, staff: Staff, counted_amount: int) -> Report:
    """Close `staff`'s open shift with the cash counted in the drawer; its
    report, with cash over or short. Closed once: a second close (another
    console, a double tap) gets `NotFound`."""
    return _close(
        site,
        staff,
        lambda session: _open_shift_id(session, site, staff),
        counted_amount,
        NotFound("{name} has no shift open.", name=staff.name),
    )


def close_shift_by_id(site: Site, supervisor: Staff, shift_id: int, counted_amount: int) -> Report:
    """A supervisor closes shift `shift_id`, whoever opened it (an attendant
    who left, or was disabled, with the shift open), with the cash counted;
    its report. Raises `NotAllowed` for anyone but a supervisor, `NotFound`
    when the shift is not open (closed meanwhile, or no such shift)."""
    if not supervisor.supervisor:
        raise NotAllowed("Only a supervisor may close another's shift; ask one to sign in.")

    def find(session: Session) -> int | None:
        return session.scalar(
            select(Shift.id).where(Shift.site_id == site.id, Shift.id == shift_id)
        )

    return _close(
        site,
        supervisor,
        find,
        counted_amount,
        NotFound("Shift {shift} is not open.", shift=shift_id),
    )
