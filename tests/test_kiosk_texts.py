"""Every text the kiosk shows is translated: a string passed to `_()` in the
kiosk's code with no Spanish entry would show English to a Spanish reader."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import kiosk
from core.clock import FixedClock
from core.site import Site
from kiosk.i18n import LOCALE_DIR, PoTranslations

KIOSK_DIR = Path(kiosk.__file__).parent


def texts_in_code() -> set[str]:
    found = set()
    for path in KIOSK_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def test_every_kiosk_text_has_a_spanish_translation() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    texts = texts_in_code()
    assert len(texts) > 50  # the scan finds the kiosk's texts at all
    missing = sorted(t for t in texts if t not in catalog)
    assert missing == []


def fields(text: str) -> set[str]:
    """The names of a template's fields ("{day:02d}" is "day": a translation
    may drop a format, as Spanish does the day's leading zero)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_translations_keep_every_placeholder() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    for text in texts_in_code() | set(line_templates()) | set(engine_templates()):
        assert fields(text) == fields(catalog.gettext(text)), text


# Where the engine raises what only staff read (the console, the CLI, a
# config file): those messages are templates too, but stay English.
STAFF_SERVICES = {"audit", "api_access", "booth", "devices", "keys", "layout", "overrides"}
STAFF_SERVICES |= {"shifts", "staff"}
STAFF_ERRORS = {"ConfigError", "LayoutError", "DeliveryFailed", "DatabaseUnavailable"}
STAFF_ERRORS |= {"SchemaOutOfDate"}


def meets_a_driver(path: str) -> bool:
    # The printer's faults too (its URL errors are ConfigError, staff's).
    driver_files = ("core/errors.py", "core/tariff.py", "core/ticket_codes.py")
    if path in (*driver_files, "core/devices/printer.py"):
        return True
    if path.startswith("core/payments/"):
        return True
    folder, _, name = path.rpartition("/")
    return folder == "core/services" and name.removesuffix(".py") not in STAFF_SERVICES


def engine_templates() -> list[str]:
    """Every template of an error a driver can meet from the engine: those
    raised in `core/errors.py`, the driver's services, the tariff, the
    ticket codes, the payment providers and the printer (found by the scan
    of tests/test_engine_messages.py)."""
    from test_engine_messages import engine_messages, templates

    return sorted(
        {
            template
            for message in engine_messages()
            if meets_a_driver(message.path) and message.error.split(" ")[0] not in STAFF_ERRORS
            for template in templates(message)
        }
    )


def test_every_engine_message_a_driver_can_meet_has_a_spanish_translation() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    found = engine_templates()
    assert len(found) > 60  # the scan reaches the services, not only core/errors.py
    assert "Nothing to pay: you may leave until {time}." in found
    assert "This reservation is {state} and can no longer be cancelled." in found
    assert "The {noun} printer is out of paper." in found  # the printer's faults
    assert not [t for t in found if t.startswith("Printer URL")]  # staff's, English
    assert [t for t in found if t not in catalog] == []


