"""What the processes of the race harness (`race.py`) do: each action is
one service call by one kiosk, console or worker, returning a plain value;
each plant removes one transition's condition (the proof that its race test
can fail). Runs in spawned processes: plants patch the process itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, text, update

from core import services as lk
from core.clock import FixedClock as FixedClock
from core.config import load_settings
from core.services import (
    api_access,
    booth,
    devices,
    notifications,
    overrides,
    payments,
    shifts,
    staff,
)
from core.site import Site, open_site
from core.storage.models import (
    Notification,
    StaffMember,
    payments_table,
    reservations_table,
    stays_table,
)

REASON = "race test"


def _original_exit() -> Any:
    from core.services import entry

    return entry._END_STAY_WITH_TICKET


ORIGINAL_EXIT = _original_exit()


def open_site_at(
    url: str, data_dir: str, secret: str, site_id: str, clock: FixedClock, extra: dict[str, Any]
) -> Site:
    """The process's own site on the test's clock (never the wall clock)."""
    settings = load_settings(
        database={"url": url, "auto_migrate": False},
        paths={"data_dir": data_dir},
        tickets={"secret": secret},
        site={"id": site_id},
        **extra,
    )
    return open_site(settings, clock=clock)


def warm(site: Site) -> None:
    """Connect and load the key ring before the barrier, so the processes
    meet the race with no set-up left to do."""
    site.db.read(lambda s: s.execute(text("SELECT 1")))
    site.keyring()


def _paid(site: Site, payment: Any) -> str:
    return payments.wait_for_payment(site, payment.id, sleep=lambda _: None).status.value


ACTIONS: dict[str, Callable[..., Any]] = {
    "noop": lambda site: None,
    "check_in": lambda site, code: lk.check_in(site, code, kiosk="race").id,
    "cancel": lambda site, rid, account: lk.cancel_reservation(site, rid, account).refund_amount,
    "cancel_at_booth": lambda site, who, code: (
        overrides.cancel_reservation(site, who, code, REASON).refund_amount
    ),
    "release_no_shows": lambda site: lk.release_no_shows(site),
    "expire_holds": lambda site: lk.expire_holds(site),
    "settle": lambda site, pid: payments.poll_payment(site, pid).status.value,
    "pay_ticket": lambda site, code, kiosk: _paid(site, lk.pay_ticket(site, code, kiosk=kiosk)),
    "pay_reservation": lambda site, rid, kiosk: _paid(
        site, lk.pay_reservation(site, rid, kiosk=kiosk)
    ),
    "pay_lost_ticket": lambda site, sid, kiosk: _paid(
        site, lk.pay_lost_ticket(site, sid, kiosk=kiosk)
    ),
    "lost_ticket_cash": lambda site, who, sid: booth.lost_ticket_cash(site, who, sid),
    "exit": lambda site, code, kiosk: lk.exit(site, code, kiosk=kiosk).ticket_id,
    "refund": lambda site, who, pid: overrides.refund(site, who, pid, REASON).amount,
    "waive": lambda site, who, sid: overrides.waive_fee(site, who, sid, REASON),
    "move": lambda site, who, sid, label: overrides.move_car(site, who, sid, label, REASON),
    "close_spot": lambda site, who, label: overrides.set_out_of_service(
        site, who, label, True, REASON
    ),
    "enter": lambda site, size: lk.enter(site, size, kiosk="race").id,
    "open_shift": lambda site, who: shifts.open_shift(site, who, 10_000).id,
    "close_shift": lambda site, who: shifts.close_shift(site, who, 10_000).title,
    "disable_staff": lambda site, name: staff.disable_staff(site, name, REASON).name,
    "sign_in": lambda site, name, pin: staff.staff_sign_in(site, name, pin).id,
    "retire_key": lambda site, key_id: lk.retire_key(site, key_id).key_id,
    "idempotent": lambda site, key: (
        "runs"
        if api_access.begin_idempotent(site, "account 1", key, "print") is None
        else "replayed"
    ),
    "deliver": lambda site, owner: [
        (n.id, outcome) for n, outcome in notifications.deliver_notifications(site, owner, None)
    ],
    "close_shift_by_id": lambda site, who, shift_id: (
        shifts.close_shift_by_id(site, who, shift_id, 10_000).title
    ),
    "decommission": lambda site, who, device: (
        devices.decommission_device(site, who.actor, device, REASON).device_id
    ),
    "heartbeat": lambda site, device: devices.report_heartbeat(
        site, device, "entry", {"printer": devices.Component("ok")}
    ),
}


# -- plants: each removes one condition ------------------------------------------


def _without(module: Any, name: str, statement: Any) -> None:
    setattr(module, name, statement)


def _check_in_by_id() -> None:
    """Check-in writes the reservation by id alone (the read said confirmed)."""
    from core.services import reservations

    R = reservations_table.c
    _without(
        reservations,
        "_CHECK_IN",
        update(reservations_table)
        .where(R.id == bindparam("b_id"), R.site_id == bindparam("b_site"))
        .values(state="checked_in", checked_in_at=bindparam("now")),
    )


def _cancel_by_id() -> None:
    """A cancel writes the reservation whatever its state."""
    from core.services import reservations

    _without(
        reservations,
        "_CANCEL",
        update(reservations_table)
        .where(reservations_table.c.id == bindparam("b_id"))
        .values(state="cancelled", cancelled_at=bindparam("now")),
    )


def _expire_with_payment_in_flight() -> None:
    """Hold expiry forgets the payment's mark on the reservation."""
    from core.services import reservations

    R = reservations_table.c
    _without(
        reservations,
        "_EXPIRE_HOLD",
        update(reservations_table)
        .where(
            R.id == bindparam("b_id"),
            R.state == "held",
            R.hold_expires_at <= bindparam("now"),
        )
        .values(state="expired"),
    )


