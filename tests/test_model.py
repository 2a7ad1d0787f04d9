"""A model-based test: Hypothesis drives the engine through random sequences
of walk-ins, holds, payments (approved and declined), confirmations,
check-ins, stay payments, exits, cancellations, no-shows and clock moves, and
after every step checks what must always hold:

- no two live claims on one spot overlap, and no spot has two cars in it;
- cars inside never outnumber the spots of their size;
- a walk-in is refused only when no fitting spot is free;
- every confirmed reservation still has a live claim on an in-service spot;
- the ledger adds up: what each stay and reservation was paid is the sum of
  its succeeded charges minus its succeeded refunds, and a confirmed
  reservation was paid exactly its price.

`test_the_model_finds_planted_bugs` plants two bugs (a claim inserted without
its overlap check; a payment's effect applied twice) and requires the machine
to find each, so the number of examples CI runs is known to be enough.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SiteFactory, make_layout, settings_for
from helpers import overlapping_claims
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, func, select

from core import services as lk
from core.clock import FixedClock
from core.domain import ClaimKind
from core.errors import (
    LotFull,
    NothingToPay,
    PaymentRequired,
    ReservationError,
    TicketAlreadyUsed,
    TicketError,
)
from core.payments.provider import PaymentStatus
from core.services import claims, payments
from core.services.layout import load_layout
from core.services.reservations import ReservationState
from core.site import Site, open_site
from core.storage.models import (
    Claim,
    EventRow,
    Payment,
    Reservation,
    SignInThrottle,
    SimulatedCharge,
    Spot,
    Stay,
)

MAX_STAY = 240
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SIZES = st.sampled_from(["small", "medium", "large"])
PICK = st.integers(min_value=0, max_value=1000)
CARDS = st.sampled_from([None, None, None, "tok_declined"])


def reset(site: Site) -> None:
    """Empty the lot between examples (much faster than a new database)."""

    def work(session: Any) -> None:
        for table in (Stay, Payment, Reservation, Claim, EventRow, SimulatedCharge, SignInThrottle):
            session.execute(delete(table))

    site.db.write(work)


def machine_for(site: Site, clock: FixedClock, account_id: int) -> type[RuleBasedStateMachine]:
    class LotMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            reset(site)
            clock.set(START)
            self.inside: list[str] = []  # ticket codes of cars in the lot
            self.bookings: list[int] = []  # reservation ids
            self.refunded: dict[int, int] = {}  # reservation id -> refund on cancel

        def _pick(self, items: list[Any], index: int) -> Any:
            return items[index % len(items)] if items else None

        @rule(size=SIZES)
        def walk_in(self, size: str) -> None:
            try:
                self.inside.append(lk.enter(site, size, kiosk="model").code)
            except LotFull:
                assert lk.availability(site).for_size(size).free_fitting == 0

        @rule(size=SIZES, start=st.integers(0, 40), hours=st.integers(1, 4))
        def hold(self, size: str, start: int, hours: int) -> None:
            begin = clock.now() + timedelta(minutes=15 * start)
            try:
                booked = lk.hold(site, account_id, size, begin, begin + timedelta(hours=hours))
            except ReservationError as error:
                assert error.code == "no_spot"
                return
            self.bookings.append(booked.id)

        @rule(index=PICK, card=CARDS)
        def pay_reservation(self, index: int, card: str | None) -> None:
            booking = self._pick(self.bookings, index)
            if booking is None:
                return
            try:
                paying = lk.pay_reservation(site, booking, card=card)
            except ReservationError:
                return
            payments.wait_for_payment(site, paying.id, sleep=lambda _: None)

        @rule(index=PICK)
        def confirm(self, index: int) -> None:
            booking = self._pick(self.bookings, index)
            if booking is not None:
                with contextlib.suppress(ReservationError):
                    lk.confirm_reservation(site, booking)

        @rule(index=PICK)
        def check_in(self, index: int) -> None:
            booking = self._pick(self.bookings, index)
            if booking is None:
                return
            try:
                ticket = lk.check_in(site, lk.get_reservation(site, booking).code)
            except (ReservationError, TicketError):
                return
            self.inside.append(ticket.code)

        @rule(index=PICK, card=CARDS)
        def pay_stay(self, index: int, card: str | None) -> None:
            code = self._pick(self.inside, index)
            if code is None:
                return
            try:
                paying = lk.pay_ticket(site, code, card=card)
            except NothingToPay:
                return
            payments.wait_for_payment(site, paying.id, sleep=lambda _: None)

        @rule(index=PICK)
        def leave(self, index: int) -> None:
            code = self._pick(self.inside, index)
            if code is None:
                return
            try:
                lk.exit(site, code)
            except PaymentRequired:
                return
            except TicketAlreadyUsed:
                pass
            self.inside.remove(code)

        @rule(index=PICK)
        def cancel(self, index: int) -> None:
            booking = self._pick(self.bookings, index)
            if booking is None:
                return
            try:
                result = lk.cancel_reservation(site, booking)
            except ReservationError:
                return
            self.refunded[booking] = result.refund_amount

        @rule()
        def sweep(self) -> None:
            lk.expire_holds(site)
            lk.release_no_shows(site)
            lk.note_overstays(site)

        @rule(minutes=st.sampled_from([1, 4, 6, 20, 45, 90, 240]))
        def advance(self, minutes: int) -> None:
            clock.advance(minutes=minutes)

        @invariant()
        def claims_never_overlap_and_cars_fit(self) -> None:
            assert overlapping_claims(site) == []

            def counts(session: Any) -> tuple[list[Any], list[Any], dict[int, int]]:
                doubles = session.execute(
                    select(Stay.spot_id)
                    .where(Stay.exited_at.is_(None))
                    .group_by(Stay.spot_id)
                    .having(func.count() > 1)
                ).all()
                per_size = session.execute(
                    select(Spot.size, func.count())
                    .join(Stay, Stay.spot_id == Spot.id)
                    .where(Stay.exited_at.is_(None))
                    .group_by(Spot.size)
                ).all()
                totals = dict(
                    session.execute(select(Spot.size, func.count()).group_by(Spot.size)).all()
                )
                return doubles, per_size, totals

            doubles, per_size, totals = site.db.read(counts)
            assert doubles == []
            for size, cars in per_size:
                assert cars <= totals[size]

        @invariant()
        def confirmed_reservations_keep_their_spot(self) -> None:
            now = clock.now()

            def rows(session: Any) -> list[Any]:
                return session.execute(
                    select(Reservation, Claim, Spot)
                    .join(Claim, Claim.id == Reservation.claim_id)
                    .join(Spot, Spot.id == Reservation.spot_id)
                    .where(
                        Reservation.state == ReservationState.CONFIRMED.value,
                        Reservation.ends_at > now,
                    )
                ).all()

            for reservation, claim, spot in site.db.read(rows):
                assert claim.cancelled_at is None and claim.expires_at is None
                assert claim.kind == ClaimKind.RESERVATION
                assert claim.spot_id == reservation.spot_id
                assert (claim.starts_at, claim.ends_at) == (
                    reservation.starts_at,
                    reservation.ends_at,
                )
                assert not spot.out_of_service and not spot.removed

        @invariant()
        def the_ledger_adds_up(self) -> None:
            def read(session: Any) -> tuple[list[Any], list[Any], list[Any]]:
                done = session.execute(
                    select(
                        Payment.kind,
                        Payment.stay_id,
                        Payment.reservation_id,
                        Payment.amount,
                    ).where(Payment.status == PaymentStatus.SUCCEEDED.value)
                ).all()
                return (
                    done,
                    session.execute(select(Stay.id, Stay.paid_amount)).all(),
                    session.execute(
                        select(Reservation.id, Reservation.state, Reservation.price)
                    ).all(),
                )

            done, stays, bookings = site.db.read(read)
            net_stay: dict[int, int] = {}
            net_booking: dict[int, int] = {}
            for kind, stay_id, booking_id, amount in done:
                sign = 1 if kind == "charge" else -1
                if stay_id is not None:
                    net_stay[stay_id] = net_stay.get(stay_id, 0) + sign * amount
                elif booking_id is not None:
                    net_booking[booking_id] = net_booking.get(booking_id, 0) + sign * amount
            for stay_id, paid in stays:
                assert paid == net_stay.get(stay_id, 0)
            for booking_id, state, price in bookings:
                net = net_booking.get(booking_id, 0)
                if state in ("confirmed", "checked_in", "no_show"):
                    assert net == price
                elif state == "cancelled" and booking_id in self.refunded:
                    assert net in (0, price - self.refunded[booking_id])
                elif state in ("held", "expired"):
                    assert net == 0

    return LotMachine


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def open_model_site(make_site: SiteFactory) -> tuple[Site, int]:
    site = make_site(make_layout(small=2, medium=2, large=1), max_stay_minutes=MAX_STAY)
    account_id = lk.create_account(site, "Model", "model@example.com", "model password 1").id
    return site, account_id


@pytest.mark.slow
def test_the_engine_keeps_its_promises_under_any_sequence(
    make_site: SiteFactory, clock: FixedClock
) -> None:
    site, account_id = open_model_site(make_site)
    run_state_machine_as_test(
        lambda: machine_for(site, clock, account_id)(), settings=MODEL_SETTINGS
    )


PlantedBug = Callable[[pytest.MonkeyPatch], None]


def _plant_overstay_blind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allocation forgets that an overstaying car still stands in its spot."""

    def busy_without_overstays(
        session: Any, site_id: str, start: datetime, end: datetime, now: datetime
    ) -> tuple[set[int], set[int]]:
        row = session.execute(
            claims._BUSY, {"site": site_id, "start": start, "end": end, "now": now}
        ).one()
        return claims._ids(row[0]), claims._ids(row[1])

    monkeypatch.setattr(claims, "busy_spots", busy_without_overstays)


def _plant_double_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    original = payments._apply_charge

    def twice(*args: Any) -> str | None:
        original(*args)
        return original(*args)

    monkeypatch.setattr(payments, "_apply_charge", twice)


@pytest.mark.slow
@pytest.mark.parametrize("plant", [_plant_overstay_blind, _plant_double_effect])
def test_the_model_finds_planted_bugs(
    plant: PlantedBug, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once, on SQLite: it is the model's reach that is being checked.
    settings_ = settings_for(
        f"sqlite:///{tmp_path / 'planted.sqlite3'}", tmp_path, max_stay_minutes=MAX_STAY
    )
    opened = open_site(settings_, clock=clock, rng=random.Random(3))
    load_layout(opened, make_layout(small=2, medium=2, large=1), source="test")
    site, account_id = open_model_site(lambda *a, **k: opened)
    plant(monkeypatch)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            lambda: machine_for(site, clock, account_id)(),
            # Found is enough: no shrinking, one bug reported.
            settings=settings(
                MODEL_SETTINGS,
                phases=[Phase.generate],
                report_multiple_bugs=False,
                print_blob=False,
            ),
        )
