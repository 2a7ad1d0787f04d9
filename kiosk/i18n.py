"""Every text the kiosk shows goes through `_()` (gettext's API).

Catalogs are plain `.po` files in `kiosk/locale/` read at start (no compile
step, nothing binary in the repository). English is the source language;
`use_language("es")` switches every later `_()` call.
"""

from __future__ import annotations

import ast
import gettext
from pathlib import Path

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
    translated too); the English text when the catalog lacks the template."""
    template = getattr(error, "template", str(error))
    values = getattr(error, "values", {})
    if isinstance(_current, PoTranslations) and template in _current:
        try:
            return _current.gettext(template).format(
                **{name: _current.gettext(value) for name, value in values.items()}
            )
        except (KeyError, IndexError, ValueError):
            return str(error)  # a catalog entry that does not fit: English
    return str(error)


def N_(message: str) -> str:
    """Mark a text for translation where it is defined; `_()` translates it
    where it is shown (titles and choices kept in tables)."""
    return message
