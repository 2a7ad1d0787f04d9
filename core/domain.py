"""Plain values that services accept and return. No database, no screens."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from core.errors import InvalidInput
from core.payments.provider import PaymentStatus

T = TypeVar("T")


class Size(enum.IntEnum):
    """Spot and car sizes, ordered: a car fits a spot of its size or larger."""

    SMALL = 1
    MEDIUM = 2
    LARGE = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Size | str | int) -> Size:
        if isinstance(value, Size):
            return value
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        raise InvalidInput(
            "Unknown car size {value!r}: choose small, medium or large.", value=value
        )

    def fits_in(self, spot_size: Size) -> bool:
        return spot_size >= self


class Need(enum.StrEnum):
    """A spot feature a driver may ask for. Flagged spots go to drivers who
    ask for them; others get one only when no ordinary fitting spot is free."""

    ACCESSIBLE = "accessible"
    EV = "ev"

    @property
    def label(self) -> str:
        return "EV charging" if self is Need.EV else "accessible"

    @classmethod
    def parse(cls, value: Need | str | None) -> Need | None:
        """None (or an empty string) for a driver who asks for nothing."""
        if value is None or isinstance(value, Need):
            return value
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise InvalidInput(
            "Unknown spot need {value!r}: choose accessible or ev, or none.", value=value
        )


class ClaimKind(enum.StrEnum):
    HOLD = "hold"
    RESERVATION = "reservation"
    STAY = "stay"


class SpotStatus(enum.StrEnum):
    FREE = "free"
    HELD = "held"
    RESERVED = "reserved"
    OCCUPIED = "occupied"
    OVERSTAY = "overstay"
    OUT_OF_SERVICE = "out_of_service"


class EventKind(enum.StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    REFUSED_FULL = "refused_full"
    INVALID_TICKET = "invalid_ticket"
    LOT_LOADED = "lot_loaded"
    KEY_ROTATED = "key_rotated"
    KEY_RETIRED = "key_retired"
    PAYMENT = "payment"
    PAYMENT_FAILED = "payment_failed"
    REFUND = "refund"
    HOLD = "hold"
    HOLD_EXPIRED = "hold_expired"
    RESERVATION_CONFIRMED = "reservation_confirmed"
    RESERVATION_CANCELLED = "reservation_cancelled"
    CHECK_IN = "check_in"
    CHECK_IN_REFUSED = "check_in_refused"
    NO_SHOW = "no_show"
    OVERSTAY = "overstay"
    DEVICE_FAULT = "device_fault"
    DEVICE_RECOVERED = "device_recovered"
    OVERRIDE = "override"


_PLATE_RE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,14}$")


def normalize_plate(plate: str | None) -> str | None:
    """Upper-case, trim and validate a licence plate; `None` or blank means no plate."""
    if plate is None:
        return None
    cleaned = " ".join(plate.upper().split())
    if not cleaned:
        return None
    if not _PLATE_RE.match(cleaned):
        raise InvalidInput("A licence plate has 1 to 15 letters, digits, spaces or dashes.")
    return cleaned


@dataclass(frozen=True)
class Ticket:
    """What a driver gets at entry: printed as QR (code) and text (short_code)."""

    id: int
    code: str
    short_code: str
    spot_label: str
    level: str
    size: Size
    spot_size: Size
    plate: str | None
    entered_at: datetime
    max_stay_until: datetime


@dataclass(frozen=True)
class ExitResult:
    ticket_id: int
    spot_label: str
    level: str
    entered_at: datetime
    exited_at: datetime

    @property
    def duration_minutes(self) -> int:
        return int((self.exited_at - self.entered_at).total_seconds() // 60)


@dataclass(frozen=True)
class SizeAvailability:
    """Counts for the spots of one size. free + occupied + held + reserved +
    out_of_service == total. `free_fitting` counts free spots this size of car
    may use (its own size and larger); `free_fitting_accessible` and
    `free_fitting_ev` those of them with that feature (what a driver who asks
    for one can get)."""

    size: Size
    total: int
    free: int
    occupied: int
    held: int
    reserved: int
    out_of_service: int
    free_fitting: int
    free_fitting_accessible: int = 0
    free_fitting_ev: int = 0

    def can_enter_with(self, need: str | None) -> bool:
        """Whether a driver with `need` (None: any spot) can get a spot now."""
        if need == "accessible":
            return self.free_fitting_accessible > 0
        if need == "ev":
            return self.free_fitting_ev > 0
        return self.free_fitting > 0

    @property
    def can_enter(self) -> bool:
        return self.free_fitting > 0


@dataclass(frozen=True)
class Availability:
    at: datetime
    sizes: tuple[SizeAvailability, ...]

    def for_size(self, size: Size | str) -> SizeAvailability:
        wanted = Size.parse(size)
        return next(s for s in self.sizes if s.size == wanted)

    @property
    def total(self) -> int:
        return sum(s.total for s in self.sizes)

    @property
    def free(self) -> int:
        return sum(s.free for s in self.sizes)


@dataclass(frozen=True)
class SpotState:
    spot_id: int
    label: str
    level: str
    size: Size
    accessible: bool
    ev: bool
    status: SpotStatus
    ticket_id: int | None = None
    plate: str | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    kind: str
    message: str
    source: str
    spot_label: str | None = None
    ticket_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayoutResult:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class Vehicle:
    plate: str
    size: Size


class PaymentPurpose(enum.StrEnum):
    STAY = "stay"
    LOST_TICKET = "lost_ticket"
    RESERVATION = "reservation"


@dataclass(frozen=True)
class Payment:
    """A ledger row: a charge or a refund, and where it stands."""

    id: int
    kind: str  # "charge" or "refund"
    purpose: str
    amount: int  # minor units
    currency: str
    status: PaymentStatus
    method: str  # "card" or "cash"
    provider: str
    simulated: bool
    created_at: datetime
    settled_at: datetime | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    failure_code: str | None = None
    message: str | None = None  # why it failed, fit for a driver
    reader_message: str | None = None  # live reader status while pending
    stay_id: int | None = None
    reservation_id: int | None = None
    account_id: int | None = None
    refund_of: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is PaymentStatus.SUCCEEDED

    @property
    def final(self) -> bool:
        return self.status.final


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a newest-first listing."""

    items: tuple[T, ...]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))
