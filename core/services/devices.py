"""Device health: kiosks report faults (printer out of paper, reader
offline, a driver asking for help) as events the attendant's alert panel
shows, and a heartbeat every few seconds with how each part is, so the
attendant also sees a kiosk that went quiet."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from core.domain import EventKind
from core.errors import InvalidInput, NotFound
from core.services.audit import Actor, record_audit
from core.services.events import record_event
from core.site import Site
from core.storage.database import Conflict, rows_touched
from core.storage.models import Device

ComponentState = Literal["ok", "warning", "fault"]
# A kiosk beats every few seconds; this long without one and it counts as silent.
SILENT_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class Component:
    """One part of a device: its state and what to tell the attendant."""

    state: ComponentState
    detail: str = ""
    since: datetime | None = None
    """When a faulty part turned faulty (as recorded from the heartbeats;
    None when reported, or written before it was kept): a fault that
    clears and comes back is a new alert."""


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    role: str
    components: dict[str, Component]
    last_seen_at: datetime
    silent: bool
    """No heartbeat for `SILENT_AFTER`: the kiosk is off, hung or cut off."""

    @property
    def ok(self) -> bool:
        return not self.silent and all(c.state != "fault" for c in self.components.values())


def record_device_fault(site: Site, device_id: str, component: str, detail: str) -> None:
    """An alert for the attendant: `component` ("printer", "reader", "help")
    of `device_id` needs a person."""
    site.db.write(
        lambda session: _fault_event(session, site, device_id, component, detail, site.clock.now())
    )


def _fault_event(
    session: Session, site: Site, device_id: str, component: str, detail: str, now: datetime
) -> None:
    record_event(
        session,
        site.id,
        now,
        EventKind.DEVICE_FAULT,
        f"{device_id}: {component}: {detail}"[:255],
        source=device_id,
        data={"alert": True, "device": device_id, "component": component, "detail": detail},
    )


def report_heartbeat(
    site: Site, device_id: str, role: str, components: Mapping[str, Component]
) -> None:
    """Record that `device_id` is alive and how its parts are. A part that
    turns faulty raises a `device_fault` event (an alert); one that recovers
    a `device_recovered` event; an unchanged heartbeat writes no event."""
    device_id = device_id.strip()[:64]
    if not device_id:
        raise InvalidInput("A device needs an id.")

    def work(session: Session) -> None:
        now = site.clock.now()
        row = session.get(Device, (site.id, device_id))
        ok = all(c.state != "fault" for c in components.values())
        before = _components(row.components) if row is not None else {}
        encoded = _encode(components, before, now)
        if row is None:
            # Two first heartbeats at once: the primary key stops the second,
            # which reruns and finds this row.
            session.add(
                Device(
                    site_id=site.id,
                    device_id=device_id,
                    role=role[:16],
                    components=encoded,
                    ok=ok,
                    last_seen_at=now,
                )
            )
            session.flush()
        else:
            # Compare and set: the health read is the health replaced, so a
            # change of health raises its event once however many reports race.
            seen = row.components
            swapped = session.execute(
                update(Device)
                .where(
                    Device.site_id == site.id,
                    Device.device_id == device_id,
                    Device.components == seen,
                )
                .values(role=role[:16], components=encoded, ok=ok, last_seen_at=now)
            )
            if rows_touched(swapped) != 1:
                raise Conflict("the device reported meanwhile")
        for name, part in components.items():
            was = before.get(name)
            if part.state == "fault" and (was is None or was.state != "fault"):
                _fault_event(session, site, device_id, name, part.detail, now)
            elif part.state != "fault" and was is not None and was.state == "fault":
                record_event(
                    session,
                    site.id,
                    now,
                    EventKind.DEVICE_RECOVERED,
                    f"{device_id}: {name}: working again ({part.detail or part.state})"[:255],
                    source=device_id,
                    data={"device": device_id, "component": name, "detail": part.detail},
                )

    site.db.write(work)


def _encode(
    components: Mapping[str, Component], before: Mapping[str, Component], now: datetime
) -> str:
    """The health as stored: each faulty part with the moment it turned
    faulty (kept while it stays faulty, so an unchanged report encodes the
    same)."""
    health: dict[str, dict[str, str]] = {}
    for name, part in components.items():
        health[name] = {"state": part.state, "detail": part.detail[:200]}
        if part.state == "fault":
            was = before.get(name)
            since = was.since if was is not None and was.state == "fault" else now
            if since is not None:
                health[name]["since"] = since.isoformat()
    return json.dumps(health, sort_keys=True)


def _components(encoded: str) -> dict[str, Component]:
    return {
        name: Component(
            value.get("state", "fault"),
            value.get("detail", ""),
            datetime.fromisoformat(value["since"]) if value.get("since") else None,
        )
        for name, value in json.loads(encoded or "{}").items()
    }


def reader_health(site: Site) -> Component:
    """How this site's configured card reader is now (never raises)."""
    health = site.payments.reader_health()
    return Component("ok" if health.ok else "fault", health.detail)


def device_health(site: Site) -> list[DeviceHealth]:
    """Every device that has reported, by id, with its latest heartbeat."""
    now = site.clock.now()
    rows = site.db.read(
        lambda s: list(
            s.scalars(select(Device).where(Device.site_id == site.id).order_by(Device.device_id))
        )
    )
    return [
        DeviceHealth(
            device_id=row.device_id,
            role=row.role,
            components=_components(row.components),
            last_seen_at=row.last_seen_at,
            silent=now - row.last_seen_at > SILENT_AFTER,
        )
        for row in rows
    ]


