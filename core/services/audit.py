"""The audit trail: what staff did, append-only and chained under the site's key.

Each row carries an HMAC-SHA256 over its own content and the previous row's
MAC, keyed by a key derived from the site's master secret (config or the
0600 secret file, never the database). Whoever can write the database but
does not hold the secret can neither edit a row nor forge a new one: a row
whose hash was recomputed with plain SHA-256, or with another secret, no
longer verifies. A deleted row leaves a gap in the sequence, and a deleted
newest row no longer matches the chain's head (`audit_heads`, moved in the
same transaction as each new row by a conditional UPDATE that must touch one
row, so two writers can never both extend the chain from the same row).
`verify_audit` walks the whole chain and names every row that does not fit.

Rows written before the chain was keyed carry the old unkeyed SHA-256 hash.
The first keyed write after them is a seal row (`audit_sealed`) whose MAC
covers the last unkeyed row's hash, and so every unkeyed row before it:
unkeyed rows are accepted only before such a seal (see docs/engine.md,
"Audit trail").

Every audited action also appends an event (the live feed) in the same
transaction; the event says who did it and why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core.site import Site
from core.storage.database import Conflict, rows_touched
from core.storage.models import AuditHead, AuditRow

GENESIS = "0" * 64
SEAL_ACTION = "audit_sealed"
"""The row that seals the unkeyed rows written before the chain was keyed."""
HEAD_MAC_CHARS = 16
"""How much of the head's MAC a report shows: 64 bits, enough to tell a
rewritten chain from the one on paper."""
_KEY_LABEL = b"lotkeeper/audit-chain/v1|"
# Ticket keys are derived with "lotkeeper/ticket-key/v1|..." (core.ticket_codes):
# a different label, so no audit key is ever a ticket key or the other way round.
_BATCH = 1000


@dataclass(frozen=True)
class Actor:
    """Who did something: a staff member, or an operator tool ("cli")."""

    name: str
    staff_id: int | None = None
    role: str = "operator"


CLI = Actor("cli")
_ENGINE = Actor("lotkeeper")


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
class AuditProblem:
    """Rows `seq` to `last` (`last` is `seq` for one row) do not fit the chain.

    `kind`: ``changed`` (its MAC fails: edited, or written with another
    secret), ``unkeyed`` (an unkeyed hash after the chain was keyed: rewritten
    without the key), ``unsealed`` (unkeyed rows no seal covers), ``resealed``
    (unkeyed rows rewritten after their seal), ``missing``, ``link`` (does not
    follow the row before), ``inserted`` (after the head), ``head`` (the head
    does not match its row)."""

    seq: int
    last: int
    kind: str
    description: str


@dataclass(frozen=True)
class AuditHeadInfo:
    """The newest row of a site's chain as the head records it, and how many
    rows the chain holds: printed on reports so a later rewrite differs from
    the paper."""

    seq: int
    mac: str
    rows: int

    @property
    def short_mac(self) -> str:
        return self.mac[:HEAD_MAC_CHARS]


@dataclass(frozen=True)
class AuditCheck:
    rows: int
    """Rows found in the chain."""
    problems: tuple[AuditProblem, ...] = ()
    """Every row that does not fit, in chain order (empty: intact)."""
    head_seq: int = 0
    head_mac: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def broken_at(self) -> int | None:
        """The seq of the first row that does not fit the chain (None: intact)."""
        return self.problems[0].seq if self.problems else None

    @property
    def problem(self) -> str:
        """The first problem, or a summary of an intact chain."""
        if self.problems:
            return self.problems[0].description
        return f"{self.rows} rows, chain intact"


def audit_key(master_secret: bytes, site_id: str) -> bytes:
    """The site's audit chain key: derived from the master secret under its
    own label and the site id, so it is neither a ticket key nor another
    site's audit key."""
    return hmac.new(master_secret, _KEY_LABEL + site_id.encode(), hashlib.sha256).digest()


