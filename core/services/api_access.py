"""What the remote API needs from the engine besides the driver services:
bearer tokens (expiring, revocable, stored only as hashes) and the memory
of writes sent with an Idempotency-Key (the first answer, for replays)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.orm import Session

from core.errors import LotkeeperError
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import Account as AccountRow
from core.storage.models import ApiToken, IdempotentRequest

TOKEN_LIFETIME = timedelta(hours=12)
ABANDONED_AFTER = timedelta(minutes=5)
"""A first request still unanswered after this died with its server: its
key may be used again."""


class NotSignedIn(LotkeeperError):
    """No bearer token, or one that is unknown, expired or revoked."""

    code = "not_signed_in"


class IdempotencyConflict(LotkeeperError):
    """The key was used for another request, or its first use is still
    being answered."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class Token:
    token: str  # shown once, to the client that signed in
    account_id: int
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(site: Site, account_id: int, lifetime: timedelta = TOKEN_LIFETIME) -> Token:
    """A new bearer token for a signed-in account."""
    token = secrets.token_urlsafe(32)
    now = site.clock.now()

    def work(session: Session) -> None:
        session.add(
            ApiToken(
                token_hash=_hash(token),
                site_id=site.id,
                account_id=account_id,
                created_at=now,
                expires_at=now + lifetime,
            )
        )

    site.db.write(work)
    return Token(token, account_id, now + lifetime)


def account_for_token(site: Site, token: str) -> int:
    """The account a bearer token stands for, or `NotSignedIn`."""
    now = site.clock.now()

    def work(session: Session) -> int | None:
        row = session.get(ApiToken, _hash(token))
        if row is None or row.site_id != site.id or row.revoked_at is not None:
            return None
        if row.expires_at <= now or session.get(AccountRow, row.account_id) is None:
            return None
        return row.account_id

    account_id = site.db.read(work) if token else None
    if account_id is None:
        raise NotSignedIn("Please sign in again: this session is unknown, expired or ended.")
    return account_id


def revoke_token(site: Site, token: str) -> None:
    """Sign out: the token stops working at once."""
    site.db.write(
        lambda s: s.execute(
            update(ApiToken)
            .where(
                ApiToken.token_hash == _hash(token),
                ApiToken.site_id == site.id,
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=site.clock.now())
        )
    )


@dataclass(frozen=True)
class Remembered:
    status: int
    body: str


def begin_idempotent(site: Site, scope: str, key: str, fingerprint: str) -> Remembered | None:
    """Start a write under `key`: None when it is new (go on, then call
    `finish_idempotent`, or `release_idempotent` if it fails), the first
    answer when it is a replay of the same request, `IdempotencyConflict`
    when the key was used for another request or the first one is still
    running."""
    if not 1 <= len(key) <= 255:
        raise IdempotencyConflict("An Idempotency-Key has 1 to 255 characters.")

    def work(session: Session) -> Remembered | None:
        now = site.clock.now()
        row = session.get(IdempotentRequest, (site.id, scope, key))
        if row is None:
            session.add(
                IdempotentRequest(
                    site_id=site.id,
                    scope=scope,
                    key=key,
                    fingerprint=fingerprint,
                    status=0,
                    body="",
                    created_at=now,
                )
            )
            session.flush()  # two at once: the second gets a duplicate key and reruns
            return None
        if row.fingerprint != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used for a different request."
            )
        if row.status == 0 and row.created_at <= now - ABANDONED_AFTER:
            # The first try died with its server: one retry takes the key
            # over, decided by this write (two retries at once: one wins).
            taken = session.execute(
                update(IdempotentRequest)
                .where(
                    *_this(site, scope, key),
                    IdempotentRequest.status == 0,
                    IdempotentRequest.created_at == row.created_at,
                )
                .values(created_at=now)
            )
            if rows_touched(taken) == 1:
                return None
        if row.status == 0:
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is still being answered; retry shortly."
            )
        return Remembered(row.status, row.body)

    return site.db.write(work)


def _this(site: Site, scope: str, key: str) -> tuple[ColumnElement[bool], ...]:
    return (
        IdempotentRequest.site_id == site.id,
        IdempotentRequest.scope == scope,
        IdempotentRequest.key == key,
    )


def finish_idempotent(site: Site, scope: str, key: str, status: int, body: str) -> None:
    """Keep the answer of a write begun with `begin_idempotent`. An answer
    the client should be able to try again (a server-side failure) is not
    kept: the key is freed instead."""
    if status >= 500:
        release_idempotent(site, scope, key)
        return
    site.db.write(
        lambda s: s.execute(
            update(IdempotentRequest)
            .where(*_this(site, scope, key), IdempotentRequest.status == 0)
            .values(status=status, body=body)
        )
    )


def release_idempotent(site: Site, scope: str, key: str) -> None:
    """Free a key whose first request failed without an answer to keep (an
    error the server did not expect): the client may retry with it at once.
    Only a key still being answered is freed, never a kept answer."""
    site.db.write(
        lambda s: s.execute(
            delete(IdempotentRequest).where(*_this(site, scope, key), IdempotentRequest.status == 0)
        )
    )
