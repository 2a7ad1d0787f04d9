"""The one settings model. A TOML file (``--config`` or ``LOTKEEPER_CONFIG``)
gives values; every key can be overridden by ``LOTKEEPER_<SECTION>__<KEY>``.
With no file and no variables, Lotkeeper runs on the embedded default: a SQLite
file in the user data dir, migrated and seeded with the demo lot on first start.

This is the only module that reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError

CONFIG_ENV = "LOTKEEPER_CONFIG"


def asset_path(name: str) -> Path:
    """Path of a file shipped in `assets/` (works from a checkout and an install)."""
    import assets

    return Path(next(iter(assets.__path__))) / name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSettings(_Section):
    id: str = Field(default="demo", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    """Key of this site in every table; many sites may share one database."""
    name: str = "Lotkeeper demo garage"
    timezone: str = "UTC"
    """IANA zone for times shown to people (printed tickets, reports)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


def _list_from_text(value: object) -> object:
    """A list given in the environment: JSON, or comma-separated."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class DatabaseSettings(_Section):
    url: str | None = None
    """SQLAlchemy URL; unset means the embedded SQLite file in the data dir.
    Production: ``mysql+pymysql://user:password@host/lotkeeper``."""
    auto_migrate: bool | None = None
    """Run migrations at start; unset means yes for the embedded default only."""
    busy_timeout_seconds: float = Field(default=10.0, gt=0)
    """SQLite: how long a writer waits for another process's write lock."""
    lock_wait_timeout_seconds: int = Field(default=10, ge=1, le=3600)
    """MariaDB/MySQL: innodb_lock_wait_timeout for Lotkeeper's sessions."""
    io_timeout_seconds: int = Field(default=30, ge=2, le=3600)
    """MariaDB/MySQL: how long one statement may go unanswered before the
    connection counts as lost (PyMySQL read/write timeout), so a server that
    vanished without closing its connections (power cut, pulled cable) holds
    a lane for this long, not for TCP's many minutes; the engine then moves
    to the next node. It must outlast `lock_wait_timeout_seconds` (checked).
    `lotkeeper db upgrade` has no such limit (a migration may run long)."""

    failover_urls: Annotated[tuple[str, ...], NoDecode] = ()
    """More nodes of the same database (a Galera cluster), tried in this
    order after `url` when a node is unreachable or lost its cluster (1047).
    The engine goes back to an earlier node as soon as it answers again. In
    the environment: comma-separated, or JSON
    (``LOTKEEPER_DATABASE__FAILOVER_URLS='["mysql+pymysql://…@db2/lk"]'``)."""
    failover_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    """How long a node that failed is skipped before it is tried again."""

    @model_validator(mode="after")
    def _io_outlasts_lock_waits(self) -> DatabaseSettings:
        if self.io_timeout_seconds <= self.lock_wait_timeout_seconds:
            raise ValueError(
                "io_timeout_seconds must be longer than lock_wait_timeout_seconds "
                f"({self.io_timeout_seconds} <= {self.lock_wait_timeout_seconds})"
            )
        return self

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("sqlite://", "mysql+pymysql://", "mariadb+pymysql://")):
            raise ValueError("must be a sqlite:// or mysql+pymysql:// URL")
        return value

    @field_validator("failover_urls", mode="before")
    @classmethod
    def _urls_from_text(cls, value: object) -> object:
        return _list_from_text(value)

    @field_validator("failover_urls")
    @classmethod
    def _server_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry.startswith(("mysql+pymysql://", "mariadb+pymysql://")):
                raise ValueError(f"{_hide_password(entry)!r} is not a mysql+pymysql:// URL")
        return value

    @model_validator(mode="after")
    def _failover_needs_a_server(self) -> DatabaseSettings:
        if self.failover_urls and (self.url is None or self.url.startswith("sqlite")):
            raise ValueError("failover_urls need url to be a mysql+pymysql:// URL too")
        return self


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


class LotSettings(_Section):
    max_stay_minutes: int = Field(default=24 * 60, ge=15, le=31 * 24 * 60)
    """A walk-in's claim covers [entry, entry + max stay)."""
    seed_layout: Path | None = None
    """Layout loaded into an empty site at start; unset means the demo lot
    (assets/lot.toml) for the embedded default and nothing otherwise."""


class TicketSettings(_Section):
    secret: SecretStr | None = None
    """Master secret the ticket signing keys are derived from. Every kiosk of a
    site needs the same one. Unset: read (or create) `secret_file`."""
    secret_file: Path | None = None
    """Unset means ``<data_dir>/ticket-secret``."""

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value


class TariffSettings(_Section):
    file: Path | None = None
    """The tariff TOML file. Unset: the shipped `assets/tariff.toml`."""


class PaymentSettings(_Section):
    provider: Literal["simulated", "stripe-terminal"] = "simulated"
    """`simulated` (the demo; labelled as such on screens and receipts) or
    `stripe-terminal` (a server-driven Stripe Terminal reader)."""
    stripe_api_key: SecretStr | None = None
    stripe_reader_id: str | None = None
    """The reader this kiosk drives (`tmr_...`)."""
    stripe_api_base: str | None = None
    """Unset: Stripe's own API. Set for a proxy or a local test server."""
    max_network_retries: int = Field(default=2, ge=0, le=10)
    reader_timeout_seconds: float = Field(default=90.0, gt=0, le=600)
    """How long a driver has to present a card before the reader action is
    cancelled."""
    poll_interval_seconds: float = Field(default=1.0, ge=0, le=10)

    @model_validator(mode="after")
    def _stripe_needs_key_and_reader(self) -> PaymentSettings:
        if self.provider == "stripe-terminal":
            if self.stripe_api_key is None:
                raise ValueError("stripe_api_key is required with provider = 'stripe-terminal'")
            if not self.stripe_reader_id:
                raise ValueError("stripe_reader_id is required with provider = 'stripe-terminal'")
        return self


