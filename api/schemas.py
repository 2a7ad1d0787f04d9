"""What the API reads and writes, as pydantic models: the OpenAPI document
is generated from these, so it says exactly what the server does."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.domain import Account, Availability, Payment, SizeAvailability, SpotState
from core.services.reservations import Reservation
from core.services.stays import StayStatus

CarSize = Literal["small", "medium", "large"]
SpotNeed = Literal["accessible", "ev"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """Every error: a stable code to branch on and a message for people."""

    code: str = Field(examples=["lot_full"])
    message: str
    field: str | None = Field(default=None, description="The input at fault, for 422.")


class NewUser(Strict):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=8, max_length=256)


class User(BaseModel):
    id: int
    name: str
    email: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> User:
        return cls(
            id=account.id, name=account.name, email=account.email, created_at=account.created_at
        )


class Credentials(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class SessionToken(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    account_id: int
    expires_at: datetime


class SizeCounts(BaseModel):
    size: CarSize
    total: int
    free: int
    free_fitting: int = Field(description="Free spots a car of this size may use (it or larger).")
    free_fitting_accessible: int = Field(
        default=0, description="Of those, accessible spots (what `need: accessible` can get)."
    )
    free_fitting_ev: int = Field(
        default=0, description="Of those, EV charging spots (what `need: ev` can get)."
    )
    occupied: int
    held: int
    reserved: int
    out_of_service: int


class FreeSpot(BaseModel):
    label: str
    level: str
    size: CarSize
    accessible: bool = False
    ev: bool = False


class Spots(BaseModel):
    at: datetime
    sizes: list[SizeCounts]
    free_spots: list[FreeSpot] = Field(
        description="Free spots (fitting `car_size` when given), by level and label."
    )

    @classmethod
    def of(cls, availability: Availability, spots: list[SpotState]) -> Spots:
        return cls(
            at=availability.at,
            sizes=[counts(s) for s in availability.sizes],
            free_spots=[
                FreeSpot(
                    label=s.label,
                    level=s.level,
                    size=s.size.label,  # type: ignore[arg-type]
                    accessible=s.accessible,
                    ev=s.ev,
                )
                for s in spots
            ],
        )


def counts(s: SizeAvailability) -> SizeCounts:
    return SizeCounts(
        size=s.size.label,  # type: ignore[arg-type]
        total=s.total,
        free=s.free,
        free_fitting=s.free_fitting,
        free_fitting_accessible=s.free_fitting_accessible,
        free_fitting_ev=s.free_fitting_ev,
        occupied=s.occupied,
        held=s.held,
        reserved=s.reserved,
        out_of_service=s.out_of_service,
    )


class ReserveRequest(Strict):
    car_size: CarSize
    start: AwareDatetime = Field(description="With its time zone, e.g. 2026-11-23T09:00:00Z.")
    end: AwareDatetime
    plate: str | None = Field(default=None, max_length=16)
    need: SpotNeed | None = Field(
        default=None,
        description="Ask for an accessible or EV charging spot: only such a spot is held. "
        "Without it, those spots are held only when no ordinary fitting spot is free.",
    )


class ReservationOut(BaseModel):
    id: int
    state: Literal["held", "confirmed", "checked_in", "expired", "cancelled", "no_show"]
    car_size: CarSize
    spot: str
    level: str
    starts_at: datetime
    ends_at: datetime
    hold_expires_at: datetime
    price: int = Field(description="In minor units (cents).")
    currency: str
    code: str = Field(description="The signed code the entry kiosk scans (its QR).")
    short_code: str = Field(description="What a driver types at the kiosk.")
    plate: str | None
    need: SpotNeed | None = Field(default=None, description="The spot feature asked for.")

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(
            id=r.id,
            state=r.state.value,
            car_size=r.size.label,  # type: ignore[arg-type]
            spot=r.spot_label,
            level=r.level,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            hold_expires_at=r.hold_expires_at,
            price=r.price,
            currency=r.currency,
            code=r.code,
            short_code=r.short_code,
            plate=r.plate,
            need=r.need.value if r.need else None,
        )


class PayRequest(Strict):
    card: str | None = Field(
        default=None,
        max_length=64,
        description="Simulated provider only: a test card token such as tok_visa or "
        "tok_declined (default tok_visa).",
    )
    payment_intent_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^pi_[A-Za-z0-9_]+$",
        description="Stripe: a PaymentIntent the client confirmed for the reservation's price.",
    )


class PaymentOut(BaseModel):
    id: int
    kind: Literal["charge", "refund"]
    purpose: str
    amount: int = Field(description="In minor units (cents).")
    currency: str
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    method: str
    simulated: bool
    created_at: datetime
    card_brand: str | None
    card_last4: str | None
    message: str | None
    reservation_id: int | None
    stay_id: int | None

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        return cls(
            id=p.id,
            kind=p.kind,  # type: ignore[arg-type]
            purpose=p.purpose,
            amount=p.amount,
            currency=p.currency,
            status=p.status.value,
            method=p.method,
            simulated=p.simulated,
            created_at=p.created_at,
            card_brand=p.card_brand,
            card_last4=p.card_last4,
            message=p.message,
            reservation_id=p.reservation_id,
            stay_id=p.stay_id,
        )


class Paid(BaseModel):
    reservation: ReservationOut
    payment: PaymentOut


class Cancelled(BaseModel):
    reservation: ReservationOut
    refund_amount: int
    refund: PaymentOut | None


class StayOut(BaseModel):
    ticket_id: int
    spot: str
    level: str
    car_size: CarSize
    plate: str | None
    entered_at: datetime
    due: int = Field(description="What must be paid to leave now, in minor units.")
    paid_until: datetime | None

    @classmethod
    def of(cls, s: StayStatus) -> StayOut:
        return cls(
            ticket_id=s.ticket_id,
            spot=s.spot_label,
            level=s.level,
            car_size=s.size.label,  # type: ignore[arg-type]
            plate=s.plate,
            entered_at=s.entered_at,
            due=s.due,
            paid_until=s.paid_until,
        )


class TicketIn(Strict):
    code: str = Field(
        min_length=1,
        max_length=200,
        description="The ticket's code: the full code in its QR, or the short code "
        "printed under it (e.g. 42-ABCDEF).",
    )


class AccountSpotsOut(BaseModel):
    reservations: list[ReservationOut]
    stays: list[StayOut]


class PaymentsPage(BaseModel):
    items: list[PaymentOut]
    page: int
    per_page: int
    total: int
    pages: int
