"""A `Site` is everything a service needs: settings, database, clock, key ring.

`open_site()` is the one way in: it creates the database on the embedded
default, migrates it when allowed, loads the seed layout into an empty site and
makes sure a ticket signing key exists.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.allocation import SpotRow
from core.clock import Clock, SystemClock
from core.config import Settings, load_settings
from core.errors import ConfigError
from core.payments.provider import PaymentProvider
from core.storage import migrate
from core.storage.database import Database, NodeMove
from core.storage.models import SigningKey, Spot
from core.tariff import Tariff, load_tariff
from core.ticket_codes import KeyRing

KEYRING_TTL_SECONDS = 30.0
SPOTS_TTL_SECONDS = 30.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class LocalTime(str):
    """A site-local time in English, '14:05 on 22 Nov' ('14:05 on 22 Nov
    2026' `with_year`), whatever the machine's locale. As a `str` it goes
    wherever the text went before (messages, events, JSON); `at` keeps the
    moment, so a kiosk in Spanish words it as '14:05 del 22 nov'."""

    at: datetime
    with_year: bool

    def __new__(cls, at: datetime, with_year: bool = False) -> LocalTime:
        text = f"{at:%H:%M} on {at.day:02d} {_MONTHS[at.month - 1]}"
        self = super().__new__(cls, f"{text} {at.year}" if with_year else text)
        self.at = at
        self.with_year = with_year
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # str's own would rebuild it from the text alone.
        return (LocalTime, (self.at, self.with_year))


def _read_or_create_secret(path: Path) -> bytes:
    """The master secret for ticket keys; created once, readable only by us."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            try:
                # link() fails if another process created the file first: theirs wins.
                with contextlib.suppress(FileExistsError):
                    os.link(temp, path)
            finally:
                temp.unlink()
        secret = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigError(
            "cannot read or create the ticket secret file {path}: {reason}",
            path=path,
            reason=exc.strerror,
        ) from None
    if len(secret) < 32:
        raise ConfigError("the ticket secret in {path} is shorter than 32 characters", path=path)
    return secret.encode()


def _read_shared_secret(path: Path) -> bytes:
    """A secret file an operator put in place for every host of the site."""
    if not path.exists():
        raise ConfigError(
            "tickets.secret_file {path} does not exist. On a server database every "
            "kiosk must use the same ticket secret: copy the site's secret file there, "
            "or set tickets.secret (LOTKEEPER_TICKETS__SECRET).",
            path=path,
        )
    return _read_or_create_secret(path)


def _master_secret(settings: Settings) -> bytes:
    """The ticket master secret. On SQLite (the embedded default, one
    machine) a missing one is created; on a server database it is shared by
    every kiosk of the site, so it must be configured: a local one would make
    every other kiosk's tickets "not valid" here."""
    if settings.tickets.secret is not None:
        return settings.tickets.secret.get_secret_value().encode()
    if settings.database_url.startswith("sqlite"):
        return _read_or_create_secret(settings.ticket_secret_file)
    if settings.tickets.secret_file is not None:
        return _read_shared_secret(settings.tickets.secret_file)
    raise ConfigError(
        "tickets.secret is not set. On a server database every kiosk of the site "
        "must sign tickets with the same secret: set tickets.secret in the config "
        "(or LOTKEEPER_TICKETS__SECRET), or tickets.secret_file to a copy of the "
        "site's secret file."
    )


@dataclass
class Site:
    settings: Settings
    db: Database
    clock: Clock
    rng: random.Random
    master_secret: bytes = field(repr=False)
    _keyring: KeyRing | None = field(default=None, repr=False)
    _keyring_loaded: float = field(default=0.0, repr=False)
    _spots: tuple[SpotRow, ...] | None = field(default=None, repr=False)
    _spots_loaded: float = field(default=0.0, repr=False)
    _tariff: Tariff | None = field(default=None, repr=False)
    _payments: PaymentProvider | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.settings.site.id

    @property
    def name(self) -> str:
        return self.settings.site.name

    @property
    def max_stay(self) -> timedelta:
        return timedelta(minutes=self.settings.lot.max_stay_minutes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.site.timezone)

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.zone)

    def describe_time(self, when: datetime, *, year: bool = False) -> LocalTime:
        """A time as a driver reads it: site-local, e.g. '14:05 on 22 Nov'
        ('14:05 on 22 Nov 2026' with `year`, for reports). It is a `str`
        that remembers its moment (`LocalTime.at`), so a screen in another
        language can word a time an engine message carries its own way."""
        return LocalTime(self.local(when), year)

    @property
    def tariff(self) -> Tariff:
        """The tariff from `tariff.file` (read once; `open_site` checks it)."""
        if self._tariff is None:
            self._tariff = load_tariff(self.settings.tariff_file)
        return self._tariff

    @property
    def payments(self) -> PaymentProvider:
        """The configured payment provider (built on first use)."""
        if self._payments is None:
            from core.payments import make_provider

            self._payments = make_provider(self.settings.payments, self.db, self.id, self.clock)
        return self._payments

    def use_payment_provider(self, provider: PaymentProvider) -> None:
        """Use `provider` instead of the configured one (tests, tools)."""
        self._payments = provider

    def keyring(self, refresh: bool = False) -> KeyRing:
        """The site's signing keys, cached for a short while so a rotation made
        by another process is picked up within `KEYRING_TTL_SECONDS`."""
        stale = time.monotonic() - self._keyring_loaded > KEYRING_TTL_SECONDS
        if self._keyring is None or refresh or stale:
            rows = self.db.read(
                lambda s: [
                    (k.key_id, k.salt, k.active)
                    for k in s.scalars(
                        select(SigningKey).where(
                            SigningKey.site_id == self.id, SigningKey.retired_at.is_(None)
                        )
                    )
                ]
            )
            self._keyring = KeyRing.build(self.master_secret, self.id, rows)
            self._keyring_loaded = time.monotonic()
        return self._keyring

    def in_service_spots(self, session: Session, refresh: bool = False) -> tuple[SpotRow, ...]:
        """The site's spots in service, cached for `SPOTS_TTL_SECONDS`: they
        change only on layout loads and out-of-service marks. Only used to
        pick candidates; `take_spot` re-checks each one in the database."""
        stale = time.monotonic() - self._spots_loaded > SPOTS_TTL_SECONDS
        if self._spots is None or refresh or stale:
            from core.services.claims import load_in_service_spots

            self._spots = load_in_service_spots(session, self.id)
            self._spots_loaded = time.monotonic()
        return self._spots

    def forget_spots(self) -> None:
        """Drop the cached spot list (after this process changed the layout)."""
        self._spots = None

    def close(self) -> None:
        self.db.dispose()