def line_templates() -> list[str]:
    """Every template of a fee or receipt line the tariff and the receipt
    make (nested phrases too): each rule, with and without the entry time,
    a walk-in and a reservation's stay, in the grace period and past the
    max stay, with earlier payments; and the receipt's lines for a figure
    set by hand."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from core.domain import Size
    from core.tariff import Phrase, StayFacts, load_tariff

    tariff = load_tariff(Path(kiosk.__file__).parent.parent / "assets" / "tariff.toml")
    entered = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    until = entered + timedelta(hours=2)
    found: list[str] = ["Parking", "Lost ticket", "Already paid"]  # stays.payment_receipt

    def collect(phrase: Phrase) -> None:
        found.append(phrase.template)
        for value in phrase.values.values():
            if isinstance(value, Phrase):
                collect(value)

    for rule in ("flat", "actual", "greater"):
        for fee in (1, 10**6):  # "greater": the fee or the time is more
            rated = replace(tariff, lost_ticket_rule=rule, lost_ticket_fee=fee)
            for billed_from in (None, until):
                for lost in (False, True):
                    stay = StayFacts(Size.SMALL, entered, until, 300, lost, billed_from)
                    for zone in (None, ZoneInfo("Europe/Madrid")):
                        for after in (timedelta(minutes=5), timedelta(hours=3)):
                            for line in rated.quote(
                                stay, (billed_from or entered) + after, zone
                            ).lines:
                                collect(line.phrase)
    for hours in (timedelta(hours=2), timedelta(hours=2, minutes=30)):
        for line in tariff.quote_reservation(Size.LARGE, entered, entered + hours).lines:
            collect(line.phrase)
    return sorted(set(found))


def test_every_fee_and_receipt_line_has_a_spanish_translation() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    templates = line_templates()
    assert len(templates) >= 20  # every rule was reached
    assert [t for t in templates if t not in catalog] == []


def test_engine_messages_with_values_are_translated_with_their_values() -> None:
    from core import errors
    from kiosk.i18n import error_text, use_language

    refusals = [
        errors.PaymentRequired(42, "$6.00"),
        errors.TicketAlreadyUsed("Mon 23 Nov 10:15"),
        errors.SignInThrottled(30),
        errors.PlateTaken("KLX 481"),
        errors.LotFull("small"),
        errors.ReservationError(
            "too_early",
            "You are early: check-in for this reservation opens at {time}.",
            time="10:15",
        ),
        errors.InvalidInput("Please choose a password of at least {count} characters.", count=8),
    ]
    try:
        use_language("en")
        assert [error_text(e) for e in refusals] == [str(e) for e in refusals]
        use_language("es")
        spanish = [error_text(e) for e in refusals]
    finally:
        use_language("en")
    assert spanish[0] == "Pague $6.00 por este ticket antes de salir."
    assert "10:15" in spanish[1] and "30 segundos" in spanish[2] and "KLX 481" in spanish[3]
    assert "coche pequeño" in spanish[4]  # the size, a value, is translated too
    assert spanish[5] == "Llega pronto: la entrada con esta reserva se abre a las 10:15."
    assert "al menos 8 caracteres" in spanish[6]


def test_an_engine_message_the_catalog_lacks_stays_whole_in_english() -> None:
    from core.errors import InvalidInput
    from kiosk.i18n import error_text, use_language

    error = InvalidInput("Only {n} cars today.", n=3)
    try:
        use_language("es")
        assert error_text(error) == "Only 3 cars today."
    finally:
        use_language("en")


def test_refusals_of_concurrent_payments_and_retired_codes_are_translated() -> None:
    from core import errors
    from kiosk.i18n import error_text, use_language

    refusals = [
        errors.PaymentInProgress("ticket"),
        errors.PaymentInProgress("reservation"),
        errors.ReservationError(
            "key_retired", "This reservation code is no longer valid. Please see the attendant."
        ),
    ]
    try:
        use_language("es")
        spanish = [error_text(e) for e in refusals]
    finally:
        use_language("en")
    assert spanish[0].startswith("Este ticket se está pagando en otro lugar")
    assert spanish[1].startswith("Esta reserva se está pagando en otro lugar")
    assert spanish[2] == "Este código de reserva ya no es válido. Consulte al encargado."


def test_a_time_an_engine_message_carries_is_worded_in_the_kiosk_s_language() -> None:
    import pickle
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from core import errors
    from core.site import LocalTime
    from kiosk.i18n import error_text, time_text, use_language

    at = datetime(2026, 9, 5, 8, 15, tzinfo=UTC).astimezone(ZoneInfo("Europe/Madrid"))
    used = errors.TicketAlreadyUsed(LocalTime(at))
    early = errors.ReservationError(
        "too_early",
        "You are early: check-in for this reservation opens at {time}.",
        time=LocalTime(at),
    )
    # English, the API and the event log read as before.
    assert str(used).startswith("This ticket was already used to exit at 10:15 on 05 Sep.")
    assert used.values == {"time": "10:15 on 05 Sep"} and type(used.values["time"]) is str
    assert pickle.loads(pickle.dumps(LocalTime(at, True))).at == at
    assert LocalTime(at, True) == "10:15 on 05 Sep 2026"
    try:
        use_language("es")
        spanish = [error_text(used), error_text(early), time_text(at, year=True)]
    finally:
        use_language("en")
    assert spanish[0].startswith("Este ticket ya se usó para salir a las 10:15 del 5 sept.")
    assert spanish[1] == "Llega pronto: la entrada con esta reserva se abre a las 10:15 del 5 sept."
    assert spanish[2] == "10:15 del 5 sept de 2026"


def test_refusals_from_the_services_read_in_spanish_with_their_values(
    site: Site, clock: FixedClock
) -> None:
    """Messages that were built in English before the kiosk saw them: a paid
    ticket's "leave until", a cancelled reservation at check-in and cancelled
    again."""
    import pytest
    from helpers import paid_reservation

    from core import services as lk
    from core.errors import NothingToPay, ReservationError
    from kiosk.i18n import error_text, use_language

    ticket = lk.enter(site, "small")
    clock.advance(hours=2)
    paying = lk.pay_ticket(site, ticket.code)
    assert lk.wait_for_payment(site, paying.id, sleep=lambda _: None).succeeded
    with pytest.raises(NothingToPay) as paid:
        lk.pay_ticket(site, ticket.code)
    booked = paid_reservation(site, start_in_hours=1)
    lk.cancel_reservation(site, booked.id)
    clock.advance(minutes=50)
    with pytest.raises(ReservationError) as cancelled:
        lk.check_in(site, booked.code)
    with pytest.raises(ReservationError) as again:
        lk.cancel_reservation(site, booked.id)
    english = [str(paid.value), str(cancelled.value), str(again.value)]
    try:
        use_language("es")
        spanish = [error_text(paid.value), error_text(cancelled.value), error_text(again.value)]
    finally:
        use_language("en")
    assert english[0].startswith("Nothing to pay: you may leave until ")
    assert english[1].startswith("This reservation was cancelled at ")
    assert english[2] == "This reservation is cancelled and can no longer be cancelled."
    assert spanish[0].startswith("Nada que pagar: puede salir hasta las ")
    assert spanish[1].startswith("Esta reserva se canceló a las ")
    assert spanish[2] == "Esta reserva figura como cancelada y ya no se puede cancelar."
    assert " on " not in spanish[0] + spanish[1]  # the times are worded in Spanish
