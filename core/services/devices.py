"""Device health: kiosks report faults (printer out of paper, reader
offline, a driver asking for help) as events the attendant's alert panel
shows."""

from __future__ import annotations

from core.domain import EventKind
from core.services.events import record_event
from core.site import Site


def record_device_fault(site: Site, device_id: str, component: str, detail: str) -> None:
    """An alert for the attendant: `component` ("printer", "reader", "help")
    of `device_id` needs a person."""
    site.db.write(
        lambda session: record_event(
            session,
            site.id,
            site.clock.now(),
            EventKind.DEVICE_FAULT,
            f"{device_id}: {component}: {detail}"[:255],
            source=device_id,
            data={"alert": True, "device": device_id, "component": component, "detail": detail},
        )
    )
