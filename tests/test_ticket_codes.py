"""The signing scheme on its own, without a database."""

from __future__ import annotations

import pytest

from core.errors import MalformedTicket, TicketKeyUnknown, TicketSignatureInvalid
from core.ticket_codes import RESERVATION, TAG_BYTES, KeyRing, ShortCode, SignedCode, parse_code

RING = KeyRing.build(b"s" * 48, "demo", [("K1", "aa", False), ("K2", "bb", True)])


def test_signed_code_round_trips_and_fits_qr_alphanumeric() -> None:
    code = RING.sign(1042, 1_795_000_000)
    assert code.key_id == "K2"
    assert parse_code(code.text) == code
    assert set(code.text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    RING.verify(code)


def test_tag_has_at_least_128_bits() -> None:
    assert TAG_BYTES * 8 >= 128
    assert len(RING.sign(1, 2).tag) * 5 >= 128


def test_old_key_still_verifies() -> None:
    old = KeyRing.build(b"s" * 48, "demo", [("K1", "aa", True)]).sign(7, 100)
    RING.verify(old)


def test_same_ticket_on_another_site_does_not_verify() -> None:
    other_site = KeyRing.build(b"s" * 48, "north", [("K1", "aa", False), ("K2", "bb", True)])
    with pytest.raises(TicketSignatureInvalid):
        RING.verify(other_site.sign(7, 100))


def test_every_field_is_covered_by_the_tag() -> None:
    code = RING.sign(7, 100)
    for altered in (
        SignedCode(code.key_id, 8, code.issued_at, code.tag),
        SignedCode(code.key_id, code.ticket_id, 101, code.tag),
        SignedCode("K1", code.ticket_id, code.issued_at, code.tag),
    ):
        with pytest.raises(TicketSignatureInvalid):
            RING.verify(altered)


def test_unknown_key_id_is_its_own_error() -> None:
    code = RING.sign(7, 100)
    with pytest.raises(TicketKeyUnknown):
        RING.verify(SignedCode("K3", 7, 100, code.tag))


def test_short_code_check() -> None:
    short = RING.short_code("K2", 55)
    assert parse_code(short.text) == short
    RING.verify_short("K2", short)
    with pytest.raises(TicketSignatureInvalid):
        RING.verify_short("K1", short)
    with pytest.raises(TicketSignatureInvalid):
        RING.verify_short("K2", ShortCode(56, short.check))


@pytest.mark.parametrize(
    "raw", ["", "-", "LK2.K1.1.1." + "A" * 32, "LK1.K1.1.1." + "A" * 31, "12-ABC"]
)
def test_malformed_codes(raw: str) -> None:
    with pytest.raises(MalformedTicket):
        parse_code(raw)


def test_lowercase_scan_is_accepted() -> None:
    code = RING.sign(9, 10)
    assert parse_code(code.text.lower()) == code


def _digits(number: int, zero: str) -> str:
    """`number` written in the digits of the script whose zero is `zero`."""
    return "".join(chr(ord(zero) + int(c)) for c in str(number))


# Arabic-Indic, Extended Arabic-Indic (Persian), Devanagari, full-width,
# mathematical bold: all matched by \d and read as numbers by int().
OTHER_ZEROS = ["\u0660", "\u06f0", "\u0966", "\uff10", "\U0001d7ce"]


@pytest.mark.parametrize("zero", OTHER_ZEROS)
def test_a_short_code_with_non_ascii_digits_is_malformed(zero: str) -> None:
    for short in (RING.short_code("K2", 12), RING.short_code("K2", 12, version=RESERVATION)):
        assert parse_code(short.text) == short  # the ASCII form reads
        prefix = "R" if short.version == RESERVATION else ""
        forged = f"{prefix}{_digits(short.ticket_id, zero)}-{short.check}"
        assert int(_digits(short.ticket_id, zero)) == short.ticket_id  # what int() would do
        with pytest.raises(MalformedTicket, match="could not be read as a Lotkeeper ticket"):
            parse_code(forged)


@pytest.mark.parametrize("zero", OTHER_ZEROS)
def test_a_full_code_with_non_ascii_digits_is_malformed(zero: str) -> None:
    for code in (RING.sign(1042, 1_795_000_000), RING.sign(7, 100, version=RESERVATION)):
        assert parse_code(code.text) == code
        ticket, issued = _digits(code.ticket_id, zero), _digits(code.issued_at, zero)
        for forged in (
            f"{code.version}.{code.key_id}.{ticket}.{code.issued_at}.{code.tag}",
            f"{code.version}.{code.key_id}.{code.ticket_id}.{issued}.{code.tag}",
        ):
            with pytest.raises(MalformedTicket, match="could not be read as a Lotkeeper ticket"):
                parse_code(forged)


@pytest.mark.parametrize(
    "raw",
    [
        "\u0661\u0662-ABCDEF",  # the example: Arabic-Indic 12
        "12-ABCDE\u0131",  # dotless i, upper-cases to an ASCII I
        "12-ABCD\ufb01",  # the "fi" ligature, upper-cases to FI
        "\uff2c\uff2b1.K2.7.100." + "A" * 32,  # full-width LK
        "12\u200b-ABCDEF",  # a zero-width space is not whitespace
    ],
)
def test_other_non_ascii_lookalikes_are_malformed(raw: str) -> None:
    with pytest.raises(MalformedTicket):
        parse_code(raw)


def test_whitespace_of_any_kind_around_an_ascii_code_is_dropped() -> None:
    short = RING.short_code("K2", 55)
    assert parse_code(f"\u00a0{short.text}\u3000\n") == short
