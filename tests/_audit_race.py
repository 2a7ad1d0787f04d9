"""Audit chain test helpers: a chain as the unkeyed code wrote it, and the
processes of `test_audit_race.py` (each opens the site on its own engine,
meets the others at a barrier and appends one audit row; spawned)."""

from __future__ import annotations

import hashlib
import traceback
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.clock import FixedClock
from core.config import load_settings
from core.services.audit import GENESIS, Actor, _content, record_audit
from core.site import Site, open_site
from core.storage.models import AuditHead, AuditRow


def append_one(
    index: int, url: str, data_dir: str, secret: str, now: str, barrier: Any, results: Any
) -> None:
    try:
        settings = load_settings(
            database={"url": url, "auto_migrate": False},
            paths={"data_dir": data_dir},
            tickets={"secret": secret},
        )
        site = open_site(settings, clock=FixedClock(datetime.fromisoformat(now)))
        actor = Actor(f"lane-{index}", index, "attendant")
        barrier.wait(120)
        seq = site.db.write(
            lambda s: record_audit(s, site, actor, "gate_opened", reason=f"lane {index}")
        )
        site.close()
        results.put((index, seq, ""))
    except Exception:
        results.put((index, None, traceback.format_exc()))


def write_unkeyed(site: Site, rows: int) -> None:
    """Rows as the unkeyed chain wrote them (plain SHA-256), head included."""

    def work(s: Session) -> None:
        prev = GENESIS
        at = site.clock.now()
        for seq in range(1, rows + 1):
            reason = f"old {seq}"
            content = _content(prev, seq, at, 1, "Sam", "gate_opened", "lane-1", reason, "{}")
            digest = hashlib.sha256(content).hexdigest()
            s.execute(
                insert(AuditRow).values(
                    site_id=site.id, seq=seq, at=at, staff_id=1, staff_name="Sam",
                    action="gate_opened", target="lane-1", reason=reason, data="{}",
                    prev_hash=prev, hash=digest,
                )
            )  # fmt: skip
            prev = digest
        s.execute(insert(AuditHead).values(site_id=site.id, seq=rows, hash=prev))

    site.db.write(work)
