"""Every text the kiosk shows is translated: a string passed to `_()` in the
kiosk's code with no Spanish entry would show English to a Spanish reader."""

from __future__ import annotations

import ast
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


def test_translations_keep_every_placeholder() -> None:
    catalog = PoTranslations(LOCALE_DIR / "es.po")
    for text in texts_in_code():
        translated = catalog.gettext(text)
        names = {part.split("}")[0] for part in text.split("{")[1:]}
        assert names == {part.split("}")[0] for part in translated.split("{")[1:]}, text


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
