"""Signed ticket codes.

Full code (the QR holds it; QR alphanumeric mode keeps it small)::

    LK1.<key id>.<ticket id>.<issued, unix seconds>.<tag>

The tag is HMAC-SHA256 over the version, site, key id, ticket id and issue
time, truncated to 160 bits and written in base32. The printed short code,
``<ticket id>-<6 check characters>``, is what a driver types when the QR will
not scan; its check is an HMAC too, verified against the stored ticket.
Reservation codes are the same with prefix ``LR1`` (short: ``R<id>-<check>``);
the prefix is signed, so neither kind of code passes for the other.
Codes are ASCII: any other character (Arabic-Indic or full-width digits,
letters that upper-case to ASCII) makes a code malformed, never a number.

Keys live in a key ring: the signing key is derived from the site's master
secret (config) and a per-key salt (database), so rotating adds a key that
every kiosk picks up while tickets signed with older keys keep verifying until
that key is retired. The signature only proves who issued a code; whether it
may still be used is decided by the database (a ticket exits once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import MalformedTicket, TicketKeyUnknown, TicketSignatureInvalid

VERSION = "LK1"
# Reservation codes are signed the same way under their own prefix, which is
# part of the signed message: a ticket can never pass for a reservation.
RESERVATION = "LR1"
TAG_BYTES = 20
SHORT_CHECK_CHARS = 6

# ASCII digits only: `\d` also takes Arabic-Indic, full-width and other Unicode
# digits, which int() then reads as numbers (U+0661 U+0662 as ticket 12).
_FULL = re.compile(r"(LK1|LR1)\.([A-Z0-9]{1,8})\.([0-9]{1,18})\.([0-9]{1,12})\.([A-Z2-7]{32})")
_SHORT = re.compile(r"([TR]?)([0-9]{1,18})-?([A-Z2-7]{6})")
# Characters people type for base32 letters they misread on paper.
_TYPO = str.maketrans({"0": "O", "1": "I", "8": "B"})


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class SignedCode:
    key_id: str
    ticket_id: int
    issued_at: int
    tag: str
    version: str = VERSION

    @property
    def text(self) -> str:
        return f"{self.version}.{self.key_id}.{self.ticket_id}.{self.issued_at}.{self.tag}"


@dataclass(frozen=True)
class ShortCode:
    ticket_id: int
    check: str
    version: str = VERSION

    @property
    def text(self) -> str:
        prefix = "R" if self.version == RESERVATION else ""
        return f"{prefix}{self.ticket_id}-{self.check}"


def parse_code(raw: str) -> SignedCode | ShortCode:
    """Read a scanned or typed code. Raises `MalformedTicket`, also for any
    character outside ASCII (other scripts' digits, full-width forms, letters
    that upper-case to ASCII such as U+0131 or U+FB01); whitespace of any kind is
    dropped first, as a scanner or a paste may add it."""
    text = "".join(raw.split())
    if len(text) > 120 or not text.isascii():
        raise MalformedTicket()
    text = text.upper()
    match = _FULL.fullmatch(text)
    if match:
        version, key_id, ticket_id, issued, tag = match.groups()
        return SignedCode(key_id, int(ticket_id), int(issued), tag, version)
    if "-" in text:
        number, _, check = text.partition("-")
        text = f"{number}-{check.translate(_TYPO)}"
    match = _SHORT.fullmatch(text)
    if match:
        prefix, number, check = match.groups()
        return ShortCode(int(number), check, RESERVATION if prefix == "R" else VERSION)
    raise MalformedTicket()


def derive_key(master_secret: bytes, site_id: str, key_id: str, salt: str) -> bytes:
    info = f"lotkeeper/ticket-key/v1|{site_id}|{key_id}|{salt}".encode()
    return hmac.new(master_secret, info, hashlib.sha256).digest()


@dataclass(frozen=True)
class KeyRing:
    """The usable keys of one site; `active_id` signs new tickets."""

    site_id: str
    keys: dict[str, bytes]
    active_id: str

    @classmethod
    def build(
        cls, master_secret: bytes, site_id: str, rows: Iterable[tuple[str, str, bool]]
    ) -> KeyRing:
        """`rows` are (key id, salt, active) for every key not retired."""
        keys: dict[str, bytes] = {}
        active = None
        for key_id, salt, is_active in rows:
            keys[key_id] = derive_key(master_secret, site_id, key_id, salt)
            if is_active:
                active = key_id
        if active is None:
            raise ValueError(f"site {site_id!r} has no active signing key")
        return cls(site_id, keys, active)

    def _tag(self, version: str, key_id: str, ticket_id: int, issued_at: int) -> str:
        message = f"{version}|{self.site_id}|{key_id}|{ticket_id}|{issued_at}".encode()
        return _b32(hmac.new(self.keys[key_id], message, hashlib.sha256).digest()[:TAG_BYTES])

    def sign(self, ticket_id: int, issued_at: int, version: str = VERSION) -> SignedCode:
        """A full code for a ticket (or, with `version=RESERVATION`, a reservation)."""
        tag = self._tag(version, self.active_id, ticket_id, issued_at)
        return SignedCode(self.active_id, ticket_id, issued_at, tag, version)

    def code_for(
        self, key_id: str, ticket_id: int, issued_at: int, version: str = VERSION
    ) -> SignedCode:
        """The full code issued earlier with `key_id` (to show it again)."""
        if key_id not in self.keys:
            raise TicketKeyUnknown(key_id)
        return SignedCode(
            key_id, ticket_id, issued_at, self._tag(version, key_id, ticket_id, issued_at), version
        )

    def verify(self, code: SignedCode) -> None:
        """Raise `TicketKeyUnknown` or `TicketSignatureInvalid` unless genuine."""
        if code.key_id not in self.keys:
            raise TicketKeyUnknown(code.key_id)
        expected = self._tag(code.version, code.key_id, code.ticket_id, code.issued_at)
        if not hmac.compare_digest(expected, code.tag):
            raise TicketSignatureInvalid()

    def short_code(self, key_id: str, ticket_id: int, version: str = VERSION) -> ShortCode:
        if key_id not in self.keys:
            raise TicketKeyUnknown(key_id)
        message = f"{version}|short|{self.site_id}|{ticket_id}".encode()
        digest = hmac.new(self.keys[key_id], message, hashlib.sha256).digest()
        return ShortCode(ticket_id, _b32(digest)[:SHORT_CHECK_CHARS], version)

    def verify_short(self, key_id: str, code: ShortCode) -> None:
        expected = self.short_code(key_id, code.ticket_id, code.version).check
        if not hmac.compare_digest(expected, code.check):
            raise TicketSignatureInvalid()
