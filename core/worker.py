"""`lotkeeper worker`: the site's background jobs, one process (or more).

Every `worker.interval_seconds` it runs, in order:
expire unpaid holds, release no-shows, raise overstay events, plan the
notices that are due (kiosks that went silent among them), reconcile
payments left pending, and deliver the notices.

Two workers at once are safe: each job is taken with a lease on its
`worker_jobs` row (a conditional UPDATE), and every action underneath is
itself done once by the database (conditional updates, unique notice
keys, leased deliveries), so a lease that runs out never doubles an
action. SIGTERM or SIGINT stops the worker between two actions: nothing is
left half done, and notices taken but not yet sent are handed back. One
log line per action.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core import services as lk
from core.errors import LotkeeperError
from core.services.notifications import (
    Sender,
    deliver_notifications,
    plan_notifications,
)
from core.site import Site
from core.storage.database import rows_touched
from core.storage.models import WorkerJob

log = logging.getLogger("lotkeeper.worker")

JOB_LEASE = timedelta(minutes=5)
JOBS = (
    "expire_holds",
    "release_no_shows",
    "overstays",
    "plan_notices",
    "reconcile",
    "deliver_notices",  # last: a slow mail server delays nothing else
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


@dataclass
class CycleReport:
    """What one pass did: per job, how many actions (None: another worker
    had the job, or it failed)."""

    done: dict[str, int | None]
    errors: dict[str, str]


class Worker:
    def __init__(
        self,
        site: Site,
        *,
        worker_id: str | None = None,
        send_email: Sender | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.site = site
        self.id = (worker_id or default_worker_id())[:64]
        self.send_email = send_email
        self.stop = stop or threading.Event()

    # -- job leases ------------------------------------------------------------------

    def _take(self, job: str) -> bool:
        site = self.site

        def work(session: Session) -> bool:
            now = site.clock.now()
            if session.get(WorkerJob, (site.id, job)) is None:
                session.add(WorkerJob(site_id=site.id, name=job, last_result=""))
                session.flush()  # a racing worker's row: duplicate key, rerun
            taken = session.execute(
                update(WorkerJob)
                .where(
                    WorkerJob.site_id == site.id,
                    WorkerJob.name == job,
                    or_(
                        WorkerJob.lease_until.is_(None),
                        WorkerJob.lease_until < now,
                        WorkerJob.lease_owner == self.id,
                    ),
                )
                .values(lease_owner=self.id, lease_until=now + JOB_LEASE)
            )
            return rows_touched(taken) == 1

        return site.db.write(work)

    def _release(self, job: str, result: str) -> None:
        site = self.site
        site.db.write(
            lambda s: s.execute(
                update(WorkerJob)
                .where(
                    WorkerJob.site_id == site.id,
                    WorkerJob.name == job,
                    WorkerJob.lease_owner == self.id,
                )
                .values(
                    lease_owner=None,
                    lease_until=None,
                    last_run_at=site.clock.now(),
                    last_result=result[:255],
                )
            )
        )

    # -- the jobs ----------------------------------------------------------------------

    def _expire_holds(self) -> int:
        expired = lk.expire_holds(self.site)
        for reservation in expired:
            log.info("hold expired: reservation %s, its spot is free again", reservation)
        return len(expired)

    def _release_no_shows(self) -> int:
        released = lk.release_no_shows(self.site)
        for reservation in released:
            log.info("no-show: reservation %s released", reservation)
        return len(released)

    def _overstays(self) -> int:
        noted = lk.note_overstays(self.site)
        for stay in noted:
            log.info("overstay: ticket %s is past its time; the attendant is alerted", stay)
        return len(noted)

    def _plan_notices(self) -> int:
        planned = plan_notifications(self.site)
        for notice in planned:
            log.info(
                "notice planned: %s for %s (%s)",
                notice.kind.value,
                notice.subject,
                notice.channel,
            )
        return len(planned)

    def _deliver_notices(self) -> int:
        results = deliver_notifications(
            self.site, self.id, self.send_email, stopping=self.stop.is_set
        )
        for notice, outcome in results:
            to = notice.recipient or "the attendant"
            if outcome == "sent":
                log.info("notice sent: %s for %s to %s", notice.kind.value, notice.subject, to)
            elif outcome == "retry":
                log.warning(
                    "notice not sent, will retry: %s for %s to %s",
                    notice.kind.value,
                    notice.subject,
                    to,
                )
            elif outcome == "failed":
                log.error(
                    "notice failed for good: %s for %s to %s; the attendant is alerted",
                    notice.kind.value,
                    notice.subject,
                    to,
                )
        return len(results)

    def _reconcile(self) -> int:
        report = lk.reconcile(self.site)
        for payment in report.settled:
            log.info("payment %s reconciled: %s", payment.id, payment.status.value)
        for error in report.errors:
            log.warning("reconciler: %s", error)
        return len(report.settled)

    def _job(self, name: str) -> Callable[[], int]:
        return {
            "expire_holds": self._expire_holds,
            "release_no_shows": self._release_no_shows,
            "overstays": self._overstays,
            "plan_notices": self._plan_notices,
            "deliver_notices": self._deliver_notices,
            "reconcile": self._reconcile,
        }[name]

    # -- the loop ----------------------------------------------------------------------

    def run_once(self) -> CycleReport:
        """One pass over the jobs; stops early (between jobs) when asked to.
        A job that fails is logged and the others still run."""
        report = CycleReport({}, {})
        for job in JOBS:
            if self.stop.is_set():
                break
            try:
                if not self._take(job):
                    report.done[job] = None
                    continue
            except LotkeeperError as error:
                report.done[job], report.errors[job] = None, str(error)
                log.error("%s: cannot take the job: %s", job, error)
                continue
            result = "ok"
            try:
                report.done[job] = self._job(job)()
            except LotkeeperError as error:
                report.done[job], report.errors[job] = None, str(error)
                result = f"error: {error}"
                log.error("%s failed: %s", job, error)
            finally:
                try:
                    self._release(job, result)
                except LotkeeperError as error:  # the lease runs out by itself
                    log.error("%s: cannot hand the job back: %s", job, error)
        return report

    def run(self, interval: float | None = None) -> None:
        """Run passes until `stop` is set (SIGTERM), waiting `interval`
        seconds (default: the configured one) between them."""
        every = interval if interval is not None else self.site.settings.worker.interval_seconds
        log.info("worker %s started for site %s, every %gs", self.id, self.site.id, every)
        while not self.stop.is_set():
            self.run_once()
            self.stop.wait(every)
        log.info("worker %s stopped", self.id)


def job_status(site: Site) -> list[WorkerJob]:
    """The jobs as the workers left them (for `lotkeeper worker --status`)."""
    return site.db.read(
        lambda s: list(s.scalars(select(WorkerJob).where(WorkerJob.site_id == site.id)))
    )