# How urgent a standing alert is (lower first); the console sorts its alert
# panel by these, then newest first (docs/attendant.md, "Alerts").
URGENT, FAULT, SILENT, NOTICE = range(4)


@dataclass(frozen=True)
class StandingAlert:
    """An alert that is a state, not an event, while it lasts."""

    key: str
    """The same for as long as this state lasts (a kiosk silent since one
    heartbeat, a part faulty with one detail): an acknowledgement of the
    key hides the alert until the state changes."""
    severity: int
    text: str


def standing_alert_list(
    site: Site, hold_warning: timedelta = timedelta(minutes=1)
) -> list[StandingAlert]:
    """Alerts that are states, not events, the most urgent first: a driver
    asking for help at a kiosk, parts still faulty, kiosks that went quiet
    (no heartbeat for `SILENT_AFTER`; a kiosk taken away for good is
    decommissioned, `decommission_device`, and its alert goes), and holds
    about to expire unpaid. For the attendant's alert panel, read with the lot."""
    from core.storage.models import Reservation

    now = site.clock.now()
    alerts = []
    for device in device_health(site):
        if device.silent:
            since = site.describe_time(device.last_seen_at)
            alerts.append(
                StandingAlert(
                    f"silent:{device.device_id}:{device.last_seen_at.isoformat()}",
                    SILENT,
                    f"{device.device_id}: no heartbeat since {since}",
                )
            )
            continue
        for name, part in device.components.items():
            if part.state == "fault":
                # Since when, too: a fault that clears and comes back raises again.
                began = part.since.isoformat() if part.since is not None else ""
                alerts.append(
                    StandingAlert(
                        f"fault:{device.device_id}:{name}:{began}:{part.detail}",
                        URGENT if name == "help" else FAULT,
                        f"{device.device_id}: {name}: {part.detail}",
                    )
                )
    expiring = site.db.read(
        lambda s: list(
            s.execute(
                select(Reservation.id, Reservation.hold_expires_at).where(
                    Reservation.site_id == site.id,
                    Reservation.state == "held",
                    Reservation.hold_expires_at > now,
                    Reservation.hold_expires_at <= now + hold_warning,
                )
            )
        )
    )
    for reservation_id, expires in expiring:
        seconds = int((expires - now).total_seconds())
        alerts.append(
            StandingAlert(
                f"hold:{reservation_id}",
                NOTICE,
                f"Hold on reservation {reservation_id} expires in {seconds} s, unpaid",
            )
        )
    return sorted(alerts, key=lambda alert: alert.severity)


def standing_alerts(site: Site, hold_warning: timedelta = timedelta(minutes=1)) -> list[str]:
    """The texts of `standing_alert_list`, the most urgent first."""
    return [alert.text for alert in standing_alert_list(site, hold_warning)]


# Decides by its row: only a kiosk silent for `SILENT_AFTER` goes. A kiosk
# that beats meanwhile moved `last_seen_at` and stays; one that beats after
# finds no row and comes back as new.
_DECOMMISSION = delete(Device).where(
    Device.site_id == bindparam("b_site"),
    Device.device_id == bindparam("b_device"),
    Device.last_seen_at <= bindparam("b_silent_since"),
)


def decommission_device(site: Site, by: Actor, device_id: str, reason: str) -> DeviceHealth:
    """Forget a kiosk taken away for good, so its "no heartbeat" alert goes
    (its events stay in the log). Done by a staff member with a reason, and
    audited like an override. Refused with `InvalidInput` while it still
    reports (a heartbeat within `SILENT_AFTER`): switch it off first; a kiosk
    that reports again later is simply back. `NotFound` when no such device."""
    from core.services.overrides import check_reason  # one rule for every reason

    why = check_reason(reason)
    device_id = device_id.strip()

    def work(session: Session) -> DeviceHealth | InvalidInput:
        now = site.clock.now()
        row = session.get(Device, (site.id, device_id))
        if row is None:
            raise NotFound(
                "There is no device {device_id!r}; `lotkeeper device list` names them.",
                device_id=device_id,
            )
        gone = DeviceHealth(
            row.device_id, row.role, _components(row.components), row.last_seen_at, True
        )
        params = {"b_site": site.id, "b_device": device_id, "b_silent_since": now - SILENT_AFTER}
        if rows_touched(session.execute(_DECOMMISSION, params)) != 1:
            return InvalidInput(
                "{device_id} is still reporting (a heartbeat since {time}): switch it off first.",
                device_id=device_id,
                time=site.describe_time(now - SILENT_AFTER),
            )
        seq = record_audit(
            session,
            site,
            by,
            "device_decommissioned",
            target=device_id,
            reason=why,
            data={"role": row.role, "last_seen_at": row.last_seen_at.isoformat()},
            at=now,
        )
        record_event(
            session,
            site.id,
            now,
            EventKind.OVERRIDE,
            f"Device {device_id} decommissioned by {by.name}: {why}",
            source=f"staff:{by.name}",
            data={
                "action": "device_decommissioned",
                "staff": by.name,
                "reason": why,
                "audit_seq": seq,
                "device": device_id,
            },
        )
        return gone

    done = site.db.write(work)
    if isinstance(done, InvalidInput):
        raise done
    return done
