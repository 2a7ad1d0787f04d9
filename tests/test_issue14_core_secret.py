"""Issue 14: on a server database the ticket secret is shared and must be
configured; only the embedded default (SQLite) creates one on first start (that part:
tests/test_migrations.py::test_first_start_migrates_seeds_and_creates_a_secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.site import open_site


def test_a_server_database_without_tickets_secret_is_a_start_up_error(tmp_path: Path) -> None:
    settings = load_settings(
        database={"url": "mysql+pymysql://root@127.0.0.1:9/lotkeeper"},
        paths={"data_dir": str(tmp_path)},
    )
    with pytest.raises(ConfigError) as refused:
        open_site(settings)
    assert "tickets.secret" in str(refused.value)
    assert "LOTKEEPER_TICKETS__SECRET" in str(refused.value)
    assert not (tmp_path / "ticket-secret").exists()  # no local secret made


def test_a_server_database_reads_a_configured_secret_file_but_never_creates_it(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "etc" / "ticket-secret"
    settings = load_settings(
        database={"url": "mysql+pymysql://root@127.0.0.1:9/lotkeeper"},
        paths={"data_dir": str(tmp_path)},
        tickets={"secret_file": str(missing)},
    )
    with pytest.raises(ConfigError, match=r"tickets\.secret_file"):
        open_site(settings)
    assert not missing.exists()