class PrinterSettings(_Section):
    url: str = "preview"
    """`preview` (show and save the ticket), `tcp://host:9100`,
    `usb://VID:PID`, `serial:/dev/ttyUSB0`, `file:/dev/usb/lp0`, `cups:NAME`."""
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)


class KioskSettings(_Section):
    id: str = Field(default="kiosk-1", min_length=1, max_length=64)
    role: Literal["entry", "pay", "exit", "combined"] = "combined"
    language: Literal["en", "es"] = "en"
    idle_timeout_seconds: int = Field(default=60, ge=10, le=3600)
    """Back to the start screen after this long without a touch."""
    staff_pin: SecretStr | None = None
    """The PIN that leaves the kiosk app. Unset: one is generated on first
    start into `<data_dir>/kiosk-pin` (readable only by its owner)."""


class SmtpSettings(_Section):
    """Where reminder emails go out. Unset `host`: no email; the worker
    logs each notice instead (and the attendant sees the ones for staff)."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """`starttls` (port 587), `tls` (implicit TLS, port 465), or `none`
    (a relay on the same machine)."""
    user: str | None = None
    password: SecretStr | None = None
    sender: str = "Lotkeeper <lotkeeper@localhost>"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    ca_file: Path | None = None
    """CA certificates to trust for the server (a private CA); unset: the
    system's."""

    @property
    def configured(self) -> bool:
        return bool(self.host)


class WorkerSettings(_Section):
    interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    """How often the worker runs its jobs."""
    reservation_reminder_minutes: int = Field(default=30, ge=1, le=24 * 60)
    max_stay_reminder_minutes: int = Field(default=15, ge=1, le=24 * 60)
    delivery_attempts: int = Field(default=5, ge=1, le=20)
    """Tries per notice before the attendant is told it could not be sent."""
    retry_seconds: float = Field(default=60.0, gt=0, le=3600)
    """The first retry's delay; each next one waits twice as long."""
    heartbeat_missing_seconds: int = Field(default=30, ge=5, le=3600)
    """A kiosk silent this long is reported to the attendant."""


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ApiSettings(_Section):
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/8``, ``::1``) of the
    reverse proxies in front of ``lotkeeper api``. Only a request that comes
    straight from one of them has its ``X-Forwarded-For`` read: the client
    is then the right-most address there that is not itself a trusted proxy.
    Empty (the default): the header is ignored and the client is the address
    that connected. In the environment: a comma-separated list, or JSON
    (``LOTKEEPER_API__TRUSTED_PROXIES="10.0.0.5,10.1.0.0/16"``)."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        return _list_from_text(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for entry in value:
            try:
                cleaned.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return tuple(cleaned)

    @property
    def proxy_networks(self) -> tuple[IpNetwork, ...]:
        """`trusted_proxies` as networks, to test an address against."""
        return tuple(ipaddress.ip_network(entry) for entry in self.trusted_proxies)


class PathSettings(_Section):
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("lotkeeper")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOTKEEPER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    lot: LotSettings = LotSettings()
    tickets: TicketSettings = TicketSettings()
    tariff: TariffSettings = TariffSettings()
    payments: PaymentSettings = PaymentSettings()
    printer: PrinterSettings = PrinterSettings()
    kiosk: KioskSettings = KioskSettings()
    smtp: SmtpSettings = SmtpSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    paths: PathSettings = PathSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init values; the environment overrides them.
        return (env_settings, init_settings)

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default database."""
        return self.database.url is None

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url
        return f"sqlite:///{self.paths.data_dir / 'lotkeeper.sqlite3'}"

    @property
    def auto_migrate(self) -> bool:
        if self.database.auto_migrate is not None:
            return self.database.auto_migrate
        return self.embedded

    @property
    def seed_layout(self) -> Path | None:
        if self.lot.seed_layout is not None:
            return self.lot.seed_layout
        return asset_path("lot.toml") if self.embedded else None

    @property
    def tariff_file(self) -> Path:
        return self.tariff.file or asset_path("tariff.toml")

    @property
    def ticket_secret_file(self) -> Path:
        return self.tickets.secret_file or self.paths.data_dir / "ticket-secret"


def _describe(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        env_name = "LOTKEEPER_" + "__".join(str(p) for p in item["loc"]).upper()
        if env_name in os.environ:
            key = f"{key} (from {env_name})"
        parts.append(f"{key}: {message}")
    return f"bad configuration in {source}: " + "; ".join(parts)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a TOML file (explicit, else ``LOTKEEPER_CONFIG``,
    else none), the environment and `overrides` (sections as dicts, for tests).

    Raises `ConfigError` with one line naming the key and the problem.
    """
    path = config_file if config_file is not None else os.environ.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    source = "the environment"
    if path is not None:
        path = Path(path).expanduser()
        source = str(path)
        try:
            with path.open("rb") as handle:
                values = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("config file {path} does not exist", path=path) from None
        except OSError as exc:
            raise ConfigError(
                "cannot read config file {path}: {reason}", path=path, reason=exc.strerror
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                "config file {path} is not valid TOML: {reason}", path=path, reason=exc
            ) from None
    for section, section_values in overrides.items():
        merged = dict(values.get(section, {}))
        merged.update(section_values)
        values[section] = merged
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
