"""Every text the kiosk shows goes through `_()` (gettext's API).

Catalogs are plain `.po` files in `kiosk/locale/` read at start (no compile
step, nothing binary in the repository). English is the source language;
`use_language("es")` switches every later `_()` call.

Times, fee lines and engine messages are worded here too: `time_text`
("10:00 on 23 Nov", "10:00 del 23 nov") with month names from the catalog,
never the machine's locale; `line_text` and `error_text` translate the
engine's templates and word each value (a time, a size, a duration) in the
kiosk's language.
"""

from __future__ import annotations

import ast
import gettext
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from core.domain import Size
from core.site import LocalTime
from core.tariff import Phrase, QuoteLine, format_duration

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "English", "es": "Español"}


class PoTranslations(gettext.NullTranslations):
    """A gettext catalog read straight from a `.po` file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._catalog: dict[str, str] = {}
        msgid: list[str] = []
        msgstr: list[str] = []
        current: list[str] | None = None
        for raw in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            line = raw.strip()
            if line.startswith("msgid "):
                self._add(msgid, msgstr)
                msgid, msgstr, current = [ast.literal_eval(line[6:])], [], None
                current = msgid
            elif line.startswith("msgstr "):
                msgstr = [ast.literal_eval(line[7:])]
                current = msgstr
            elif line.startswith('"') and current is not None:
                current.append(ast.literal_eval(line))
            elif not line:
                self._add(msgid, msgstr)
                msgid, msgstr, current = [], [], None

    def _add(self, msgid: list[str], msgstr: list[str]) -> None:
        key, value = "".join(msgid), "".join(msgstr)
        if key and value:
            self._catalog[key] = value

    def gettext(self, message: str) -> str:
        return self._catalog.get(message, message)

    def __contains__(self, message: object) -> bool:
        return message in self._catalog


_current: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def use_language(code: str) -> None:
    """Switch the kiosk's language ("en", "es")."""
    global _current, _language
    path = LOCALE_DIR / f"{code}.po"
    _current = (
        PoTranslations(path) if code != "en" and path.exists() else gettext.NullTranslations()
    )
    _language = code


def language() -> str:
    return _language


def _(message: str) -> str:
    """The message in the kiosk's language. Messages from the engine (errors,
    card reader states) are translated too when the catalog has them; one
    with values in it that the catalog lacks stays in English."""
    return _current.gettext(message)


def error_text(error: Exception) -> str:
    """An engine error in the kiosk's language: its template translated and
    its values filled in (a value the catalog knows, such as a car size, is
    translated too, and a time is worded as `time_text` does); the English
    text when the catalog lacks the template."""
    template = getattr(error, "template", str(error))
    values: dict[str, object] = getattr(error, "values", {})
    given: dict[str, object] = getattr(error, "arguments", {})
    if isinstance(_current, PoTranslations) and template in _current:
        worded = {
            name: _value_text(given[name])
            if isinstance(given.get(name), LocalTime)
            else _current.gettext(str(value))
            for name, value in values.items()
        }
        try:
            return _current.gettext(template).format(**worded)
        except (KeyError, IndexError, ValueError):
            return str(error)  # a catalog entry that does not fit: English
    return str(error)


def time_text(when: datetime, *, year: bool = False) -> str:
    """A time (already in the site's zone) as the kiosk's language writes
    it: "10:00 on 05 Nov" (as `Site.describe_time`), "10:00 del 5 nov"."""
    values = {"clock": f"{when:%H:%M}", "day": when.day, "month": _(MONTHS[when.month - 1])}
    if year:
        return _("{clock} on {day:02d} {month} {year}").format(**values, year=when.year)
    return _("{clock} on {day:02d} {month}").format(**values)


def line_text(line: QuoteLine) -> str:
    """A fee or receipt line in the kiosk's language: its template
    translated with its values worded here; its English `label` when the
    kiosk speaks English or the catalog lacks the template."""
    return phrase_text(line.phrase, line.label)


def phrase_text(phrase: Phrase, english: str | None = None) -> str:
    """`phrase` translated (nested phrases too); `english` (or the English
    text) when the catalog lacks its template, so a line never mixes the
    two languages."""
    if not isinstance(_current, PoTranslations) or phrase.template not in _current:
        return english if english is not None else str(phrase)
    try:
        return _current.gettext(phrase.template).format(**_worded(phrase.values))
    except (KeyError, IndexError, ValueError):
        return english if english is not None else str(phrase)


def _worded(values: Mapping[str, object]) -> dict[str, str]:
    return {name: _value_text(value) for name, value in values.items()}


def _value_text(value: object) -> str:
    if isinstance(value, Phrase):
        return phrase_text(value)
    if isinstance(value, LocalTime):
        return time_text(value.at, year=value.with_year)
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, Size):
        return _(value.label)
    if isinstance(value, timedelta):
        # "2 h 15 min": SI symbols, read the same in Spanish.
        return format_duration(value)
    return str(value)  # money, counts


def N_(message: str) -> str:
    """Mark a text for translation where it is defined; `_()` translates it
    where it is shown (titles and choices kept in tables)."""
    return message


MONTHS = (
    *(N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun")),
    *(N_("Jul"), N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec")),
)