def _content(
    prev_hash: str,
    seq: int,
    at: datetime,
    staff_id: int | None,
    staff_name: str,
    action: str,
    target: str,
    reason: str,
    data: str,
) -> bytes:
    # A JSON list: no field can run into the next, whatever it contains.
    return json.dumps(
        [prev_hash, seq, at.isoformat(), staff_id, staff_name, action, target, reason, data],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _row_content(row: AuditRow) -> bytes:
    return _content(
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


def _legacy_digest(content: bytes) -> str:
    """The unkeyed hash rows carried before the chain was keyed."""
    return hashlib.sha256(content).hexdigest()


def _mac(key: bytes, content: bytes) -> str:
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _row_values(
    site: Site,
    key: bytes,
    seq: int,
    prev_hash: str,
    at: datetime,
    actor: Actor,
    action: str,
    target: str,
    reason: str,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    encoded = json.dumps(data or {}, sort_keys=True, default=str)
    name, what, about, why = actor.name[:64], action[:32], target[:64], reason[:255]
    content = _content(prev_hash, seq, at, actor.staff_id, name, what, about, why, encoded)
    return {
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
        "hash": _mac(key, content),
    }


def _written_unkeyed(session: Session, site: Site, key: bytes, head: AuditHead) -> bool:
    """Whether the chain's newest row carries an unkeyed hash (the chain was
    written before keying, and needs its seal)."""
    row = session.get(AuditRow, (site.id, head.seq))
    if row is None:
        return False
    content = _row_content(row)
    return not _same(row.hash, _mac(key, content)) and _same(row.hash, _legacy_digest(content))


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
    reruns) when another writer extended the chain first. The first row
    after rows written unkeyed is preceded by their seal."""
    at = at or site.clock.now()
    if at.tzinfo is not None:
        # Stored as UTC: the MAC must cover the time as it is read back. (A
        # naive time is refused by the column, as before.)
        at = at.astimezone(UTC)
    key = audit_key(site.master_secret, site.id)
    head = session.get(AuditHead, site.id)
    head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
    rows: list[dict[str, Any]] = []
    prev_seq, prev_hash = head_seq, head_hash
    if head is not None and _written_unkeyed(session, site, key, head):
        seal = _row_values(
            site,
            key,
            prev_seq + 1,
            prev_hash,
            at,
            _ENGINE,
            SEAL_ACTION,
            f"rows 1-{prev_seq}",
            "rows written before the chain was keyed",
            {"legacy_rows": prev_seq},
        )
        rows.append(seal)
        prev_seq, prev_hash = seal["seq"], seal["hash"]
    row = _row_values(site, key, prev_seq + 1, prev_hash, at, actor, action, target, reason, data)
    rows.append(row)
    seq, digest = row["seq"], row["hash"]
    if head is None:
        # The first row: the head's primary key makes a racing first row fail
        # as a duplicate, which reruns the unit of work.
        session.execute(insert(AuditHead).values(site_id=site.id, seq=seq, hash=digest))
    else:
        moved = session.execute(
            update(AuditHead)
            .where(AuditHead.site_id == site.id, AuditHead.seq == head_seq)
            .values(seq=seq, hash=digest)
        )
        if rows_touched(moved) != 1:
            raise Conflict("the audit chain moved on")
    session.execute(insert(AuditRow), rows)
    return int(seq)


def read_audit_head(session: Session, site: Site) -> AuditHeadInfo:
    """The chain's head and row count, read in the caller's transaction."""
    head = session.get(AuditHead, site.id)
    rows = session.scalar(select(func.count()).where(AuditRow.site_id == site.id))
    if head is None:
        return AuditHeadInfo(0, GENESIS, int(rows or 0))
    return AuditHeadInfo(head.seq, head.hash, int(rows or 0))


def _rows(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first} to {last}"


def _describe(kind: str, first: int, last: int, extra: str = "") -> str:
    rows, one = _rows(first, last), first == last
    was, it = ("was", "it was") if one else ("were", "they were")
    if kind == "changed":
        return f"{rows} {was} changed after {it} written"
    if kind == "unkeyed":
        return f"{rows} {was} rewritten without the site key ({extra})"
    if kind == "missing":
        return f"{rows} {'is' if one else 'are'} missing{extra}"
    return extra


class _Walk:
    """Verifies rows one by one in seq order and keeps every problem."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.problems: list[AuditProblem] = []
        self.rows = 0
        self.last_seq = 0
        self.prev_hash: str | None = GENESIS  # None: the previous row is missing
        self.prev_fits = True
        self.keyed_from: int | None = None
        self.unkeyed: tuple[int, int] | None = None  # unkeyed rows before the seal

    def add(self, kind: str, first: int, last: int, description: str) -> None:
        self.problems.append(AuditProblem(first, last, kind, description))

    def add_row(self, kind: str, seq: int, extra: str = "") -> None:
        """A row's own problem; runs of the same problem are one range (a
        wrong secret fails every row: one line, not a million)."""
        previous = self.problems[-1] if self.problems else None
        first = seq
        if previous is not None and previous.kind == kind and previous.last == seq - 1:
            first = previous.seq
            self.problems.pop()
        self.add(kind, first, seq, _describe(kind, first, seq, extra))

    def unsealed(self) -> None:
        assert self.unkeyed is not None
        first, last = self.unkeyed
        self.add(
            "unsealed",
            first,
            last,
            f"{_rows(first, last)} carry unkeyed hashes that no seal covers "
            "(written before the chain was keyed; the next audited action seals them)",
        )

    def row(self, row: AuditRow) -> None:
        seq = row.seq
        if seq > self.last_seq + 1:
            first, last = self.last_seq + 1, seq - 1
            self.add("missing", first, last, _describe("missing", first, last))
            self.prev_hash = None
        content = _row_content(row)
        keyed = _same(row.hash, _mac(self.key, content))
        unkeyed = not keyed and _same(row.hash, _legacy_digest(content))
        fits = keyed or (unkeyed and self.keyed_from is None)
        if keyed and self.keyed_from is None:
            self.keyed_from = seq
            if self.unkeyed is not None and not _is_seal(row):
                self.unsealed()
        elif unkeyed and self.keyed_from is None:
            first = self.unkeyed[0] if self.unkeyed is not None else seq
            self.unkeyed = (first, seq)
        elif unkeyed:
            self.add_row(
                "unkeyed", seq, f"unkeyed hashes after the chain was keyed at row {self.keyed_from}"
            )
        elif not keyed:
            self.add_row("changed", seq)
        if (
            fits
            and self.prev_fits
            and self.prev_hash is not None
            and not _same(row.prev_hash, self.prev_hash)
        ):
            if self.unkeyed is not None and self.keyed_from == seq and _is_seal(row):
                # The seal's MAC pins the last unkeyed hash, which covers every
                # unkeyed row: some were rewritten, hashes recomputed, after it.
                first, last = self.unkeyed
                self.add(
                    "resealed",
                    first,
                    last,
                    f"{_rows(first, last)} (unkeyed, sealed by row {seq}) "
                    "were rewritten after the seal",
                )
            else:
                self.add("link", seq, seq, f"row {seq} does not follow row {seq - 1}")
        self.prev_hash, self.prev_fits = row.hash, fits
        self.last_seq, self.rows = seq, self.rows + 1


def _is_seal(row: AuditRow) -> bool:
    """Whether a (verified) row is the seal of the unkeyed rows before it."""
    if row.action != SEAL_ACTION or row.staff_id is not None:
        return False
    try:
        sealed = json.loads(row.data).get("legacy_rows")
    except (ValueError, AttributeError):
        return False
    return bool(sealed == row.seq - 1)


def verify_audit(site: Site) -> AuditCheck:
    """Walk the site's whole audit chain and name every row that was edited,
    removed, inserted out of turn or rewritten without the site key, and a
    removed tail (the head records more rows than there are). Rows removed
    from the tail together with the head moved back cannot be told from the
    database alone: the head printed on reports is for that."""
    walk = _Walk(audit_key(site.master_secret, site.id))

    def page(s: Session, after: int) -> list[AuditRow]:
        return list(
            s.scalars(
                select(AuditRow)
                .where(AuditRow.site_id == site.id, AuditRow.seq > after)
                .order_by(AuditRow.seq)
                .limit(_BATCH)
            )
        )

    while True:
        batch = site.db.read(lambda s: page(s, walk.last_seq))
        for row in batch:
            walk.row(row)
        if len(batch) == _BATCH:
            continue
        head = site.db.read(lambda s: s.get(AuditHead, site.id))
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
        # Rows written while we walked: read on until the head is reached.
        if head_seq > walk.last_seq and batch:
            continue
        break
    if walk.keyed_from is None and walk.unkeyed is not None:
        walk.unsealed()
    last = walk.last_seq
    if head_seq > last:
        extra = f": the chain ends at row {last} but {head_seq} rows were written"
        walk.add("missing", last + 1, head_seq, _describe("missing", last + 1, head_seq, extra))
    elif head_seq < last:
        walk.add(
            "inserted",
            head_seq + 1,
            last,
            f"{_rows(head_seq + 1, last)} came after the chain's head (row {head_seq}): "
            "not written through the chain",
        )
    if 0 < head_seq <= last:
        at_head = site.db.read(lambda s: s.get(AuditRow, (site.id, head_seq)))
        if at_head is not None and not _same(at_head.hash, head_hash):
            walk.add("head", head_seq, head_seq, f"row {head_seq} does not match the chain's head")
    problems = tuple(sorted(walk.problems, key=lambda p: p.seq))
    return AuditCheck(walk.rows, problems, head_seq, head_hash)


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


def audit_row_mac(site: Site, seq: int) -> str | None:
    """The MAC row `seq` of the site's chain carries now (None: no such row),
    to compare with a head printed on an earlier report."""
    row = site.db.read(lambda s: s.get(AuditRow, (site.id, seq)))
    return row.hash if row is not None else None
