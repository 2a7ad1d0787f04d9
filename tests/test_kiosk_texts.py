"""Every text the kiosk shows is translated: a string passed to `_()` in the
kiosk's code with no Spanish entry would show English to a Spanish reader."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import kiosk
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
    for text in texts_in_code() | set(line_templates()):
        assert fields(text) == fields(catalog.gettext(text)), text


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
