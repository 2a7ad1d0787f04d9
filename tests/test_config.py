"""Settings: file, environment, defaults, and one clear line when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import asset_path, load_settings
from core.errors import ConfigError


def test_no_config_means_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTKEEPER_PATHS__DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.embedded and settings.auto_migrate
    assert settings.database_url == f"sqlite:///{tmp_path / 'lotkeeper.sqlite3'}"
    assert settings.seed_layout == asset_path("lot.toml")
    assert settings.lot.max_stay_minutes == 24 * 60
    assert settings.ticket_secret_file == tmp_path / "ticket-secret"


def test_file_values_and_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "lotkeeper.toml"
    config.write_text(
        '[site]\nid = "north"\ntimezone = "Europe/Madrid"\n'
        '[database]\nurl = "mysql+pymysql://lk@db/lotkeeper"\n'
        "[lot]\nmax_stay_minutes = 600\n"
    )
    monkeypatch.setenv("LOTKEEPER_LOT__MAX_STAY_MINUTES", "720")
    settings = load_settings(config)
    assert settings.site.id == "north"
    assert settings.database.url == "mysql+pymysql://lk@db/lotkeeper"
    assert settings.lot.max_stay_minutes == 720
    assert not settings.embedded and not settings.auto_migrate
    assert settings.seed_layout is None


def test_config_file_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[site]\nname = "Harbour garage"\n')
    monkeypatch.setenv("LOTKEEPER_CONFIG", str(config))
    assert load_settings().site.name == "Harbour garage"


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTKEEPER_DATABASE__URL", "mysql+pymysql://root@127.0.0.1/lk")
    assert load_settings().database_url == "mysql+pymysql://root@127.0.0.1/lk"


@pytest.mark.parametrize(
    "value",
    [
        "mysql+pymysql://lk@db2/lk, mysql+pymysql://lk@db3/lk",
        '["mysql+pymysql://lk@db2/lk", "mysql+pymysql://lk@db3/lk"]',
    ],
)
def test_failover_urls_from_environment_as_a_list_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOTKEEPER_DATABASE__URL", "mysql+pymysql://lk@db1/lk")
    monkeypatch.setenv("LOTKEEPER_DATABASE__FAILOVER_URLS", value)
    settings = load_settings()
    assert settings.database.failover_urls == (
        "mysql+pymysql://lk@db2/lk",
        "mysql+pymysql://lk@db3/lk",
    )
    assert settings.database.failover_retry_seconds == 5.0


def test_no_failover_urls_by_default() -> None:
    assert load_settings().database.failover_urls == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[lot]\nmax_stay = 3\n", "lot.max_stay: unknown key"),
        (
            "[lot]\nmax_stay_minutes = 5\n",
            "lot.max_stay_minutes: Input should be greater than or equal to 15",
        ),
        ('[site]\ntimezone = "Mars/Olympus"\n', "site.timezone: unknown time zone 'Mars/Olympus'"),
        (
            '[database]\nurl = "postgresql://x"\n',
            "database.url: must be a sqlite:// or mysql+pymysql:// URL",
        ),
        ('[tickets]\nsecret = "short"\n', "tickets.secret: must be at least 32 characters"),
        (
            '[database]\nurl = "mysql+pymysql://lk@db1/lk"\n'
            'failover_urls = ["postgresql://lk:hunter2@db2/lk"]\n',
            "database.failover_urls: 'postgresql://lk:***@db2/lk' is not a mysql+pymysql:// URL",
        ),
        (
            '[database]\nfailover_urls = ["mysql+pymysql://lk@db2/lk"]\n',
            "database: failover_urls need url to be a mysql+pymysql:// URL too",
        ),
        ("[lot\n", "is not valid TOML"),
    ],
)
def test_bad_config_gets_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTKEEPER_LOT__MAX_STAY_MINUTES", "lots")
    with pytest.raises(
        ConfigError, match=r"lot.max_stay_minutes \(from LOTKEEPER_LOT__MAX_STAY_MINUTES\)"
    ):
        load_settings()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_sample_config_is_valid() -> None:
    settings = load_settings(asset_path("lotkeeper.sample.toml"))
    assert settings.site.id == "demo"
