"""Every screen and dialog of the console fits a booth's 80x24 terminal:
no button, field or other focusable widget, and no key of the footer, lies
outside the screen or is cut by its container. (The console is in English
only: it has no translations to check.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import SiteFactory
from test_attendant import fill, log_in, press, settle
from textual.errors import NoWidget
from textual.geometry import Region
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from attendant.app import AttendantApp, ConsoleScreen, LoginScreen
from core import services as lk
from core.config import asset_path
from core.layout import read_layout
from core.services.staff import add_staff

# The journeys note the screens they opened in SEEN and a last test checks
# that together they opened every kind: one pytest-xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("attendant_fit")

WIDTH, HEIGHT = 80, 24
TEXTS = {"counters", "who", "dialog-title", "pass", "short"}
"""Texts that must not be cut either (`pass`: the exit pass's QR; `short`: its
short code in large letters)."""


def shown(widget: Widget) -> bool:
    """Displayed at all (a hidden tab's grid, a closed drop-down are not)."""
    return all(
        node.display and node.visible
        for node in widget.ancestors_with_self
        if isinstance(node, Widget)
    )


def misfits(screen: Screen[Any]) -> list[str]:
    """Each widget that should be whole on screen and is not, and why."""
    whole = Region(0, 0, WIDTH, HEIGHT)
    problems = []
    for widget in screen.query("*"):
        watched = widget.focusable or widget.can_focus or isinstance(widget, FooterKey)
        if not (watched or widget.id in TEXTS):
            continue
        if not shown(widget) or not (watched or str(widget.render()).strip()):
            continue  # hidden, or a text with nothing in it yet
        name = f"{type(screen).__name__}: {widget!r}"
        try:
            geometry = screen.find_widget(widget)
        except NoWidget:
            problems.append(f"{name} has no room at all")
            continue
        region = geometry.region
        if not region.area:
            problems.append(f"{name} has no room at all")
        elif not whole.contains_region(region):
            problems.append(f"{name} at {region} lies outside the {WIDTH}x{HEIGHT} screen")
        elif not geometry.clip.contains_region(region):
            problems.append(f"{name} at {region} is cut by its container ({geometry.clip})")
        elif isinstance(widget, Static) and not watched:
            lines = widget.render_lines(Region(0, 0, region.width, region.height + 5))
            used = sum(1 for line in lines if line.text.strip())
            if used > region.height:
                problems.append(f"{name}: {used} lines of text in {region.height}")
    return problems


Step = Callable[[AttendantApp, Any], Awaitable[None]]


def keys(*names: str) -> Step:
    async def step(app: AttendantApp, pilot: Any) -> None:
        await press(app, pilot, *names)

    return step


def answers(*values: str) -> Step:
    async def step(app: AttendantApp, pilot: Any) -> None:
        await fill(app, pilot, *values)

    return step


async def on_the_car(app: AttendantApp, pilot: Any) -> None:
    """Select the spot of the car that came in (a dialog on a car needs it)."""
    from test_attendant import select_spot

    occupied = next(s for s in app.spots if s.ticket_id is not None)
    await select_spot(app, pilot, occupied.label)


# Each journey starts on the console, signed in as the attendant, and is
# checked after every step; it ends by closing what it opened.
JOURNEYS: dict[str, list[Step]] = {
    "level tabs": [keys("right_square_bracket"), keys("right_square_bracket")],
    "keys": [keys("question_mark"), keys("escape")],
    "spot detail": [on_the_car],
    "gate": [keys("g"), answers("exit-1", "x")],
    "manual exit": [on_the_car, keys("x"), keys("escape")],
    "waive and the supervisor's PIN": [on_the_car, keys("w"), answers("", "scratched car")],
    "move": [on_the_car, keys("m"), keys("escape")],
    "out of service": [keys("o"), keys("escape")],
    "cancel a reservation": [keys("c"), answers("NOPE", "typo test")],
    "refund and the supervisor's PIN": [keys("r"), answers("1", "", "double charge")],
    "search": [keys("slash"), answers("KLX 481")],
    "decommission": [keys("d"), answers("lane-2", "x"), keys("escape")],
    "lost ticket": [keys("l"), answers("KLX 481"), keys("c")],
    "shift": [keys("s"), answers("100"), keys("enter"), keys("s"), answers("100")],
}


def run_journey(app: AttendantApp, steps: list[Step]) -> list[str]:
    found: list[str] = []

    async def main() -> None:
        async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
            await settle(app, pilot)
            assert isinstance(app.screen, LoginScreen)
            found.extend(misfits(app.screen))
            await log_in(app, pilot, "Ana", "1357")
            assert isinstance(app.screen, ConsoleScreen)
            found.extend(misfits(app.screen))
            for step in steps:
                await step(app, pilot)
                found.extend(misfits(app.screen))
                SEEN.add(type(app.screen).__name__)

    asyncio.run(main())
    return found


SEEN: set[str] = set()
COVERED = {
    "LoginScreen",
    "ConsoleScreen",
    "KeysScreen",
    "FormScreen",
    "MessageScreen",
    "LostTicketScreen",
    "ReportScreen",
}
"""The screens the journeys open (each journey's run adds what it saw to
`SEEN`; the last test checks the journeys reached them all)."""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("journey", list(JOURNEYS))
def test_every_console_screen_fits_80_by_24(make_site: SiteFactory, journey: str) -> None:
    site = make_site(read_layout(asset_path("lot.toml")))
    add_staff(site, "Ana", "attendant", "1357")
    add_staff(site, "Sam", "supervisor", "2468")
    lk.enter(site, "medium", plate="KLX 481")
    lk.record_device_fault(site, "lane-2", "printer", "paper out")
    site.clock.advance(hours=1)  # type: ignore[attr-defined]
    app = AttendantApp(site, idle_clock=lambda: 0.0, payment_sleep=lambda _: None)
    problems = run_journey(app, JOURNEYS[journey])
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_the_journeys_open_every_kind_of_console_screen() -> None:
    """Kept honest: a new dialog class needs a journey above."""
    import attendant.app
    import attendant.booth

    kinds = {
        name
        for module in (attendant.app, attendant.booth)
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, Screen)
        and value.__module__ == module.__name__
    }
    assert kinds == COVERED
    if len(SEEN) > 2:  # the journeys ran in this session (not a lone -k run)
        assert COVERED - {"LoginScreen", "ConsoleScreen"} <= SEEN, SEEN
