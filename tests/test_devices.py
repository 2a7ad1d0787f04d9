"""Kiosk heartbeats: the attendant sees every device's health, one alert
when a part fails, one note when it recovers, and a kiosk that went quiet."""

from __future__ import annotations

from core import services as lk
from core.clock import FixedClock
from core.services.devices import SILENT_AFTER, Component
from core.site import Site

OK = {"printer": Component("ok", "paper ok"), "reader": Component("ok", "online")}


def kinds(site: Site) -> list[str]:
    return [e.kind for e in lk.recent_events(site).events if e.kind.startswith("device")]


def test_a_heartbeat_shows_each_part_of_the_device(site: Site) -> None:
    lk.report_heartbeat(site, "lane-1", "entry", OK)
    (device,) = lk.device_health(site)
    assert device.device_id == "lane-1" and device.role == "entry"
    assert device.components["printer"] == Component("ok", "paper ok")
    assert device.ok and not device.silent
    assert kinds(site) == []  # a healthy heartbeat is no event


def test_a_failing_part_raises_one_alert_and_its_recovery_one_note(site: Site) -> None:
    lk.report_heartbeat(site, "lane-1", "entry", OK)
    out = OK | {"printer": Component("fault", "paper out")}
    lk.report_heartbeat(site, "lane-1", "entry", out)
    lk.report_heartbeat(site, "lane-1", "entry", out)  # still out: no second alert
    assert kinds(site) == ["device_fault"]
    (device,) = lk.device_health(site)
    assert not device.ok and device.components["printer"].detail == "paper out"
    alert = lk.recent_events(site).events[-1]
    assert alert.data["alert"] is True and "paper out" in alert.message

    lk.report_heartbeat(site, "lane-1", "entry", OK)
    assert kinds(site) == ["device_fault", "device_recovered"]
    assert lk.device_health(site)[0].ok


def test_a_device_that_is_faulty_from_its_first_heartbeat_alerts(site: Site) -> None:
    lk.report_heartbeat(site, "pay-2", "pay", OK | {"reader": Component("fault", "offline")})
    assert kinds(site) == ["device_fault"]


def test_paper_low_is_a_warning_not_an_alert(site: Site) -> None:
    lk.report_heartbeat(site, "lane-1", "entry", OK | {"printer": Component("warning", "low")})
    (device,) = lk.device_health(site)
    assert device.ok and device.components["printer"].state == "warning"
    assert kinds(site) == []


def test_a_kiosk_that_stops_beating_is_shown_silent(site: Site, clock: FixedClock) -> None:
    lk.report_heartbeat(site, "lane-1", "entry", OK)
    lk.report_heartbeat(site, "lane-2", "exit", OK)
    clock.advance(SILENT_AFTER)
    lk.report_heartbeat(site, "lane-2", "exit", OK)
    clock.advance(seconds=1)
    silent = {d.device_id: d.silent for d in lk.device_health(site)}
    assert silent == {"lane-1": True, "lane-2": False}
    assert not lk.device_health(site)[0].ok


def test_standing_alerts_name_quiet_kiosks_faulty_parts_and_expiring_holds(
    site: Site, clock: FixedClock
) -> None:
    from datetime import timedelta

    lk.report_heartbeat(site, "lane-1", "entry", OK)
    lk.report_heartbeat(site, "lane-2", "pay", OK | {"reader": Component("fault", "offline")})
    ada = lk.create_account(site, "Ada", "ada@example.com", "correct horse")
    start = clock.now() + timedelta(hours=2)
    held = lk.hold(site, ada.id, "small", start, start + timedelta(hours=1))
    assert lk.standing_alerts(site) == ["lane-2: reader: offline"]
    clock.advance(minutes=4, seconds=30)
    lk.report_heartbeat(site, "lane-1", "entry", OK)
    lk.report_heartbeat(site, "lane-2", "pay", OK)
    assert lk.standing_alerts(site) == [f"Hold on reservation {held.id} expires in 30 s, unpaid"]
    clock.advance(SILENT_AFTER + timedelta(seconds=1))
    lk.report_heartbeat(site, "lane-2", "pay", OK)
    assert lk.standing_alerts(site) == ["lane-1: no heartbeat since 09:04 on 22 Nov"]


def test_a_removed_kiosk_is_decommissioned_once_and_only_when_silent(
    site: Site, clock: FixedClock
) -> None:
    import pytest

    from core.errors import InvalidInput, NotFound
    from core.services.audit import audit_entries
    from core.services.devices import decommission_device
    from core.services.staff import add_staff

    ana = add_staff(site, "Ana", "attendant", "1357").actor
    lk.report_heartbeat(site, "lane-9", "entry", OK)
    with pytest.raises(InvalidInput, match="still reporting"):
        decommission_device(site, ana, "lane-9", "kiosk removed")
    clock.advance(SILENT_AFTER * 2)
    assert lk.standing_alerts(site) == ["lane-9: no heartbeat since 09:00 on 22 Nov"]
    with pytest.raises(InvalidInput, match="reason"):
        decommission_device(site, ana, "lane-9", "x")
    gone = decommission_device(site, ana, "lane-9", "kiosk removed")
    assert gone.device_id == "lane-9"
    assert lk.standing_alerts(site) == [] and lk.device_health(site) == []
    with pytest.raises(NotFound):
        decommission_device(site, ana, "lane-9", "kiosk removed")
    (entry,) = [e for e in audit_entries(site) if e.action == "device_decommissioned"]
    assert (entry.staff_name, entry.target, entry.reason) == ("Ana", "lane-9", "kiosk removed")
    override = [e for e in lk.recent_events(site).events if e.kind == "override"]
    assert override[-1].data["device"] == "lane-9"
    lk.report_heartbeat(site, "lane-9", "entry", OK)  # plugged in again: back
    assert [d.device_id for d in lk.device_health(site)] == ["lane-9"]


def test_standing_alerts_come_most_urgent_first(site: Site, clock: FixedClock) -> None:
    from datetime import timedelta

    from core.services.devices import FAULT, SILENT, URGENT, standing_alert_list

    lk.report_heartbeat(site, "lane-1", "entry", OK)
    clock.advance(SILENT_AFTER + timedelta(seconds=1))
    lk.report_heartbeat(site, "lane-2", "pay", OK | {"reader": Component("fault", "offline")})
    lk.report_heartbeat(site, "lane-3", "pay", OK | {"help": Component("fault", "driver asks")})
    alerts = standing_alert_list(site)
    assert [a.severity for a in alerts] == [URGENT, FAULT, SILENT]
    assert alerts[0].text == "lane-3: help: driver asks"


def test_a_fault_that_clears_and_comes_back_is_a_new_standing_alert(
    site: Site, clock: FixedClock
) -> None:
    from datetime import timedelta

    from core.services.devices import standing_alert_list

    out = OK | {"printer": Component("fault", "paper out")}
    lk.report_heartbeat(site, "lane-1", "entry", out)
    (first,) = standing_alert_list(site)
    clock.advance(seconds=5)
    lk.report_heartbeat(site, "lane-1", "entry", out)  # still out: the same alert
    assert standing_alert_list(site) == [first]
    since = lk.device_health(site)[0].components["printer"].since
    assert since == clock.now() - timedelta(seconds=5)
    lk.report_heartbeat(site, "lane-1", "entry", OK)
    clock.advance(seconds=5)
    lk.report_heartbeat(site, "lane-1", "entry", out)  # out again: raised again
    (again,) = standing_alert_list(site)
    assert again.text == first.text and again.key != first.key
