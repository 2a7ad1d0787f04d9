"""Ticket codes at the exit: forged, altered, unknown-key, reused and malformed
codes each get their own error and an event for the attendant."""

from __future__ import annotations

import pytest
from conftest import SiteFactory, make_layout

from core import services as lk
from core.errors import (
    MalformedTicket,
    TicketAlreadyUsed,
    TicketKeyUnknown,
    TicketSignatureInvalid,
    TicketUnknown,
)
from core.site import Site
from core.ticket_codes import SignedCode, parse_code


def rejections(site: Site) -> list[str]:
    return [e.data["reason"] for e in lk.recent_events(site).events if e.kind == "invalid_ticket"]


def test_ticket_exits_once(site: Site) -> None:
    ticket = lk.enter(site, "small")
    lk.exit(site, ticket.code)
    with pytest.raises(TicketAlreadyUsed, match="already used to exit at 09:00"):
        lk.exit(site, ticket.code)
    with pytest.raises(TicketAlreadyUsed):
        lk.exit(site, ticket.short_code)
    assert rejections(site) == ["already_used", "already_used"]


def test_short_code_exits_and_tolerates_misread_characters(site: Site) -> None:
    ticket = lk.enter(site, "small")
    number, check = ticket.short_code.split("-")
    typed = f" {number} - {check.lower().replace('O', '0').replace('I', '1')} "
    assert lk.exit(site, typed).ticket_id == ticket.id


def test_altered_code_is_refused(site: Site) -> None:
    ticket = lk.enter(site, "small")
    other = lk.enter(site, "small")
    code = parse_code(ticket.code)
    assert isinstance(code, SignedCode)
    # Someone swaps in another ticket's id, keeping the tag.
    altered = SignedCode(code.key_id, other.id, code.issued_at, code.tag).text
    with pytest.raises(TicketSignatureInvalid):
        lk.exit(site, altered)
    flipped = ticket.code[:-1] + ("A" if ticket.code[-1] != "A" else "B")
    with pytest.raises(TicketSignatureInvalid):
        lk.exit(site, flipped)
    number, check = ticket.short_code.split("-")
    with pytest.raises(TicketSignatureInvalid):
        lk.exit(site, f"{number}-{'A' if check[0] != 'A' else 'B'}{check[1:]}")
    assert rejections(site) == ["bad_signature"] * 3
    assert lk.exit(site, ticket.code).ticket_id == ticket.id


def test_code_forged_with_another_secret_is_refused(
    make_site: SiteFactory, site: Site, tmp_path: object
) -> None:
    ticket = lk.enter(site, "small")
    # A second site with its own secret issues a code for the same ticket id.
    forged_ring = lk.list_keys(site)  # same key ids, different derived keys
    assert forged_ring
    from core.ticket_codes import KeyRing

    ring = KeyRing.build(b"another-secret" * 4, site.id, [("K1", "00" * 16, True)])
    forged = ring.sign(ticket.id, parse_code(ticket.code).issued_at)  # type: ignore[union-attr]
    with pytest.raises(TicketSignatureInvalid):
        lk.exit(site, forged.text)
    assert lk.exit(site, ticket.code).ticket_id == ticket.id


def test_code_with_unknown_key_is_refused(site: Site) -> None:
    ticket = lk.enter(site, "small")
    code = parse_code(ticket.code)
    assert isinstance(code, SignedCode)
    with pytest.raises(TicketKeyUnknown, match="not issued by this garage"):
        lk.exit(site, SignedCode("K9", code.ticket_id, code.issued_at, code.tag).text)
    assert rejections(site) == ["unknown_key"]


def test_well_signed_code_for_missing_ticket_is_refused(site: Site) -> None:
    ring = site.keyring()
    with pytest.raises(TicketUnknown):
        lk.exit(site, ring.sign(999, 1_700_000_000).text)
    with pytest.raises(TicketUnknown):
        lk.exit(site, ring.short_code("K1", 999).text)


def test_well_signed_code_whose_issue_time_disagrees_is_refused(site: Site) -> None:
    ticket = lk.enter(site, "small")
    ring = site.keyring()
    with pytest.raises(TicketSignatureInvalid):
        lk.exit(site, ring.sign(ticket.id, 1_700_000_000).text)


@pytest.mark.parametrize(
    "raw", ["", "hello", "LK1.K1.1.2.SHORT", "https://example.com/qr", "12345", "x" * 500]
)
def test_malformed_scan_is_refused_with_a_clear_message(site: Site, raw: str) -> None:
    with pytest.raises(MalformedTicket, match="could not be read"):
        lk.exit(site, raw)
    assert rejections(site) == ["malformed"]


def test_rotation_keeps_old_tickets_valid_until_retired(make_site: SiteFactory) -> None:
    site = make_site(make_layout(small=3))
    other_kiosk = make_site()  # a second process of the same site
    old = lk.enter(site, "small")
    older = lk.enter(site, "small")
    assert lk.rotate_key(site).key_id == "K2"
    new = lk.enter(site, "small")
    assert new.code.startswith("LK1.K2.")
    # The other kiosk has K1 cached; it picks up K2 on first sight.
    assert lk.exit(other_kiosk, new.code).ticket_id == new.id
    assert lk.exit(other_kiosk, old.code).ticket_id == old.id
    lk.retire_key(site, "K1")
    with pytest.raises(TicketKeyUnknown):
        lk.exit(site, older.code)
    assert [k.key_id for k in lk.list_keys(site) if k.retired_at is None] == ["K2"]


def test_active_key_cannot_be_retired(site: Site) -> None:
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="rotate"):
        lk.retire_key(site, "K1")