def _charge_without_mark() -> None:
    """A stay's charge starts whatever else is being paid for it."""
    T = stays_table.c
    _without(
        payments,
        "_MARK_STAY",
        update(stays_table)
        .where(T.id == bindparam("b_stay"), T.site_id == bindparam("b_site"))
        .values(pending_payment=bindparam("b_key")),
    )


def _reservation_charge_without_mark() -> None:
    R = reservations_table.c
    _without(
        payments,
        "_MARK_RESERVATION",
        update(reservations_table)
        .where(
            R.id == bindparam("b_reservation"),
            R.site_id == bindparam("b_site"),
            R.hold_expires_at > bindparam("b_now"),
        )
        .values(pending_payment=bindparam("b_key")),
    )


def _refund_beyond_the_charge() -> None:
    P = payments_table.c
    _without(
        payments,
        "_TAKE_REFUND",
        update(payments_table)
        .where(P.id == bindparam("b_charge"), P.site_id == bindparam("b_site"))
        .values(refunded=P.refunded + bindparam("b_amount")),
    )


def _exit_twice() -> None:
    from core.services import entry

    T = stays_table.c
    _without(
        entry,
        "_END_STAY_WITH_TICKET",
        update(stays_table)
        .where(T.id == bindparam("stay"))
        .values(exited_at=bindparam("now"), exit_kiosk=bindparam("kiosk")),
    )


def _exit_with_a_retired_key() -> None:
    from core.services import entry

    # `exit_twice` may have planted an exit with no condition at all already.
    if entry._END_STAY_WITH_TICKET is ORIGINAL_EXIT:
        _without(entry, "_END_STAY_WITH_TICKET", entry._END_STAY)


def _move_whatever_the_stay() -> None:
    from core.storage.models import Stay

    _without(
        overrides,
        "_MOVE_STAY",
        update(Stay)
        .where(Stay.id == bindparam("b_stay"))
        .values(spot_id=bindparam("b_spot"), claim_id=bindparam("b_claim")),
    )


def _close_a_busy_spot() -> None:
    _without(overrides, "spot_in_use", lambda *args: False)


def _close_shift_twice() -> None:
    from core.storage.models import Shift

    _without(
        shifts,
        "_CLOSE_SHIFT",
        update(Shift)
        .where(Shift.id == bindparam("shift"))
        .values(closed_at=bindparam("now"), counted_amount=bindparam("counted"), open_for=None),
    )


def _release_by_id() -> None:
    """The no-show release writes the reservation whatever its state."""
    from core.services import reservations

    _without(
        reservations,
        "_RELEASE",
        update(reservations_table)
        .where(reservations_table.c.id == bindparam("b_id"))
        .values(state="no_show"),
    )


def _sign_in_when_disabled() -> None:
    _without(
        staff,
        "_SIGNED_IN",
        update(StaffMember)
        .where(StaffMember.id == bindparam("b_staff"))
        .values(last_sign_in_at=bindparam("now")),
    )


def _lease_taken_notice() -> None:
    from core.services import notifications

    _without(
        notifications,
        "_LEASE",
        update(Notification)
        .where(Notification.id == bindparam("b_id"))
        .values(lease_owner=bindparam("owner"), lease_until=bindparam("until")),
    )


def _decommission_a_live_kiosk() -> None:
    """A decommission deletes the device whether or not it went silent."""
    from sqlalchemy import delete

    from core.storage.models import Device

    _without(
        devices,
        "_DECOMMISSION",
        delete(Device).where(
            Device.site_id == bindparam("b_site"), Device.device_id == bindparam("b_device")
        ),
    )


PLANTS: dict[str, Callable[[], None]] = {
    "check_in_by_id": _check_in_by_id,
    "cancel_by_id": _cancel_by_id,
    "expire_with_payment_in_flight": _expire_with_payment_in_flight,
    "charge_without_mark": _charge_without_mark,
    "reservation_charge_without_mark": _reservation_charge_without_mark,
    "refund_beyond_the_charge": _refund_beyond_the_charge,
    "exit_twice": _exit_twice,
    "exit_with_a_retired_key": _exit_with_a_retired_key,
    "move_whatever_the_stay": _move_whatever_the_stay,
    "close_a_busy_spot": _close_a_busy_spot,
    "close_shift_twice": _close_shift_twice,
    "release_by_id": _release_by_id,
    "sign_in_when_disabled": _sign_in_when_disabled,
    "lease_taken_notice": _lease_taken_notice,
    "decommission_a_live_kiosk": _decommission_a_live_kiosk,
}


# -- acknowledging alerts (appended) -----------------------------------------------

ACTIONS["acknowledge"] = lambda site, who, keys: sorted(
    overrides.acknowledge_alerts(site, who, keys)
)


def _acknowledge_without_the_unique_key() -> None:
    """Acknowledgements stored without their unique key: the index is
    dropped (once per process, before the first round) as the process warms
    its sites; every console then inserts its own row and audits it."""
    global warm
    warm_as_before = warm
    dropped: list[bool] = []

    def drop_then_warm(site: Site) -> None:
        if not dropped:
            on = "" if site.db.is_sqlite else " ON alert_acks"
            ddl = text(f"DROP INDEX IF EXISTS uq_alert_acks_site_id_alert_key{on}")
            site.db.write(lambda s: s.execute(ddl))
            dropped.append(True)
        warm_as_before(site)

    warm = drop_then_warm


PLANTS["acknowledge_without_the_unique_key"] = _acknowledge_without_the_unique_key
