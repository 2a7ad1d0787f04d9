"""The tariff: what a stay or a reservation costs, and what a cancellation
gives back. Pure arithmetic on values; the only I/O is reading the TOML file
(`assets/tariff.toml` is the demo garage's, commented for operators).

Money is an `int` of minor units (cents for usd, yen for jpy) with a lower-case
ISO currency code, never a float: fractions of a cent cannot be charged, and
float sums drift.

Time is real elapsed time. Every datetime must be timezone-aware and is
converted to UTC before any arithmetic, because Python subtracts and compares
two datetimes sharing one `ZoneInfo` by their wall clocks: 01:30 EST to 03:30
EDT would otherwise bill 2 h for an hour's stay. A zone is only ever used to
print local times for the driver.

Parking, after the grace period, is billed from entry per started increment.
One increment costs `rate_per_hour * increment_minutes / 60`, rounded *up* to
a whole minor unit (so an odd increment never undercharges by a fraction of a
cent). Each started 24 h of real time is capped at `daily_max`: the increments
restart at each 24 h mark, so a full day costs `min(day_fee, daily_max)` and
the last, partial day `min(fee of the part, daily_max)`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, Union
from zoneinfo import ZoneInfo

from core.domain import Size
from core.errors import ConfigError, InvalidInput

LostTicketRule = Literal["flat", "actual", "greater"]

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)
# A longer booking is almost certainly a typo in a date, not a real request.
MAX_RESERVATION = timedelta(days=31)

_RULES: tuple[LostTicketRule, ...] = ("flat", "actual", "greater")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
# Minor units as Stripe counts them, since amounts go to the card provider as is.
_ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utc(when: datetime, name: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {when!r}")
    return when.astimezone(UTC)


def _started(span: timedelta, unit: timedelta) -> int:
    """How many `unit`s have been started in `span` (0 for an empty span)."""
    if span <= timedelta(0):
        return 0
    return -(-span // unit)


def format_duration(span: timedelta) -> str:
    """'2 h 15 min', '45 min', '26 h': started minutes, so 15 min 1 s reads
    '16 min' and the driver sees why the grace no longer applies."""
    minutes = _started(span, _MINUTE)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or not hours:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def _local(local: datetime) -> str:
    """'Sun 29 Mar 01:30' (a time already in the site's zone), in English
    whatever the machine's locale."""
    day, month = _DAY_NAMES[local.weekday()], _MONTH_NAMES[local.month - 1]
    return f"{day} {local.day} {month} {local:%H:%M}"


def format_money(amount: int, currency: str) -> str:
    """Minor units as a driver reads them: "$12.50", "-$2.00", "€3.00",
    "£1.05", "¥500" (jpy and other zero-decimal currencies), and for other
    currencies the code after the number: "12.50 CHF". Thousands are
    grouped with commas ("$1,234.00")."""
    code = currency.lower()
    places = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    whole, fraction = divmod(abs(amount), 10**places)
    number = f"{whole:,}" + (f".{fraction:0{places}d}" if places else "")
    sign = "-" if amount < 0 else ""
    symbol = _SYMBOLS.get(code)
    if symbol is not None:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {code.upper()}"


@dataclass(frozen=True)
class StayFacts:
    """What the tariff needs to know about a stay."""

    size: Size
    entered_at: datetime  # timezone-aware (UTC in practice)
    max_stay_until: datetime
    paid: int = 0  # minor units already paid for this stay
    lost_ticket: bool = False
    # A reservation's stay: prepaid until its window ends, so time is billed
    # from here (the window's end) and the overstay fee is due once past
    # `max_stay_until` (that same end). `entered_at` stays the real entry.
    billed_from: datetime | None = None

    def __post_init__(self) -> None:
        _utc(self.entered_at, "entered_at")
        _utc(self.max_stay_until, "max_stay_until")
        if self.billed_from is not None:
            _utc(self.billed_from, "billed_from")
        if self.paid < 0:
            raise ValueError(f"paid must not be negative, got {self.paid}")


@dataclass(frozen=True)
class Money:
    """An amount (minor units) in a currency, as a value of a `Phrase`."""

    amount: int
    currency: str

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


# What a phrase may say: a nested phrase, money, a car size, a duration, a
# site-local time, a count or a plain text.
PhraseValue = Union["Phrase", Money, Size, timedelta, datetime, int, str]


def _english(value: PhraseValue) -> str:
    if isinstance(value, Size):
        return value.label
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return _local(value)
    return str(value)


@dataclass(frozen=True)
class Phrase:
    """A text given as an English `template` and its typed `values`, so
    that a screen in another language translates the template and words
    each value its own way (a time, a size); `str()` is the English text."""

    template: str
    values: Mapping[str, PhraseValue] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        if not self.values:
            return self.template
        return self.template.format(**{k: _english(v) for k, v in self.values.items()})


@dataclass(frozen=True)
class QuoteLine:
    """One line of a quote or receipt. `amount` is in minor units and is
    negative for money already paid. `label` is the English text (the API
    and English screens show it); `template` and `values` are the same
    line as a `Phrase` to translate (`template` is `label` when not given).
    Two lines are equal when they read and cost the same."""

    label: str
    amount: int
    template: str = field(default="", compare=False)
    values: Mapping[str, PhraseValue] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.template:
            object.__setattr__(self, "template", self.label)

    @classmethod
    def of(cls, phrase: Phrase, amount: int) -> QuoteLine:
        """The line saying `phrase`, its label the English text."""
        return cls(str(phrase), amount, phrase.template, phrase.values)

    @property
    def phrase(self) -> Phrase:
        return Phrase(self.template, self.values)


# The parking line and the same stay inside a lost-ticket line, by (a
# reservation's stay, with the entry time). Whole texts, to translate as such.
_PARKING = {
    (False, False): "Parking {duration} ({size} car)",
    (False, True): "Parking {duration} ({size} car), entered {entered}",
    (True, False): "Parking {duration} after the reservation ended ({size} car)",
    (True, True): "Parking {duration} after the reservation ended ({size} car), entered {entered}",
}
_STAY = {
    (False, False): "parking {duration} ({size} car)",
    (False, True): "parking {duration} ({size} car), entered {entered}",
    (True, False): "parking {duration} after the reservation ended ({size} car)",
    (True, True): "parking {duration} after the reservation ended ({size} car), entered {entered}",
}


@dataclass(frozen=True)
class Quote:
    """What a stay (or a reservation) costs as of a moment. The lines add up
    to `total - paid`; `due` never goes below zero."""

    currency: str
    total: int
    paid: int
    due: int
    lines: tuple[QuoteLine, ...]
    parking: int = 0  # the parking (or lost-ticket) part of `total`
    overstay: int = 0  # the overstay fee part of `total` (0 within the max stay)

    @property
    def text_lines(self) -> list[str]:
        """One string per line, label then amount, amounts right-aligned in a
        column, ready for a receipt or a screen. Total and due are not added:
        the caller words those for its own screen."""
        amounts = [format_money(line.amount, self.currency) for line in self.lines]
        label_width = max((len(line.label) for line in self.lines), default=0)
        amount_width = max((len(text) for text in amounts), default=0)
        return [
            f"{line.label:<{label_width}}  {text:>{amount_width}}"
            for line, text in zip(self.lines, amounts, strict=True)
        ]


@dataclass(frozen=True)
class Tariff:
    """A garage's prices and time allowances. Build one with `load_tariff`,
    which checks every value; the methods assume a valid tariff."""

    currency: str
    grace: timedelta
    increment: timedelta
    exit_grace: timedelta
    rate_per_hour: Mapping[Size, int]
    daily_max: Mapping[Size, int]
    lost_ticket_fee: int
    lost_ticket_rule: LostTicketRule
    overstay_fee: int
    reservation_per_hour: Mapping[Size, int]
    check_in_early: timedelta
    no_show_grace: timedelta
    full_refund_before: timedelta
    late_cancel_refund_percent: int

    def __post_init__(self) -> None:
        # Guards the arithmetic against a hand-built tariff; files get
        # friendlier checks in `parse_tariff`.
        if not _MINUTE <= self.increment <= _DAY:
            raise ValueError(f"increment must be 1 min to 24 h, got {self.increment}")
        for name in ("rate_per_hour", "daily_max", "reservation_per_hour"):
            if set(getattr(self, name)) != set(Size):
                raise ValueError(f"{name} needs a price for every size")

    def increment_price(self, size: Size) -> int:
        """Price of one billing increment, rounded up to a whole minor unit."""
        return -(-self.rate_per_hour[size] * self.increment // _HOUR)

    def _run_fee(self, size: Size, span: timedelta) -> int:
        return _started(span, self.increment) * self.increment_price(size)

    def parking_fee(self, size: Size, elapsed: timedelta) -> int:
        """The parking fee for `elapsed` real time since entry: free up to and
        including the grace period, then per started increment from entry,
        capped at `daily_max` for each started 24 h."""
        if elapsed <= self.grace:
            return 0
        full_days, rest = divmod(elapsed, _DAY)
        cap = self.daily_max[size]
        return full_days * min(self._run_fee(size, _DAY), cap) + min(self._run_fee(size, rest), cap)

    def quote(self, stay: StayFacts, at: datetime, zone: ZoneInfo | None = None) -> Quote:
        """What `stay` costs if the driver pays at `at`: parking (or the lost
        ticket charge), the overstay fee once the max stay is passed, and what
        was already paid. A reservation's stay (`billed_from`) pays parking
        from its window's end and the overstay fee once past it. `zone` only
        adds the local (real) entry time to the parking line. A moment before
        entry (kiosk clocks a second apart) costs nothing."""
        entered = stay.entered_at.astimezone(UTC)
        billed = (stay.billed_from or stay.entered_at).astimezone(UTC)
        now = _utc(at, "at")
        elapsed = max(now - billed, timedelta(0))
        parking = self.parking_fee(stay.size, elapsed)
        reserved = stay.billed_from is not None
        values: dict[str, PhraseValue] = {"duration": elapsed, "size": stay.size}
        if zone is not None:
            values["entered"] = entered.astimezone(zone)
        stay_phrase = Phrase(_STAY[reserved, zone is not None], values)

        lines: list[QuoteLine] = []
        if not stay.lost_ticket:
            line = Phrase(_PARKING[reserved, zone is not None], values)
            if elapsed <= self.grace and self.grace > timedelta(0):
                line = Phrase(
                    "{parking}: free for the first {grace}", {"parking": line, "grace": self.grace}
                )
            lines.append(QuoteLine.of(line, parking))
        elif self.lost_ticket_rule == "flat":
            lines.append(QuoteLine("Lost ticket fee (flat rate)", self.lost_ticket_fee))
        elif self.lost_ticket_rule == "actual":
            line = Phrase(
                "Lost ticket, charged by time from the entry log: {stay}", {"stay": stay_phrase}
            )
            lines.append(QuoteLine.of(line, parking))
        elif self.lost_ticket_fee >= parking:
            line = Phrase(
                "Lost ticket fee ({stay} would be {parking})",
                {"stay": stay_phrase, "parking": self._in_money(parking)},
            )
            lines.append(QuoteLine.of(line, self.lost_ticket_fee))
        else:
            line = Phrase(
                "Lost ticket, charged by time from the entry log (more than the {fee} fee): {stay}",
                {"fee": self._in_money(self.lost_ticket_fee), "stay": stay_phrase},
            )
            lines.append(QuoteLine.of(line, parking))

        max_stay_until = stay.max_stay_until.astimezone(UTC)
        overstay = 0
        if now > max_stay_until:
            overstay = self.overstay_fee
            if not reserved:
                line = Phrase("Overstay fee (over {over})", {"over": max_stay_until - entered})
            elif zone is not None:
                line = Phrase(
                    "Overstay fee (past the reservation's end at {end})",
                    {"end": max_stay_until.astimezone(zone)},
                )
            else:
                line = Phrase("Overstay fee (past the reservation's end)")
            lines.append(QuoteLine.of(line, overstay))

        total = sum(line.amount for line in lines)
        if stay.paid:
            lines.append(QuoteLine("Already paid", -stay.paid))
        return Quote(
            self.currency,
            total,
            stay.paid,
            max(total - stay.paid, 0),
            tuple(lines),
            parking=total - overstay,
            overstay=overstay,
        )

    def quote_reservation(self, size: Size, start: datetime, end: datetime) -> Quote:
        """The price of reserving a `size` spot from `start` to `end`: per
        started hour of the window. Raises `InvalidInput` for a window that
        does not end after it starts or is longer than 31 days."""
        window = _utc(end, "end") - _utc(start, "start")
        if window <= timedelta(0):
            raise InvalidInput("A reservation must end after it starts.")
        if window > MAX_RESERVATION:
            raise InvalidInput("A reservation can be at most 31 days long.")
        hours = _started(window, _HOUR)
        per_hour = self.reservation_per_hour[size]
        price = hours * per_hour
        values: dict[str, PhraseValue] = {
            "duration": window,
            "size": size,
            "rate": self._in_money(per_hour),
        }
        if window == hours * _HOUR:
            line = Phrase("Reservation {duration} ({size} car) at {rate} an hour", values)
        else:
            line = Phrase(
                "Reservation {duration} ({size} car), billed as {hours} h at {rate} an hour",
                values | {"hours": hours},
            )
        return Quote(self.currency, price, 0, price, (QuoteLine.of(line, price),))

    def cancel_refund(self, price: int, start: datetime, at: datetime) -> int:
        """What a reservation costing `price` gets back when cancelled at `at`:
        all of it at least `full_refund_before` the start, the late-cancel
        share (rounded down to a whole minor unit) until the start, nothing
        once it has started."""
        if price < 0:
            raise ValueError(f"price must not be negative, got {price}")
        start_utc, now = _utc(start, "start"), _utc(at, "at")
        if now <= start_utc - self.full_refund_before:
            return price
        if now < start_utc:
            return price * self.late_cancel_refund_percent // 100
        return 0

    def _in_money(self, amount: int) -> Money:
        return Money(amount, self.currency)


# -- reading the file ---------------------------------------------------------

_SECTIONS: dict[str, tuple[str, ...]] = {
    "parking": (
        "grace_minutes",
        "increment_minutes",
        "rate_per_hour",
        "daily_max",
        "exit_grace_minutes",
    ),
    "lost_ticket": ("fee", "rule"),
    "overstay": ("fee",),
    "reservations": (
        "price_per_hour",
        "check_in_early_minutes",
        "no_show_grace_minutes",
        "full_refund_hours",
        "late_cancel_refund_percent",
    ),
}
_SIZE_KEYS = tuple(size.label for size in Size)


class _Checker:
    """Reads one decoded tariff, failing with one line: the file, the key's
    dotted path and what an operator should change."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.unit = "cents"  # replaced once the currency is known

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(
            "bad tariff {source}: {key}: {problem}", source=self.source, key=key, problem=problem
        )

    def table(self, key: str, value: object, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a table ([{key}] or {{ ... }}), not {value!r}")
        # Unknown keys first: a misspelt key is also a missing one, and the
        # misspelling is what the operator needs to see.
        for name in value:
            if name not in allowed:
                self.fail(f"{key}.{name}", f"unknown key; allowed here: {', '.join(allowed)}")
        for name in allowed:
            if name not in value:
                self.fail(f"{key}.{name}", "missing; every key must be set")
        return value

    def amount(self, key: str, value: object) -> int:
        # bool is an int subclass: `fee = true` must not read as 1 cent.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number of minor units ({self.unit}), not {value!r}")
        if value < 0:
            self.fail(key, f"must not be negative, not {value}")
        return value

    def whole(self, key: str, value: object, unit: str, low: int, high: int | None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number of {unit}, not {value!r}")
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
            self.fail(key, f"must be {allowed} {unit}, not {value}")
        return value

    def minutes(self, key: str, value: object, low: int = 0, high: int | None = None) -> timedelta:
        return timedelta(minutes=self.whole(key, value, "minutes", low, high))

    def per_size(self, key: str, value: object) -> Mapping[Size, int]:
        if isinstance(value, dict):
            for name in value:
                if name not in _SIZE_KEYS:
                    self.fail(f"{key}.{name}", "unknown size; use small, medium and large")
            for name in _SIZE_KEYS:
                if name not in value:
                    self.fail(f"{key}.{name}", "missing; set a price for small, medium and large")
        table = self.table(key, value, _SIZE_KEYS)
        return MappingProxyType(
            {size: self.amount(f"{key}.{size.label}", table[size.label]) for size in Size}
        )

    def currency(self, value: object) -> str:
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
            self.fail("currency", f'must be a 3-letter ISO code such as "usd", not {value!r}')
        code = value.lower()
        if code in _ZERO_DECIMAL:
            self.unit = f"1 = 1 {code.upper()}"
        elif code in _THREE_DECIMAL:
            self.unit = f"1000 = 1 {code.upper()}"
        return code

    def rule(self, value: object) -> LostTicketRule:
        if value not in _RULES:
            self.fail("lost_ticket.rule", f'must be "flat", "actual" or "greater", not {value!r}')
        return value


def parse_tariff(data: Mapping[str, Any], source: str = "tariff") -> Tariff:
    """Check a decoded tariff file and build the `Tariff`. Every key is
    required and unknown keys are refused, so a typo never falls back to a
    default price. Raises `ConfigError` with one line naming `source`, the
    key and the problem."""
    check = _Checker(source)
    for name in data:
        if name != "currency" and name not in _SECTIONS:
            check.fail(name, "unknown key; the file has currency, " + ", ".join(_SECTIONS))
    if "currency" not in data:
        check.fail("currency", 'missing; set the ISO code of the prices, such as "usd"')
    currency = check.currency(data["currency"])
    for name in _SECTIONS:
        if name not in data:
            check.fail(name, f"missing; add the [{name}] table")
    parking = check.table("parking", data["parking"], _SECTIONS["parking"])
    lost = check.table("lost_ticket", data["lost_ticket"], _SECTIONS["lost_ticket"])
    overstay = check.table("overstay", data["overstay"], _SECTIONS["overstay"])
    booking = check.table("reservations", data["reservations"], _SECTIONS["reservations"])
    return Tariff(
        currency=currency,
        grace=check.minutes("parking.grace_minutes", parking["grace_minutes"]),
        increment=check.minutes(
            "parking.increment_minutes", parking["increment_minutes"], 1, 24 * 60
        ),
        exit_grace=check.minutes("parking.exit_grace_minutes", parking["exit_grace_minutes"]),
        rate_per_hour=check.per_size("parking.rate_per_hour", parking["rate_per_hour"]),
        daily_max=check.per_size("parking.daily_max", parking["daily_max"]),
        lost_ticket_fee=check.amount("lost_ticket.fee", lost["fee"]),
        lost_ticket_rule=check.rule(lost["rule"]),
        overstay_fee=check.amount("overstay.fee", overstay["fee"]),
        reservation_per_hour=check.per_size(
            "reservations.price_per_hour", booking["price_per_hour"]
        ),
        check_in_early=check.minutes(
            "reservations.check_in_early_minutes", booking["check_in_early_minutes"]
        ),
        no_show_grace=check.minutes(
            "reservations.no_show_grace_minutes", booking["no_show_grace_minutes"]
        ),
        full_refund_before=timedelta(
            hours=check.whole(
                "reservations.full_refund_hours", booking["full_refund_hours"], "hours", 0, None
            )
        ),
        late_cancel_refund_percent=check.whole(
            "reservations.late_cancel_refund_percent",
            booking["late_cancel_refund_percent"],
            "percent",
            0,
            100,
        ),
    )


def load_tariff(path: str | Path) -> Tariff:
    """Read and check a tariff TOML file. Raises `ConfigError` with one line
    naming the file, the key and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("tariff file {path} does not exist", path=path) from None
    except OSError as exc:
        raise ConfigError(
            "cannot read tariff file {path}: {reason}", path=path, reason=exc.strerror
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            "bad tariff {path}: not valid TOML: {reason}", path=path, reason=exc
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("bad tariff {path}: not UTF-8 text", path=path) from None
    return parse_tariff(data, str(path))