def record_node_move(site: Site, move: NodeMove) -> None:
    """The event for the attendant when the engine moved to another database
    node: an alert when it left a failed node, a recovery when it is back on
    a preferred one."""
    from core.domain import EventKind
    from core.services.events import record_event

    kind = EventKind.DEVICE_RECOVERED if move.back else EventKind.DEVICE_FAULT
    message = f"database: moved from {move.from_node} to {move.to_node}: {move.reason}"
    site.db.write(
        lambda session: record_event(
            session,
            site.id,
            site.clock.now(),
            kind,
            message[:255],
            source="database",
            data={
                "alert": not move.back,
                "component": "database",
                "from": move.from_node,
                "to": move.to_node,
                "detail": move.reason,
            },
        )
    )


def ensure_signing_key(site: Site) -> None:
    """Give the site its first signing key (K1) if it has none."""

    def work(session: Session) -> None:
        active = session.scalar(
            select(func.count()).where(SigningKey.site_id == site.id, SigningKey.active)
        )
        if not active:
            session.add(
                SigningKey(
                    site_id=site.id,
                    key_id="K1",
                    salt=secrets.token_hex(16),
                    active=True,
                    created_at=site.clock.now(),
                )
            )

    with contextlib.suppress(IntegrityError):  # another process made it just now
        site.db.write(work)


def open_site(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> Site:
    """Open the site described by `settings` (default: config file and
    environment). Raises `ConfigError`, `DatabaseUnavailable` or
    `SchemaOutOfDate` with a message an operator can act on."""
    settings = settings or load_settings()
    secret = _master_secret(settings)
    db = Database(
        settings.database_url,
        failover_urls=settings.database.failover_urls,
        busy_timeout_seconds=settings.database.busy_timeout_seconds,
        lock_wait_timeout_seconds=settings.database.lock_wait_timeout_seconds,
        io_timeout_seconds=settings.database.io_timeout_seconds,
        retry_down_after_seconds=settings.database.failover_retry_seconds,
    )
    site = Site(settings, db, clock or SystemClock(), rng or random.Random(), secret)
    db.on_node_move = lambda move: record_node_move(site, move)
    try:
        site.tariff  # noqa: B018 - a bad tariff file fails at start, not at the first payment
        if settings.auto_migrate:
            db.run_connected(migrate.upgrade)
        db.run_connected(migrate.require_current)
        ensure_signing_key(site)
        seed = settings.seed_layout
        if seed is not None:
            from core.services.layout import load_layout_file

            empty = db.read(
                lambda s: not s.scalar(select(func.count()).where(Spot.site_id == site.id))
            )
            if empty:
                load_layout_file(site, seed, source="first start")
    except BaseException:
        db.dispose()
        raise
    return site
