"""Ticket signing key rotation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind
from core.errors import InvalidInput
from core.services.events import record_event
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import SigningKey, signing_keys_table

K = signing_keys_table.c


def key_in_use(site_column: Any, key_column: Any) -> ColumnElement[bool]:
    """The row's signing key is not retired: part of every write that
    accepts a code (exit, check-in), so a retired key stops working at every
    kiosk at once; each process's key ring cache only speeds up the
    signature check."""
    return exists(
        select(K.key_id).where(
            K.site_id == site_column, K.key_id == key_column, K.retired_at.is_(None)
        )
    )


# Retiring decides by writing the key's row: once, and never the active key.
_RETIRE = (
    update(signing_keys_table)
    .where(
        K.site_id == bindparam("b_site"),
        K.key_id == bindparam("b_key"),
        K.retired_at.is_(None),
        K.active.is_(False),
    )
    .values(retired_at=bindparam("now"))
)


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    active: bool
    created_at: datetime
    retired_at: datetime | None


def list_keys(site: Site) -> list[KeyInfo]:
    def work(session: Session) -> list[KeyInfo]:
        rows = session.scalars(select(SigningKey).where(SigningKey.site_id == site.id))
        keys = [KeyInfo(k.key_id, k.active, k.created_at, k.retired_at) for k in rows]
        return sorted(keys, key=lambda k: int(k.key_id[1:]))

    return site.db.read(work)


def rotate_key(site: Site, source: str = "") -> KeyInfo:
    """Create a new signing key and sign new tickets with it. Tickets signed
    with earlier keys keep verifying until those keys are retired."""

    def work(session: Session) -> KeyInfo:
        now = site.clock.now()
        ids = session.scalars(select(SigningKey.key_id).where(SigningKey.site_id == site.id)).all()
        key_id = f"K{max((int(i[1:]) for i in ids), default=0) + 1}"
        session.execute(
            update(SigningKey).where(SigningKey.site_id == site.id).values(active=False)
        )
        session.add(
            SigningKey(
                site_id=site.id,
                key_id=key_id,
                salt=secrets.token_hex(16),
                active=True,
                created_at=now,
            )
        )
        record_event(
            session,
            site.id,
            now,
            EventKind.KEY_ROTATED,
            f"Ticket signing key {key_id} is now in use",
            source=source,
            data={"key_id": key_id},
        )
        return KeyInfo(key_id, True, now, None)

    info = site.db.write(work)
    site.keyring(refresh=True)
    return info


def retire_key(site: Site, key_id: str, source: str = "") -> KeyInfo:
    """Stop accepting tickets signed with `key_id` (not the active key), at
    every kiosk from the moment this commits: exits and check-ins decide
    with the key's row in their write (`key_in_use`)."""
    key_id = key_id.strip().upper()

    def work(session: Session) -> KeyInfo:
        now = site.clock.now()
        retired = session.execute(_RETIRE, {"b_site": site.id, "b_key": key_id, "now": now})
        key = session.get(SigningKey, (site.id, key_id), populate_existing=True)
        if key is None:
            raise InvalidInput("There is no signing key {key_id}.", key_id=key_id)
        if rows_touched(retired) == 1:
            record_event(
                session,
                site.id,
                now,
                EventKind.KEY_RETIRED,
                f"Ticket signing key {key_id} retired",
                source=source,
                data={"key_id": key_id},
            )
        elif key.active:
            raise InvalidInput(
                "{key_id} signs new tickets; rotate to a new key before retiring it.", key_id=key_id
            )
        return KeyInfo(key.key_id, key.active, key.created_at, key.retired_at)

    info = site.db.write(work)
    site.keyring(refresh=True)
    return info
