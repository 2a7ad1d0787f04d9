"""The audit trail: what staff did, append-only and hash-chained.

Each row's hash is SHA-256 over its own content and the previous row's hash,
so an edited row no longer matches its hash, a deleted row leaves a gap in
the sequence, and a deleted newest row no longer matches the chain's head
(`audit_heads`, moved in the same transaction as each new row by a
conditional UPDATE that must touch one row, so two writers can never both
extend the chain from the same row). `verify_audit` walks the chain and
names the first broken link.

Every audited action also appends an event (the live feed) in the same
transaction; the event says who did it and why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.site import Site
from core.storage.database import Conflict, rows_touched
from core.storage.models import AuditHead, AuditRow

GENESIS = "0" * 64
_BATCH = 1000


@dataclass(frozen=True)
class Actor:
    """Who did something: a staff member, or an operator tool ("cli")."""

    name: str
    staff_id: int | None = None
    role: str = "operator"


CLI = Actor("cli")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    staff_name: str
    action: str
    target: str
    reason: str
    data: dict[str, Any]


@dataclass(frozen=True)
class AuditCheck:
    rows: int
    broken_at: int | None
    """The seq of the first row that does not fit the chain (None: intact)."""
    problem: str

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _digest(
    prev_hash: str,
    seq: int,
    at: datetime,
    staff_id: int | None,
    staff_name: str,
    action: str,
    target: str,
    reason: str,
    data: str,
) -> str:
    # A JSON list: no field can run into the next, whatever it contains.
    content = json.dumps(
        [prev_hash, seq, at.isoformat(), staff_id, staff_name, action, target, reason, data],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode()).hexdigest()


def record_audit(
    session: Session,
    site: Site,
    actor: Actor,
    action: str,
    *,
    target: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append one row to the site's audit chain inside the caller's
    transaction; returns its seq. Raises `Conflict` (the unit of work
    reruns) when another writer extended the chain first."""
    at = at or site.clock.now()
    head = session.get(AuditHead, site.id)
    prev_seq, prev_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    seq = prev_seq + 1
    encoded = json.dumps(data or {}, sort_keys=True, default=str)
    name, what, about, why = actor.name[:64], action[:32], target[:64], reason[:255]
    digest = _digest(prev_hash, seq, at, actor.staff_id, name, what, about, why, encoded)
    values: dict[str, Any] = {
        "site_id": site.id,
        "seq": seq,
        "at": at,
        "staff_id": actor.staff_id,
        "staff_name": name,
        "action": what,
        "target": about,
        "reason": why,
        "data": encoded,
        "prev_hash": prev_hash,
        "hash": digest,
    }
    if head is None:
        # The first row: the head's primary key makes a racing first row fail
        # as a duplicate, which reruns the unit of work.
        session.execute(insert(AuditHead).values(site_id=site.id, seq=seq, hash=digest))
    else:
        moved = session.execute(
            update(AuditHead)
            .where(AuditHead.site_id == site.id, AuditHead.seq == prev_seq)
            .values(seq=seq, hash=digest)
        )
        if rows_touched(moved) != 1:
            raise Conflict("the audit chain moved on")
    session.execute(insert(AuditRow).values(**values))
    return seq


def verify_audit(site: Site) -> AuditCheck:
    """Walk the site's audit chain from the first row; report the first row
    that was edited, removed or inserted out of turn."""
    prev_hash, expected_seq, rows = GENESIS, 1, 0
    while True:
        after = expected_seq - 1

        def page(s: Session, after: int = after) -> list[AuditRow]:
            return list(
                s.scalars(
                    select(AuditRow)
                    .where(AuditRow.site_id == site.id, AuditRow.seq > after)
                    .order_by(AuditRow.seq)
                    .limit(_BATCH)
                )
            )

        batch = site.db.read(page)
        for row in batch:
            if row.seq != expected_seq:
                return AuditCheck(rows, expected_seq, f"row {expected_seq} is missing")
            if row.prev_hash != prev_hash:
                return AuditCheck(rows, row.seq, f"row {row.seq} does not follow row {row.seq - 1}")
            digest = _digest(
                row.prev_hash,
                row.seq,
                row.at,
                row.staff_id,
                row.staff_name,
                row.action,
                row.target,
                row.reason,
                row.data,
            )
            if digest != row.hash:
                return AuditCheck(rows, row.seq, f"row {row.seq} was changed after it was written")
            prev_hash, expected_seq, rows = row.hash, expected_seq + 1, rows + 1
        if len(batch) < _BATCH:
            break
    head = site.db.read(lambda s: s.get(AuditHead, site.id))
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    if head_seq != rows or head_hash != prev_hash:
        return AuditCheck(
            rows, rows + 1, f"the chain ends at row {rows} but {head_seq} rows were written"
        )
    return AuditCheck(rows, None, f"{rows} rows, chain intact")


def audit_entries(site: Site, limit: int = 100) -> list[AuditEntry]:
    """The newest audit rows, newest first."""
    rows = site.db.read(
        lambda s: list(
            s.scalars(
                select(AuditRow)
                .where(AuditRow.site_id == site.id)
                .order_by(AuditRow.seq.desc())
                .limit(limit)
            )
        )
    )
    return [
        AuditEntry(r.seq, r.at, r.staff_name, r.action, r.target, r.reason, json.loads(r.data))
        for r in rows
    ]
