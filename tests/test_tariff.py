"""The tariff: parking fees, lost tickets, overstays, reservations, refunds,
money formatting and the tariff file. Pure arithmetic: no database, fixed
datetimes, and Hypothesis runs derandomized so every run checks the same cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import asset_path
from core.domain import Size
from core.errors import ConfigError, InvalidInput
from core.tariff import (
    LostTicketRule,
    Money,
    Phrase,
    Quote,
    QuoteLine,
    StayFacts,
    Tariff,
    format_money,
    load_tariff,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# The tariff the brief specifies, written out independently of the shipped
# file, so a test fails if either drifts.
VALID_TOML = """\
currency = "usd"
[parking]
grace_minutes = 15
increment_minutes = 15
rate_per_hour = { small = 300, medium = 400, large = 500 }
daily_max = { small = 2000, medium = 2500, large = 3000 }
exit_grace_minutes = 15
[lost_ticket]
fee = 2500
rule = "greater"
[overstay]
fee = 5000
[reservations]
price_per_hour = { small = 350, medium = 450, large = 550 }
check_in_early_minutes = 30
no_show_grace_minutes = 30
full_refund_hours = 24
late_cancel_refund_percent = 50
"""


def make_tariff(**changes: Any) -> Tariff:
    values: dict[str, Any] = {
        "currency": "usd",
        "grace": timedelta(minutes=15),
        "increment": timedelta(minutes=15),
        "exit_grace": timedelta(minutes=15),
        "rate_per_hour": {Size.SMALL: 300, Size.MEDIUM: 400, Size.LARGE: 500},
        "daily_max": {Size.SMALL: 2000, Size.MEDIUM: 2500, Size.LARGE: 3000},
        "lost_ticket_fee": 2500,
        "lost_ticket_rule": "greater",
        "overstay_fee": 5000,
        "reservation_per_hour": {Size.SMALL: 350, Size.MEDIUM: 450, Size.LARGE: 550},
        "check_in_early": timedelta(minutes=30),
        "no_show_grace": timedelta(minutes=30),
        "full_refund_before": timedelta(hours=24),
        "late_cancel_refund_percent": 50,
    }
    values.update(changes)
    return Tariff(**values)


def stay(
    *,
    size: Size = Size.SMALL,
    max_stay: timedelta = DAY,
    paid: int = 0,
    lost_ticket: bool = False,
) -> StayFacts:
    return StayFacts(size, T0, T0 + max_stay, paid=paid, lost_ticket=lost_ticket)


def quote_after(elapsed: timedelta, tariff: Tariff | None = None, **facts: Any) -> Quote:
    return (tariff or make_tariff()).quote(stay(**facts), T0 + elapsed)


# -- parking -------------------------------------------------------------------


def test_leaving_exactly_at_the_end_of_the_grace_period_is_free() -> None:
    quote = quote_after(15 * MIN)
    assert quote.total == 0
    assert quote.lines == (QuoteLine("Parking 15 min (small car): free for the first 15 min", 0),)


def test_one_minute_past_the_grace_bills_every_started_increment_from_entry() -> None:
    # 15:01 has started the 0-15 and 15-30 increments: 2 x $0.75.
    assert quote_after(15 * MIN + timedelta(seconds=1)).total == 150
    assert quote_after(16 * MIN).lines == (QuoteLine("Parking 16 min (small car)", 150),)


def test_without_grace_one_started_increment_costs_one_increment() -> None:
    tariff = make_tariff(grace=timedelta(0))
    assert tariff.parking_fee(Size.SMALL, timedelta(seconds=1)) == 75
    assert tariff.parking_fee(Size.SMALL, 15 * MIN) == 75
    assert tariff.parking_fee(Size.SMALL, 15 * MIN + timedelta(microseconds=1)) == 150
    assert tariff.parking_fee(Size.SMALL, timedelta(0)) == 0


def test_each_size_is_billed_at_its_own_rate() -> None:
    tariff = make_tariff()
    fees = [tariff.parking_fee(size, 2 * HOUR) for size in Size]
    assert fees == [600, 800, 1000]


def test_an_increment_price_with_a_fraction_of_a_cent_is_rounded_up() -> None:
    tariff = make_tariff(rate_per_hour={Size.SMALL: 301, Size.MEDIUM: 400, Size.LARGE: 500})
    assert tariff.increment_price(Size.SMALL) == 76  # 301 / 4 = 75.25
    assert tariff.increment_price(Size.MEDIUM) == 100


def test_the_daily_max_caps_a_long_day() -> None:
    # 20 h would be 80 x $0.75 = $60.00 without the cap.
    assert quote_after(20 * HOUR, max_stay=2 * DAY).total == 2000
    assert quote_after(24 * HOUR, max_stay=2 * DAY).total == 2000


def test_a_second_day_is_billed_afresh_and_capped_again() -> None:
    tariff = make_tariff()
    assert tariff.parking_fee(Size.SMALL, DAY + 2 * HOUR) == 2000 + 600
    assert tariff.parking_fee(Size.SMALL, DAY + timedelta(seconds=1)) == 2000 + 75
    assert tariff.parking_fee(Size.SMALL, 47 * HOUR) == 2000 + 2000
    assert tariff.parking_fee(Size.MEDIUM, 2 * DAY) == 2500 * 2


def test_a_long_stay_is_printed_in_hours_and_minutes() -> None:
    quote = quote_after(DAY + 2 * HOUR + 5 * MIN, max_stay=2 * DAY)
    assert quote.lines[0].label == "Parking 26 h 5 min (small car)"


# -- overstay, lost ticket, already paid ---------------------------------------


def test_the_overstay_fee_is_added_once_past_the_max_stay() -> None:
    assert quote_after(DAY).total == 2000  # exactly at the max stay: not over yet
    over = quote_after(DAY + MIN)
    assert over.total == 2000 + 75 + 5000
    assert over.lines[-1] == QuoteLine("Overstay fee (over 24 h)", 5000)
    much_later = quote_after(3 * DAY)
    assert much_later.total == 3 * 2000 + 5000
    assert [line.label for line in much_later.lines].count("Overstay fee (over 24 h)") == 1


def test_lost_ticket_flat_rule_always_charges_the_fee() -> None:
    tariff = make_tariff(lost_ticket_rule="flat")
    for elapsed in (5 * MIN, 2 * HOUR, 20 * HOUR):
        quote = quote_after(elapsed, tariff, lost_ticket=True)
        assert quote.total == 2500
        assert quote.lines == (QuoteLine("Lost ticket fee (flat rate)", 2500),)


def test_lost_ticket_actual_rule_charges_the_time_from_the_entry_log() -> None:
    quote = quote_after(2 * HOUR, make_tariff(lost_ticket_rule="actual"), lost_ticket=True)
    assert quote.total == 600
    assert quote.lines == (
        QuoteLine("Lost ticket, charged by time from the entry log: parking 2 h (small car)", 600),
    )


def test_lost_ticket_greater_rule_charges_the_fee_when_it_is_more() -> None:
    quote = quote_after(2 * HOUR, make_tariff(), lost_ticket=True)
    assert quote.total == 2500
    assert quote.lines == (
        QuoteLine("Lost ticket fee (parking 2 h (small car) would be $6.00)", 2500),
    )


def test_lost_ticket_greater_rule_charges_the_time_when_it_is_more() -> None:
    quote = quote_after(DAY + 6 * HOUR, make_tariff(), max_stay=2 * DAY, lost_ticket=True)
    assert quote.total == 2000 + 1800
    assert quote.lines[0].label.startswith(
        "Lost ticket, charged by time from the entry log (more than the $25.00 fee)"
    )


def test_a_lost_ticket_past_the_max_stay_also_pays_the_overstay_fee() -> None:
    quote = quote_after(DAY + HOUR, make_tariff(lost_ticket_rule="flat"), lost_ticket=True)
    assert quote.total == 2500 + 5000


def test_money_already_paid_is_shown_and_subtracted_from_what_is_due() -> None:
    quote = quote_after(3 * HOUR, paid=600)
    assert (quote.total, quote.paid, quote.due) == (900, 600, 300)
    assert quote.lines[-1] == QuoteLine("Already paid", -600)
    assert sum(line.amount for line in quote.lines) == quote.due


def test_nothing_is_due_when_more_was_paid_than_the_stay_now_costs() -> None:
    quote = quote_after(30 * MIN, make_tariff(lost_ticket_rule="flat"), paid=3000, lost_ticket=True)
    assert (quote.total, quote.due) == (2500, 0)


def test_a_quote_a_moment_before_entry_costs_nothing() -> None:
    # Two kiosks' clocks can disagree by a moment.
    assert make_tariff(grace=timedelta(0)).quote(stay(), T0 - timedelta(seconds=2)).total == 0


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_tariff().quote(stay(), datetime(2026, 11, 22, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        StayFacts(Size.SMALL, datetime(2026, 11, 22, 10, 0), T0)


# -- daylight saving time --------------------------------------------------------


def test_a_stay_across_spring_forward_is_billed_by_real_elapsed_time() -> None:
    entered = datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK)  # EST
    left = datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK)  # EDT
    assert left - entered == 2 * HOUR  # what naive wall-clock arithmetic would bill
    facts = StayFacts(Size.SMALL, entered, entered + DAY)
    quote = make_tariff().quote(facts, left, NEW_YORK)
    assert quote.total == 300  # 1 h real: 4 x $0.75
    assert quote.lines[0].label == "Parking 1 h (small car), entered Sun 8 Mar 01:30"


def test_a_stay_across_fall_back_is_billed_by_real_elapsed_time() -> None:
    entered = datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK)  # EDT
    left = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)  # the second 01:30, EST
    assert left - entered == HOUR  # what naive wall-clock arithmetic would bill
    quote = make_tariff().quote(StayFacts(Size.SMALL, entered, entered + DAY), left)
    assert quote.total == 600  # 2 h real


def test_a_stay_inside_the_repeated_hour_is_billed_though_the_wall_clock_went_back() -> None:
    entered = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)  # first 01:30, EDT
    left = datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NEW_YORK)  # 45 min later, EST
    quote = make_tariff().quote(StayFacts(Size.SMALL, entered, entered + DAY), left, NEW_YORK)
    assert quote.total == 225  # 45 min: 3 x $0.75
    assert quote.lines[0].label == "Parking 45 min (small car), entered Sun 1 Nov 01:30"


def test_the_entry_time_is_printed_in_the_zone_given() -> None:
    entered = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    facts = StayFacts(Size.LARGE, entered, entered + DAY)
    quote = make_tariff().quote(facts, entered + 2 * HOUR, BERLIN)
    assert quote.lines[0].label == "Parking 2 h (large car), entered Sun 29 Mar 01:30"


# -- reservations ------------------------------------------------------------------


def test_a_reservation_is_priced_per_started_hour() -> None:
    tariff = make_tariff()
    quote = tariff.quote_reservation(Size.MEDIUM, T0, T0 + 2 * HOUR + 30 * MIN)
    assert (quote.total, quote.paid, quote.due) == (1350, 0, 1350)
    assert quote.lines == (
        QuoteLine("Reservation 2 h 30 min (medium car), billed as 3 h at $4.50 an hour", 1350),
    )
    whole = tariff.quote_reservation(Size.MEDIUM, T0, T0 + 2 * HOUR)
    assert whole.lines == (QuoteLine("Reservation 2 h (medium car) at $4.50 an hour", 900),)


def test_a_reservation_across_spring_forward_is_priced_by_real_hours() -> None:
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)
    end = datetime(2026, 3, 8, 4, 0, tzinfo=NEW_YORK)  # 3 real hours
    assert make_tariff().quote_reservation(Size.SMALL, start, end).total == 3 * 350


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (timedelta(0), "must end after it starts"),
        (-HOUR, "must end after it starts"),
        (31 * DAY + timedelta(seconds=1), "at most 31 days"),
    ],
)
def test_a_reservation_window_that_is_empty_or_over_31_days_is_refused(
    length: timedelta, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_tariff().quote_reservation(Size.SMALL, T0, T0 + length)


def test_a_reservation_of_exactly_31_days_is_accepted() -> None:
    assert make_tariff().quote_reservation(Size.SMALL, T0, T0 + 31 * DAY).total == 744 * 350


@pytest.mark.parametrize(
    ("before_start", "refund"),
    [
        (48 * HOUR, 1351),
        (24 * HOUR, 1351),  # exactly the full-refund notice
        (24 * HOUR - timedelta(seconds=1), 675),  # half, rounded down
        (timedelta(seconds=1), 675),
        (timedelta(0), 0),  # at the start
        (-HOUR, 0),  # after the start
    ],
)
def test_a_cancellation_refund_depends_on_the_notice_given(
    before_start: timedelta, refund: int
) -> None:
    assert make_tariff().cancel_refund(1351, T0, T0 - before_start) == refund


# -- lines to translate -------------------------------------------------------------


def test_a_line_carries_its_template_and_typed_values_for_another_language() -> None:
    entered = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ended = entered + 2 * HOUR
    facts = StayFacts(Size.SMALL, entered, ended, paid=300, billed_from=ended)
    parking, overstay, paid = make_tariff().quote(facts, ended + HOUR + 5 * MIN, BERLIN).lines
    assert parking.label == (
        "Parking 1 h 5 min after the reservation ended (small car), entered Mon 23 Nov 10:00"
    )
    assert parking.template == (
        "Parking {duration} after the reservation ended ({size} car), entered {entered}"
    )
    assert parking.values == {
        "duration": HOUR + 5 * MIN,
        "size": Size.SMALL,
        "entered": entered.astimezone(BERLIN),
    }
    assert overstay.template == "Overstay fee (past the reservation's end at {end})"
    assert overstay.values == {"end": ended.astimezone(BERLIN)}
    assert (paid.template, paid.values) == ("Already paid", {})


def test_a_lost_ticket_line_nests_the_stay_and_gives_money_as_money() -> None:
    (line,) = quote_after(2 * HOUR, lost_ticket=True).lines
    assert line.template == "Lost ticket fee ({stay} would be {parking})"
    assert line.values["parking"] == Money(600, "usd")
    assert line.values["stay"] == Phrase(
        "parking {duration} ({size} car)", {"duration": 2 * HOUR, "size": Size.SMALL}
    )
    assert (
        str(line.phrase) == line.label == "Lost ticket fee (parking 2 h (small car) would be $6.00)"
    )


def test_a_line_given_only_a_label_is_its_own_template_and_lines_compare_by_what_they_say() -> None:
    line = QuoteLine("Parking", 150)
    assert (line.template, line.values) == ("Parking", {})
    assert QuoteLine("Parking", 150, "{what}", {"what": "Parking"}) == line


# -- money ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1250, "usd", "$12.50"),
        (-200, "usd", "-$2.00"),
        (0, "usd", "$0.00"),
        (5, "usd", "$0.05"),
        (123456, "USD", "$1,234.56"),
        (300, "eur", "€3.00"),
        (105, "gbp", "£1.05"),
        (500, "jpy", "¥500"),
        (250000, "jpy", "¥250,000"),
        (-500, "jpy", "-¥500"),
        (1250, "chf", "12.50 CHF"),
        (-5, "chf", "-0.05 CHF"),
        (1500, "kwd", "1.500 KWD"),
        (1500, "krw", "1,500 KRW"),
    ],
)
def test_money_is_formatted_for_drivers(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


def test_text_lines_put_amounts_in_a_column() -> None:
    quote = quote_after(3 * HOUR, paid=600)
    assert quote.text_lines == [
        "Parking 3 h (small car)   $9.00",
        "Already paid             -$6.00",
    ]


# -- the tariff file ---------------------------------------------------------------------


def test_the_shipped_tariff_file_loads_with_the_documented_prices() -> None:
    assert load_tariff(asset_path("tariff.toml")) == make_tariff()


def test_a_valid_file_loads_and_its_currency_is_stored_lower_case(tmp_path: Path) -> None:
    path = tmp_path / "tariff.toml"
    path.write_text(VALID_TOML.replace('"usd"', '"CHF"'))
    assert load_tariff(str(path)) == make_tariff(currency="chf")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "medium = 400",
            "medium = 4.5",
            "parking.rate_per_hour.medium: must be a whole number of minor units (cents), not 4.5",
        ),
        ("medium = 400", 'medium = "400"', "parking.rate_per_hour.medium: must be a whole"),
        ("fee = 5000", "fee = true", "overstay.fee: must be a whole number of minor units"),
        ("fee = 2500", "fee = -1", "lost_ticket.fee: must not be negative"),
        (", large = 3000", "", "parking.daily_max.large: missing"),
        ("large = 3000", "huge = 3000", "parking.daily_max.huge: unknown size"),
        ("\ngrace_minutes = 15", "\ngrace_minute = 15", "parking.grace_minute: unknown key"),
        ("[overstay]", "colour = 1\n[overstay]", "lost_ticket.colour: unknown key"),
        ('currency = "usd"', 'currency = "usd"\ncurrencies = "eur"', "currencies: unknown key"),
        ("exit_grace_minutes = 15\n", "", "parking.exit_grace_minutes: missing"),
        ('rule = "greater"', 'rule = "max"', 'lost_ticket.rule: must be "flat", "actual" or'),
        ('currency = "usd"', 'currency = "dollars"', "currency: must be a 3-letter ISO code"),
        ('currency = "usd"', "currency = 840", "currency: must be a 3-letter ISO code"),
        ('currency = "usd"\n', "", "currency: missing"),
        ("increment_minutes = 15", "increment_minutes = 0", "parking.increment_minutes: must be"),
        (
            "increment_minutes = 15",
            "increment_minutes = 1441",
            "parking.increment_minutes: must be from 1 to 1440 minutes, not 1441",
        ),
        ("\ngrace_minutes = 15", "\ngrace_minutes = 7.5", "parking.grace_minutes: must be a whole"),
        (
            "percent = 50",
            "percent = 150",
            "reservations.late_cancel_refund_percent: must be from 0 to 100",
        ),
        ("[overstay]\nfee = 5000\n", "", "overstay: missing; add the [overstay] table"),
    ],
)
def test_a_bad_tariff_file_is_refused_with_one_line_naming_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert VALID_TOML.count(old) == 1, "the test must change exactly one place"
    path = tmp_path / "tariff.toml"
    path.write_text(VALID_TOML.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_tariff(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"bad tariff {path}: {message}")


def test_a_section_written_as_a_plain_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tariff.toml"
    path.write_text("overstay = 5000\n" + VALID_TOML.replace("[overstay]\nfee = 5000\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_tariff(path)
    assert str(caught.value).startswith(f"bad tariff {path}: overstay: must be a table")


def test_a_missing_or_broken_tariff_file_gets_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_tariff(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("currency = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_tariff(broken)
    assert "\n" not in str(caught.value)


# -- properties -------------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)

ZONES = st.sampled_from(
    [UTC, NEW_YORK, BERLIN, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]
)
MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2034, 1, 1), timezones=ZONES
)
ELAPSED = st.timedeltas(min_value=timedelta(0), max_value=40 * DAY)
SIZES = st.sampled_from(list(Size))


def per_size(high: int) -> st.SearchStrategy[dict[Size, int]]:
    return st.fixed_dictionaries({size: st.integers(0, high) for size in Size})


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    minutes = st.integers(0, 240).map(lambda n: timedelta(minutes=n))
    rule: LostTicketRule = draw(st.sampled_from(["flat", "actual", "greater"]))
    return make_tariff(
        grace=draw(minutes),
        increment=timedelta(
            minutes=draw(st.sampled_from([1, 5, 7, 10, 15, 20, 30, 60, 90]) | st.integers(1, 1440))
        ),
        rate_per_hour=draw(per_size(10_000)),
        daily_max=draw(per_size(100_000)),
        lost_ticket_fee=draw(st.integers(0, 20_000)),
        lost_ticket_rule=rule,
        overstay_fee=draw(st.integers(0, 20_000)),
        reservation_per_hour=draw(per_size(10_000)),
        full_refund_before=timedelta(hours=draw(st.integers(0, 96))),
        late_cancel_refund_percent=draw(st.integers(0, 100)),
    )


@st.composite
def stays(draw: st.DrawFn) -> StayFacts:
    entered = draw(MOMENTS)
    return StayFacts(
        draw(SIZES),
        entered,
        entered + draw(st.timedeltas(min_value=15 * MIN, max_value=31 * DAY)),
        paid=draw(st.integers(0, 50_000)),
        lost_ticket=draw(st.booleans()),
    )


def later(start: datetime, elapsed: timedelta, zone: tzinfo = UTC) -> datetime:
    """`elapsed` real time after `start`, expressed in `zone`."""
    return (start.astimezone(UTC) + elapsed).astimezone(zone)


@PROPERTY
@given(tariffs(), SIZES, ELAPSED, ELAPSED)
def test_the_parking_fee_never_decreases_with_time(
    tariff: Tariff, size: Size, a: timedelta, b: timedelta
) -> None:
    early, late = sorted((a, b))
    assert tariff.parking_fee(size, early) <= tariff.parking_fee(size, late)


@PROPERTY
@given(tariffs(), stays(), ELAPSED, ELAPSED, ZONES)
def test_a_quote_total_never_decreases_with_time(
    tariff: Tariff, facts: StayFacts, a: timedelta, b: timedelta, zone: ZoneInfo
) -> None:
    early, late = sorted((a, b))
    first = tariff.quote(facts, later(facts.entered_at, early, zone))
    second = tariff.quote(facts, later(facts.entered_at, late, zone))
    assert first.total <= second.total


@PROPERTY
@given(tariffs(), SIZES, MOMENTS, ELAPSED)
def test_a_stay_never_costs_more_than_the_daily_max_per_started_day_before_overstay(
    tariff: Tariff, size: Size, entered: datetime, elapsed: timedelta
) -> None:
    facts = StayFacts(size, entered, later(entered, 40 * DAY))
    started_days = -(-elapsed // DAY)
    quote = tariff.quote(facts, later(entered, elapsed))
    assert quote.total <= started_days * tariff.daily_max[size]


@PROPERTY
@given(tariffs(), SIZES, MOMENTS, st.data())
def test_a_stay_inside_the_grace_period_is_free(
    tariff: Tariff, size: Size, entered: datetime, data: st.DataObject
) -> None:
    elapsed = data.draw(st.timedeltas(min_value=timedelta(0), max_value=tariff.grace))
    assert tariff.parking_fee(size, elapsed) == 0
    facts = StayFacts(size, entered, later(entered, DAY))
    assert tariff.quote(facts, later(entered, elapsed)).total == 0


@PROPERTY
@given(tariffs(), stays(), ELAPSED, ZONES)
def test_a_quote_is_billed_by_real_elapsed_time_in_any_zone(
    tariff: Tariff, facts: StayFacts, elapsed: timedelta, zone: ZoneInfo
) -> None:
    honest = StayFacts(facts.size, facts.entered_at, later(facts.entered_at, 41 * DAY))
    quote = tariff.quote(honest, later(facts.entered_at, elapsed, zone))
    assert quote.total == tariff.parking_fee(facts.size, elapsed)


@PROPERTY
@given(tariffs(), stays(), ELAPSED)
def test_due_is_total_less_paid_and_never_negative(
    tariff: Tariff, facts: StayFacts, elapsed: timedelta
) -> None:
    quote = tariff.quote(facts, later(facts.entered_at, elapsed))
    assert quote.paid == facts.paid
    assert quote.due == max(quote.total - quote.paid, 0)
    assert sum(line.amount for line in quote.lines) == quote.total - quote.paid


@PROPERTY
@given(
    tariffs(),
    SIZES,
    MOMENTS,
    st.timedeltas(min_value=timedelta(seconds=1), max_value=31 * DAY),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=31 * DAY),
)
def test_a_reservation_never_costs_less_for_a_longer_window(
    tariff: Tariff, size: Size, start: datetime, a: timedelta, b: timedelta
) -> None:
    short, long = sorted((a, b))
    shorter = tariff.quote_reservation(size, start, later(start, short))
    longer = tariff.quote_reservation(size, start, later(start, long))
    assert shorter.total <= longer.total


@PROPERTY
@given(
    tariffs(),
    st.integers(0, 100_000),
    MOMENTS,
    st.timedeltas(min_value=-5 * DAY, max_value=5 * DAY),
    st.timedeltas(min_value=-5 * DAY, max_value=5 * DAY),
)
def test_a_refund_never_grows_as_the_cancellation_comes_later_nor_exceeds_the_price(
    tariff: Tariff, price: int, start: datetime, a: timedelta, b: timedelta
) -> None:
    early, late = sorted((a, b))
    first = tariff.cancel_refund(price, start, later(start, early))
    second = tariff.cancel_refund(price, start, later(start, late))
    assert price >= first >= second >= 0


@PROPERTY
@given(tariffs(), stays(), ELAPSED, st.booleans(), ZONES)
def test_every_line_s_phrase_reads_as_its_label_in_english(
    tariff: Tariff, facts: StayFacts, elapsed: timedelta, reserved: bool, zone: ZoneInfo
) -> None:
    if reserved:
        facts = replace(facts, billed_from=facts.max_stay_until)
    quote = tariff.quote(facts, later(facts.entered_at, elapsed), zone)
    booked = tariff.quote_reservation(facts.size, facts.entered_at, facts.max_stay_until)
    for line in quote.lines + booked.lines:
        assert str(line.phrase) == line.label
