"""Accounts: sign-up, sign-in (same answer for wrong password and unknown
email, throttled after repeated failures), password change, vehicles."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.clock import FixedClock
from core.domain import Size, Vehicle
from core.errors import (
    EmailTaken,
    InvalidInput,
    NotFound,
    PlateTaken,
    SignInFailed,
    SignInThrottled,
)
from core.services import accounts
from core.site import Site
from core.storage.models import Account as AccountRow

PASSWORD = "correct horse battery"


def test_account_is_created_and_signs_in_with_its_email_in_any_case(site: Site) -> None:
    created = accounts.create_account(site, "  Ada   Lovelace ", "Ada@Example.COM", PASSWORD)
    assert (created.name, created.email) == ("Ada Lovelace", "ada@example.com")
    assert accounts.sign_in(site, " ADA@example.com ", PASSWORD) == created


def test_password_is_stored_as_argon2id_at_owasp_parameters(site: Site) -> None:
    created = accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    stored = site.db.read(
        lambda s: s.scalar(select(AccountRow.password_hash).where(AccountRow.id == created.id))
    )
    assert stored is not None and PASSWORD not in stored
    assert stored.startswith("$argon2id$")
    memory, time_cost = (int(p.split("=")[1]) for p in stored.split("$")[3].split(",")[:2])
    assert memory >= 19 * 1024 and time_cost >= 2


def test_second_account_with_the_same_email_is_refused(site: Site) -> None:
    accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    with pytest.raises(EmailTaken):
        accounts.create_account(site, "Other Ada", "ADA@example.com", "another password")


@pytest.mark.parametrize(
    ("name", "email", "password", "message"),
    [
        ("", "a@example.com", PASSWORD, "your name"),
        ("Ada", "not-an-email", PASSWORD, "valid email"),
        ("Ada", "a@example.com", "short", "at least 8"),
    ],
)
def test_bad_sign_up_input_is_refused_and_nothing_is_created(
    site: Site, name: str, email: str, password: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        accounts.create_account(site, name, email, password)
    assert site.db.read(lambda s: s.scalars(select(AccountRow)).all()) == []


def test_wrong_password_and_unknown_email_get_the_same_answer(site: Site) -> None:
    accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    with pytest.raises(SignInFailed) as wrong_password:
        accounts.sign_in(site, "ada@example.com", "not the password")
    with pytest.raises(SignInFailed) as unknown_email:
        accounts.sign_in(site, "nobody@example.com", "not the password")
    assert str(wrong_password.value) == str(unknown_email.value)


def test_repeated_failures_are_slowed_down_then_cleared_by_a_success(
    site: Site, clock: FixedClock
) -> None:
    accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    for _ in range(accounts.FREE_FAILURES):
        with pytest.raises(SignInFailed):
            accounts.sign_in(site, "ada@example.com", "guess")
    # Blocked now, even with the right password: no oracle while blocked.
    with pytest.raises(SignInThrottled, match="wait 1 seconds") as blocked:
        accounts.sign_in(site, "ada@example.com", PASSWORD)
    assert blocked.value.retry_after_seconds == 1
    clock.advance(seconds=1)
    with pytest.raises(SignInFailed):
        accounts.sign_in(site, "ada@example.com", "guess again")
    with pytest.raises(SignInThrottled) as longer:
        accounts.sign_in(site, "ada@example.com", PASSWORD)
    assert longer.value.retry_after_seconds == 2
    clock.advance(seconds=2)
    assert accounts.sign_in(site, "ada@example.com", PASSWORD).email == "ada@example.com"
    # The success cleared the count: one more failure is not blocked.
    with pytest.raises(SignInFailed):
        accounts.sign_in(site, "ada@example.com", "guess")
    assert accounts.sign_in(site, "ada@example.com", PASSWORD).email == "ada@example.com"


def test_unknown_emails_are_throttled_like_known_ones(site: Site) -> None:
    for _ in range(accounts.FREE_FAILURES):
        with pytest.raises(SignInFailed):
            accounts.sign_in(site, "nobody@example.com", "guess")
    with pytest.raises(SignInThrottled):
        accounts.sign_in(site, "nobody@example.com", "guess")


def test_change_password_needs_the_current_one(site: Site) -> None:
    account = accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    with pytest.raises(SignInFailed):
        accounts.change_password(site, account.id, "wrong", "a brand new password")
    with pytest.raises(InvalidInput):
        accounts.change_password(site, account.id, PASSWORD, "short")
    accounts.change_password(site, account.id, PASSWORD, "a brand new password")
    with pytest.raises(SignInFailed):
        accounts.sign_in(site, "ada@example.com", PASSWORD)
    assert accounts.sign_in(site, "ada@example.com", "a brand new password").id == account.id


def test_account_registers_several_vehicles_and_a_plate_belongs_to_one_account(
    site: Site,
) -> None:
    ada = accounts.create_account(site, "Ada", "ada@example.com", PASSWORD)
    bob = accounts.create_account(site, "Bob", "bob@example.com", PASSWORD)
    accounts.add_vehicle(site, ada.id, "ab 123", "small")
    accounts.add_vehicle(site, ada.id, "VAN-1", "large")
    accounts.add_vehicle(site, ada.id, "AB 123", "medium")  # her own plate again: new size
    assert accounts.list_vehicles(site, ada.id) == [
        Vehicle("AB 123", Size.MEDIUM),
        Vehicle("VAN-1", Size.LARGE),
    ]
    with pytest.raises(PlateTaken, match="AB 123"):
        accounts.add_vehicle(site, bob.id, "AB 123", "small")
    accounts.remove_vehicle(site, ada.id, "ab 123")
    assert accounts.add_vehicle(site, bob.id, "AB 123", "small") == Vehicle("AB 123", Size.SMALL)
    with pytest.raises(NotFound):
        accounts.remove_vehicle(site, ada.id, "AB 123")


def test_vehicle_for_an_unknown_account_is_refused(site: Site) -> None:
    with pytest.raises(NotFound):
        accounts.add_vehicle(site, 999, "AB 123", "small")
