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
